#!/usr/bin/python3
"""lazyfs.py: a FUSE passthrough file system that can lose what was not synced.

    lazyfs.py BACKING MOUNTPOINT      (runs in the foreground until unmounted)

In the spirit of Jepsen's LazyFS, for kvext's power-loss test
(test/t/110_power_loss.pl).  kill -9 of a server keeps the kernel's page
cache, so it cannot show that data which was never fsynced is lost; this
file system can.  "Power loss" is:

    open(MOUNTPOINT/.lazyfs-crash, O_CREAT|O_WRONLY)    (e.g. touch)

When that open returns, every unsynced change has been dropped from BACKING,
which then holds exactly what a disk would have kept; every later operation
on the mount fails with EIO, until it is unmounted (fusermount -u) and
mounted again over the same BACKING.  The crash is logged on stderr
("lazyfs: crash: ...").

What it models
  * File data: write() and truncate() go to an in-memory overlay (4 kB
    pages plus the file's size), not to BACKING.  fsync() or fdatasync() of
    any descriptor of the file writes the overlay to BACKING (both count the
    same: the size is always synced with the data).  Reads see the overlay.
    At a crash the overlays are dropped: every file reverts to its content
    and size as of its last fsync.
  * Names: create, mkdir, unlink, rmdir and rename act on BACKING at once,
    but each is logged with the directories it changed.  fsync of a
    directory (a descriptor opened O_RDONLY on it) makes the logged
    operations of that directory durable (a rename between two directories
    needs both synced).  At a crash the operations not yet durable are
    undone, newest first: a file or directory created since its parent's
    last fsync disappears (a directory with its whole subtree), an unlinked
    file comes back with its synced content, a rename is reversed and the
    file it replaced comes back.  Unlinked and replaced files wait in
    BACKING/.lazyfs-stash (hidden) until their directory is synced.
What it does not model
  * Torn or reordered writes within the unsynced data: all of a file's
    unsynced data is lost, none of it survives.  Real disks may keep some of
    it (any prefix, in any order); this is the most pessimistic outcome, not
    the only possible one.
  * Ordering between files (a journaling file system may make one file's
    change durable as a side effect of another file's fsync, e.g. ext4
    commits a mkdir with the next fsync of anything), durability of
    metadata such as mode, owner and times (passed through, always kept),
    symlinks (always kept), hard links (not supported), fallocate (not
    implemented: the kernel reports EOPNOTSUPP), O_DIRECT, mmap writes.
  * Paths in the namespace log are names: an undo after the directory
    holding them was itself renamed is skipped (logged on stderr).
  * Operations are served one at a time (single-threaded): simple, slow.
Mounting needs python3-fusepy and fusermount (Debian: fuse3); fusermount
opens /dev/fuse as the calling user, so it must be mode 0666 (Debian's
default) for a non-root user.  Do not change BACKING while it is mounted.
"""

import errno
import os
import shutil
import stat
import sys

try:
    from fusepy import FUSE, FuseOSError, Operations
except ImportError:  # pip's fusepy, or an older Debian package
    from fuse import FUSE, FuseOSError, Operations

PAGE = 4096
CONTROL = '/.lazyfs-crash'
STASH = '.lazyfs-stash'


def log(msg):
    sys.stderr.write('lazyfs: %s\n' % msg)
    sys.stderr.flush()


def parent(path):
    return os.path.dirname(path.rstrip('/')) or '/'


class Overlay:
    """Unsynced state of one file (by inode): dirty pages and its size."""

    def __init__(self, size):
        self.size = size        # logical size
        self.low = size         # BACKING bytes at or after this are not visible
        self.pages = {}         # page number -> bytearray(PAGE)


class LazyFS(Operations):
    use_ns = True
    flag_nullpath_ok = 1    # with hard_remove: unlinked open files keep working

    def __init__(self, backing):
        self.root = os.path.realpath(backing)
        self.stash = os.path.join(self.root, STASH)
        os.makedirs(self.stash, exist_ok=True)
        for name in os.listdir(self.stash):  # left over from an earlier mount
            self._remove(os.path.join(self.stash, name))
        self.overlays = {}      # inode -> Overlay
        self.fds = {}           # fh -> inode
        self.undo = []          # [set of dirs not yet synced, description, undo function]
        self.nstash = 0
        self.crashed = False

    # -- helpers ----------------------------------------------------------
    def _full(self, path):
        if self.crashed:
            raise FuseOSError(errno.EIO)
        if path == '/' + STASH or path.startswith('/' + STASH + '/'):
            raise FuseOSError(errno.ENOENT)
        return self.root + path

    @staticmethod
    def _remove(p):
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.lexists(p):
            os.unlink(p)

    def _log_ns(self, dirs, what, fn, stashed=None):
        self.undo.append([set(dirs), what, fn, stashed])

    def _to_stash(self, full):
        """Move full (being unlinked or replaced) to the stash; returns its stash path."""
        self.nstash += 1
        s = os.path.join(self.stash, str(self.nstash))
        os.rename(full, s)
        return s

    def _forget(self, p):
        """p is really deleted: drop the overlays of its inodes (they may be reused)."""
        for dirpath, dirs, files in os.walk(p) if os.path.isdir(p) else [('', [], [p])]:
            for f in files + dirs:
                try:
                    self.overlays.pop(os.lstat(os.path.join(dirpath, f)).st_ino, None)
                except OSError:
                    pass

    def _ov(self, fh):
        ino = self.fds[fh]
        ov = self.overlays.get(ino)
        if ov is None:
            ov = self.overlays[ino] = Overlay(os.fstat(fh).st_size)
        return ov

    def _page(self, fh, ov, n):
        """Current content of page n (overlay, else BACKING below ov.low, else zeros)."""
        pg = ov.pages.get(n)
        if pg is None:
            pg = bytearray(PAGE)
            start = n * PAGE
            if start < ov.low:
                data = os.pread(fh, min(PAGE, ov.low - start), start)
                pg[:len(data)] = data
            ov.pages[n] = pg
        return pg

    # -- crash --------------------------------------------------------------
    def crash(self):
        dirty = sum(len(o.pages) for o in self.overlays.values())
        files = len(self.overlays)
        self.overlays.clear()
        undone = 0
        for dirs, what, fn, stashed in reversed(self.undo):
            try:
                fn()
                undone += 1
                log('crash: undo %s' % what)
            except OSError as e:
                log('crash: cannot undo %s: %s' % (what, e))
        self.undo = []
        for name in os.listdir(self.stash):
            self._remove(os.path.join(self.stash, name))
        for fh in list(self.fds):
            os.close(fh)
        self.fds.clear()
        self.crashed = True
        log('crash: dropped %d unsynced pages of %d files, undid %d name operations'
            % (dirty, files, undone))

    # -- files ----------------------------------------------------------------
    def getattr(self, path, fh=None):
        if path == CONTROL and self.crashed:    # the crash request's own open
            return dict(st_mode=stat.S_IFREG | 0o600, st_nlink=1, st_size=0,
                        st_uid=os.getuid(), st_gid=os.getgid())
        if fh is not None and fh in self.fds:
            if self.crashed:
                raise FuseOSError(errno.EIO)
            st = os.fstat(fh)
        else:
            st = os.lstat(self._full(path))
        d = {k: getattr(st, k) for k in ('st_mode', 'st_nlink', 'st_uid', 'st_gid',
                                          'st_size', 'st_atime_ns', 'st_mtime_ns',
                                          'st_ctime_ns', 'st_blocks', 'st_ino')}
        for k in ('st_atime', 'st_mtime', 'st_ctime'):
            d[k] = d.pop(k + '_ns')
        ov = self.overlays.get(st.st_ino)
        if ov is not None and stat.S_ISREG(st.st_mode):
            d['st_size'] = ov.size
            d['st_blocks'] = (ov.size + 511) // 512
        return d

    def open(self, path, flags):
        if path == CONTROL:
            return self.create(path, 0)
        full = self._full(path)
        try:        # always readable: a write merges pages with BACKING
            fh = os.open(full, os.O_RDWR)
        except PermissionError:
            fh = os.open(full, os.O_RDONLY)
        self.fds[fh] = os.fstat(fh).st_ino
        return fh

    def create(self, path, mode, fi=None):
        if path == CONTROL:
            if not self.crashed:
                self.crash()
            return 0        # not in self.fds: release() ignores it
        full = self._full(path)
        existed = os.path.lexists(full)
        fh = os.open(full, os.O_RDWR | os.O_CREAT, mode)
        ino = self.fds[fh] = os.fstat(fh).st_ino
        if not existed:
            self.overlays.pop(ino, None)
            self._log_ns([parent(path)], 'create ' + path, lambda: self._remove(full))
        return fh

    def read(self, path, size, offset, fh):
        if self.crashed:
            raise FuseOSError(errno.EIO)
        ov = self.overlays.get(self.fds[fh])
        if ov is None:
            return os.pread(fh, size, offset)
        end = min(offset + size, ov.size)
        out = bytearray()
        pos = offset
        while pos < end:
            n, o = divmod(pos, PAGE)
            take = min(PAGE - o, end - pos)
            pg = ov.pages.get(n)
            if pg is not None:
                out += pg[o:o + take]
            elif pos < ov.low:
                k = min(take, ov.low - pos)
                data = os.pread(fh, k, pos)
                out += data + bytes(take - len(data))
            else:
                out += bytes(take)
            pos += take
        return bytes(out)

    def write(self, path, data, offset, fh):
        if self.crashed:
            raise FuseOSError(errno.EIO)
        ov = self._ov(fh)
        pos, i = offset, 0
        while i < len(data):
            n, o = divmod(pos, PAGE)
            take = min(PAGE - o, len(data) - i)
            if take == PAGE:
                ov.pages[n] = bytearray(data[i:i + PAGE])
            else:
                self._page(fh, ov, n)[o:o + take] = data[i:i + take]
            pos += take
            i += take
        ov.size = max(ov.size, offset + len(data))
        return len(data)

    def truncate(self, path, length, fh=None):
        if path == CONTROL:
            return 0
        own = fh is None or fh not in self.fds
        if own:
            fh = self.open(path, 0)
        try:
            ov = self._ov(fh)
            if length < ov.size:
                n, o = divmod(length, PAGE)
                if o:
                    self._page(fh, ov, n)[o:] = bytes(PAGE - o)
                for p in [p for p in ov.pages if p * PAGE >= length]:
                    del ov.pages[p]
                ov.low = min(ov.low, length)
            ov.size = length
        finally:
            if own:
                self.release(path, fh)

    def fsync(self, path, datasync, fh):
        if self.crashed:
            raise FuseOSError(errno.EIO)
        ino = self.fds[fh]
        ov = self.overlays.pop(ino, None)
        if ov is None:
            return 0
        if ov.low < os.fstat(fh).st_size:
            os.ftruncate(fh, ov.low)
        for n in sorted(ov.pages):
            start = n * PAGE
            if start < ov.size:
                os.pwrite(fh, bytes(ov.pages[n][:ov.size - start]), start)
        os.ftruncate(fh, ov.size)
        return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        if fh in self.fds:
            del self.fds[fh]
            os.close(fh)
        return 0

    def utimens(self, path, times=None):
        if path == CONTROL:
            return 0
        os.utime(self._full(path), ns=times)

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        os.lchown(self._full(path), uid, gid)

    def statfs(self, path):
        sv = os.statvfs(self._full(path))
        return {k: getattr(sv, k) for k in ('f_bavail', 'f_bfree', 'f_blocks', 'f_bsize',
                                             'f_favail', 'f_ffree', 'f_files', 'f_flag',
                                             'f_frsize', 'f_namemax')}

    def readlink(self, path):
        return os.readlink(self._full(path))

    def symlink(self, target, source):
        os.symlink(source, self._full(target))

    # -- names ----------------------------------------------------------------
    def mkdir(self, path, mode):
        full = self._full(path)
        os.mkdir(full, mode)
        self._log_ns([parent(path)], 'mkdir ' + path, lambda: self._remove(full))

    def rmdir(self, path):
        full = self._full(path)
        if os.listdir(full):
            raise FuseOSError(errno.ENOTEMPTY)
        s = self._to_stash(full)
        self._log_ns([parent(path)], 'rmdir ' + path, lambda: os.rename(s, full), s)

    def unlink(self, path):
        full = self._full(path)
        if os.path.isdir(full) and not os.path.islink(full):
            raise FuseOSError(errno.EISDIR)
        s = self._to_stash(full)
        self._log_ns([parent(path)], 'unlink ' + path, lambda: os.rename(s, full), s)

    def rename(self, old, new):
        fold, fnew = self._full(old), self._full(new)
        if not os.path.lexists(fold):
            raise FuseOSError(errno.ENOENT)
        s = None
        if os.path.lexists(fnew):
            if os.path.isdir(fnew) and os.listdir(fnew):
                raise FuseOSError(errno.ENOTEMPTY)
            s = self._to_stash(fnew)
        try:
            os.rename(fold, fnew)
        except OSError:
            if s:
                os.rename(s, fnew)
            raise

        def undo():
            os.rename(fnew, fold)
            if s:
                os.rename(s, fnew)
        self._log_ns([parent(old), parent(new)], 'rename %s -> %s' % (old, new), undo, s)

    def opendir(self, path):
        if not os.path.isdir(self._full(path)):
            raise FuseOSError(errno.ENOTDIR)
        return 0

    def readdir(self, path, fh):
        names = os.listdir(self._full(path))
        if path == '/':
            names = [n for n in names if n != STASH]
        return ['.', '..'] + names

    def fsyncdir(self, path, datasync, fh):
        if self.crashed:
            raise FuseOSError(errno.EIO)
        keep = []
        for entry in self.undo:
            entry[0].discard(path)
            if entry[0]:
                keep.append(entry)
            elif entry[3] is not None:     # durable unlink/replace: delete for real
                self._forget(entry[3])
                self._remove(entry[3])
        self.undo = keep
        return 0


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: lazyfs.py BACKING MOUNTPOINT')
    backing, mountpoint = sys.argv[1], sys.argv[2]
    log('serving %s at %s (pid %d)' % (backing, mountpoint, os.getpid()))
    FUSE(LazyFS(backing), mountpoint, foreground=True, nothreads=True,
         big_writes=True, auto_unmount=True, hard_remove=True, fsname='lazyfs', subtype='lazyfs')
    log('unmounted %s' % mountpoint)


if __name__ == '__main__':
    main()
