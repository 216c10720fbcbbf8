#!/usr/bin/env python3
"""Make the fuzzers' seed inputs from a real kvext log and snapshot.

    test/fuzz/seeds.py LOG_SEGMENT SNAPSHOT

LOG_SEGMENT is a segment file of a new log (kvext/wal/0000000000000010 of a
server that ran a few writes; its trailing zeros are cut), SNAPSHOT a
kvext/snapshot file (format 3).  Writes seed-*.bin files into
test/fuzz/corpus/<harness>/ with the harnesses' flag bytes (see each
fuzz_*.c).  The fuzz build reads snapshots with SNAP_LARGE_ENTRY = 64
(test/fuzz/Makefile): the snapshot is rewritten with the index of large
entries that threshold gives, so that the seeds reach the index.  Record
layouts are src/log/wal.h and src/log/snapformat.h.
"""
import os
import struct
import sys

FUZZ_LARGE_ENTRY = 64
HERE = os.path.dirname(os.path.abspath(__file__))


def crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = crc32c_table()


def crc32c(data, crc=0xFFFFFFFF):
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def fin(crc):
    return crc ^ 0xFFFFFFFF


def log_records(seg):
    """(offset, length) of each record, up to the first all-zero header."""
    off, out = 0, []
    while off + 40 <= len(seg):
        length = struct.unpack_from('<I', seg, off + 4)[0]
        if length == 0:
            break
        out.append((off, length))
        off += length
    return out


def rewrite_snapshot(snap):
    """The snapshot with its index recomputed for FUZZ_LARGE_ENTRY."""
    hdr = snap[:48]
    nks = struct.unpack_from('<I', hdr, 12)[0]
    pos = 48 + nks * 66
    body = bytearray(snap[:pos])
    refs = []
    count = 0
    while True:
        ks, flags, kl, vl = struct.unpack_from('<HHII', snap, pos)
        body += snap[pos:pos + 12]
        pos += 12
        if ks == 0xFFFF:
            break
        data = snap[pos:pos + kl + vl]
        if kl + vl > FUZZ_LARGE_ENTRY:
            refs.append(struct.pack('<QIIHHiII', len(body), kl, vl, ks, flags & 1,
                                    0, fin(crc32c(data)), 0))
        body += data
        pos += kl + vl
        count += 1
    index_offset = len(body)
    for r in refs:
        body += r
    body += struct.pack('<QII', index_offset, len(refs), 4)
    body += struct.pack('<Q', count)
    body += struct.pack('<I', fin(crc32c(body)))
    return bytes(body)


def older_snapshot(snap, version):
    """The snapshot in format 2 (no index) or 1 (no redo_term either)."""
    nks = struct.unpack_from('<I', snap, 12)[0]
    pos = 48 + nks * 66
    while True:
        ks, _, kl, vl = struct.unpack_from('<HHII', snap, pos)
        pos += 12
        if ks == 0xFFFF:
            break
        pos += kl + vl
    count = struct.unpack_from('<Q', snap, len(snap) - 12)[0]
    hdr = bytearray(snap[:48])
    struct.pack_into('<I', hdr, 4, version)
    if version == 1:
        hdr = hdr[:40]
    body = bytes(hdr) + snap[48:pos] + struct.pack('<Q', count)
    return body + struct.pack('<I', fin(crc32c(body)))


def write(harness, name, data):
    d = os.path.join(HERE, 'corpus', harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def main():
    seg = open(sys.argv[1], 'rb').read()
    recs = log_records(seg)
    log = seg[:recs[-1][0] + recs[-1][1]]
    mid = recs[len(recs) // 2][0]

    # fuzz_log: flags, split (2 bytes), log
    write('fuzz_log', 'seed-log.bin', bytes([0, 0, 0]) + log)
    write('fuzz_log', 'seed-log-fixcrc.bin', bytes([1, 0, 0]) + log)
    # two segments, the second where the first ends (gap 0: bits 2-5 = 8)
    write('fuzz_log', 'seed-log-2segs.bin',
          bytes([2 | (8 << 2), mid & 0xFF, mid >> 8]) + log)
    # the first TXN record alone, whole and cut short
    txn = next((o, n) for o, n in recs if seg[o + 36] == 1)
    write('fuzz_log', 'seed-txn.bin', bytes([0, 0, 0]) + seg[:txn[0] + txn[1]])
    write('fuzz_log', 'seed-torn.bin', bytes([0, 0, 0]) + seg[:txn[0] + txn[1] - 8])

    # fuzz_repl_append: flags, prev_term, term, batch
    term = struct.unpack_from('<Q', log, 16)[0]
    write('fuzz_repl_append', 'seed-batch.bin', bytes([0, 0, term]) + log)
    write('fuzz_repl_append', 'seed-batch-fixcrc.bin', bytes([1, 0, term]) + log)

    # fuzz_snapshot: flags, file
    snap = rewrite_snapshot(open(sys.argv[2], 'rb').read())
    write('fuzz_snapshot', 'seed-check.bin', bytes([0]) + snap)
    write('fuzz_snapshot', 'seed-load.bin', bytes([2]) + snap)
    write('fuzz_snapshot', 'seed-load-skip.bin', bytes([6]) + snap)
    write('fuzz_snapshot', 'seed-fixcrc.bin', bytes([1]) + snap)
    # the older formats recovery still loads: large entries after the stream
    write('fuzz_snapshot', 'seed-v2-load.bin', bytes([2]) + older_snapshot(snap, 2))
    write('fuzz_snapshot', 'seed-v1-load.bin', bytes([2]) + older_snapshot(snap, 1))


if __name__ == '__main__':
    main()
