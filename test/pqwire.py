#!/usr/bin/env python3
"""pqwire: send PostgreSQL protocol messages one by one, for tests that need
what libpq and psql do not expose (a portal bound now and executed after
other statements, a fast-path function call).

Usage: pqwire.py HOST PORT DBNAME [-o OPTIONS] STEP...
HOST is a socket directory or an address.  Each STEP is one message or
action, its fields separated by '|':
    P|name|query        Parse (no parameters)
    B|portal|statement  Bind (no parameters, text results)
    E|portal            Execute (all rows)
    D|S or P|name       Describe a statement or a portal
    S                   Sync: then read up to ReadyForQuery
    Q|query             a simple query, read up to ReadyForQuery
    F|function|arg...   fast-path call of a function (its OID) with text
                        arguments, read up to ReadyForQuery
    W|seconds           sleep on the client side
Prints one line per error or notice: "ERROR <sqlstate> <message>" (or
WARNING, NOTICE, ...), then "DONE".  Exit status 0 unless the connection
fails.
"""

import os
import socket
import struct
import sys
import time


class Conn:
    def __init__(self, host, port, dbname, options):
        if host.startswith('/'):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(os.path.join(host, '.s.PGSQL.%d' % port))
        else:
            self.sock = socket.create_connection((host, port))
        user = os.environ.get('PGUSER') or os.environ.get('USER') or 'postgres'
        params = b'user\0' + user.encode() + b'\0database\0' + dbname.encode() + b'\0'
        if options:
            params += b'options\0' + options.encode() + b'\0'
        body = struct.pack('!I', 196608) + params + b'\0'
        self.sock.sendall(struct.pack('!I', len(body) + 4) + body)
        self.buf = b''
        self.read_until_ready()

    def send(self, kind, body=b''):
        self.sock.sendall(kind + struct.pack('!I', len(body) + 4) + body)

    def _fill(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError('server closed the connection')
            self.buf += data

    def receive(self):
        self._fill(5)
        kind = self.buf[0:1]
        length = struct.unpack('!I', self.buf[1:5])[0]
        self._fill(1 + length)
        body = self.buf[5:1 + length]
        self.buf = self.buf[1 + length:]
        return kind, body

    def read_until_ready(self):
        """Read up to ReadyForQuery; return the data rows' first columns."""
        rows = []
        while True:
            kind, body = self.receive()
            if kind in (b'E', b'N'):
                fields = {}
                for part in body.split(b'\0'):
                    if part:
                        fields[chr(part[0])] = part[1:].decode(errors='replace')
                print('%s %s %s' % (fields.get('S', '?'), fields.get('C', '?'),
                                    fields.get('M', '')), flush=True)
                if fields.get('S') == 'FATAL':
                    raise EOFError(fields.get('M', ''))
            elif kind == b'D':
                (ncol,) = struct.unpack('!H', body[:2])
                if ncol > 0:
                    (flen,) = struct.unpack('!i', body[2:6])
                    rows.append(None if flen < 0 else body[6:6 + flen].decode())
            elif kind == b'R':
                (code,) = struct.unpack('!I', body[:4])
                if code != 0:
                    raise EOFError('the test server must trust local connections')
            elif kind == b'Z':
                return rows

    def fastpath(self, oid, args):
        body = struct.pack('!IHH', int(oid), 0, len(args))
        for arg in args:
            data = arg.encode()
            body += struct.pack('!i', len(data)) + data
        body += struct.pack('!H', 0)
        self.send(b'F', body)
        self.read_until_ready()


def main(argv):
    host, port, dbname = argv[1], int(argv[2]), argv[3]
    steps = argv[4:]
    options = None
    if steps[:1] == ['-o']:
        options, steps = steps[1], steps[2:]
    conn = Conn(host, port, dbname, options)
    for step in steps:
        kind, *fields = step.split('|')
        if kind == 'P':
            conn.send(b'P', fields[0].encode() + b'\0' + fields[1].encode() + b'\0'
                      + struct.pack('!H', 0))
        elif kind == 'B':
            conn.send(b'B', fields[0].encode() + b'\0' + fields[1].encode() + b'\0'
                      + struct.pack('!HHH', 0, 0, 0))
        elif kind == 'E':
            conn.send(b'E', fields[0].encode() + b'\0' + struct.pack('!I', 0))
        elif kind == 'D':
            conn.send(b'D', fields[0].encode() + fields[1].encode() + b'\0')
        elif kind == 'S':
            conn.send(b'S')
            conn.read_until_ready()
        elif kind == 'Q':
            conn.send(b'Q', fields[0].encode() + b'\0')
            conn.read_until_ready()
        elif kind == 'F':
            conn.fastpath(fields[0], fields[1:])
        elif kind == 'W':
            time.sleep(float(fields[0]))
        else:
            sys.exit('pqwire: unknown step %r' % step)
    conn.send(b'X')
    print('DONE', flush=True)


if __name__ == '__main__':
    main(sys.argv)
