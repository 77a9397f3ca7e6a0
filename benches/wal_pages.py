#!/usr/bin/env python3
"""WAL frames of a SQLite database per B-tree: what the commits in its write-ahead log wrote.

Usage: python3 benches/wal_pages.py DB [VALUES]   (VALUES: new values the WAL's commits hold, for per-value figures)
Reads DB-wal's frame headers (page number, commit marker) and names each page's B-tree with SQLite's dbstat.
"""
import collections
import sqlite3
import struct
import sys

db = sys.argv[1]
values = int(sys.argv[2]) if len(sys.argv) > 2 else 0
wal = open(db + "-wal", "rb").read()
magic, version, page_size, _seq, salt1, salt2 = struct.unpack(">IIIIII", wal[:24])
frames, commits = [], 0
off = 32
while off + 24 + page_size <= len(wal):
    pgno, commit, s1, s2 = struct.unpack(">IIII", wal[off:off + 16])
    if (s1, s2) != (salt1, salt2):
        break
    frames.append(pgno)
    commits += commit != 0
    off += 24 + page_size
con = sqlite3.connect(db)  # recovers the WAL (and, closed, checkpoints it: read above first)
owner = {p: n for n, p in con.execute("SELECT name, pageno FROM dbstat")}
per_tree = collections.Counter(owner.get(p, "(free or new)") for p in frames)
distinct = collections.Counter(owner.get(p, "(free or new)") for p in set(frames))
print(f"page size {page_size}; {commits} commits, {len(frames)} frames, {len(wal) / 1e6:.1f} MB of WAL")
if values:
    print(f"per new value: {len(frames) / values:.2f} frames, {len(wal) / values:.0f} bytes of WAL")
print("| B-tree | frames | per commit | distinct pages |")
print("|---|---|---|---|")
for name, n in per_tree.most_common():
    print(f"| {name} | {n} | {n / max(commits, 1):.1f} | {distinct[name]} |")
