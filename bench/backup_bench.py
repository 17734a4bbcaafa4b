"""M1: awaitdb's verified backup against the backup API + quick_check done by hand.

    .venv/bin/python bench/backup_bench.py              # generates bench/data/m1.sqlite3 (1 GB)
    .venv/bin/python bench/backup_bench.py --size-mb 200 --reps 3

By hand: ``src.backup(dst)`` then ``PRAGMA quick_check`` on the copy. awaitdb:
``backup_sqlite`` = the same copy, fsync, quick_check, SHA-256 of the file and every table's
row count, manifest. Interleaved repetitions, medians. The database is generated once (an
events table with an index, WAL mode) and reused while its size matches.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from awaitdb.migrations import backup_sqlite

DATA = Path(__file__).resolve().parent / "data"


def generate(path: Path, size_mb: int) -> None:
    """An events table (about 480 bytes a row) with an index, until the file reaches size_mb."""
    if path.exists() and abs(path.stat().st_size / 2**20 - size_mb) < size_mb * 0.1:
        return
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER, kind TEXT, "
        "payload TEXT, created_at TEXT)"
    )
    conn.execute("CREATE INDEX events_user ON events (user_id)")
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute(
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 100000) "
        "INSERT INTO users SELECT v, 'user-' || v FROM n"
    )
    start = time.perf_counter()
    while path.stat().st_size < size_mb * 2**20:
        conn.execute("BEGIN")
        conn.execute(
            "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 100000) "
            "INSERT INTO events (user_id, kind, payload, created_at) "
            "SELECT abs(random()) % 100000, 'kind-' || (v % 20), hex(randomblob(200)), "
            "datetime('now') FROM n"
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print(f"generated {path} ({path.stat().st_size / 2**20:,.0f} MB) in "
          f"{time.perf_counter() - start:.0f}s", flush=True)  # fmt: skip


def by_hand(source: Path, folder: Path) -> float:
    start = time.perf_counter()
    dest = folder / "by-hand.sqlite3"
    src = sqlite3.connect(source)
    dst = sqlite3.connect(dest)
    src.backup(dst)
    src.close()
    assert dst.execute("PRAGMA quick_check").fetchone() == ("ok",)
    dst.close()
    took = time.perf_counter() - start
    dest.unlink()
    return took


def with_awaitdb(source: Path, folder: Path) -> float:
    start = time.perf_counter()
    manifest = backup_sqlite(source, folder / "awaitdb.sqlite3", keep=None)
    took = time.perf_counter() - start
    assert manifest.quick_check == "ok" and manifest.tables["events"] > 0
    Path(manifest.backup).unlink()
    Path(manifest.backup + ".json").unlink()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    source = DATA / f"m1-{args.size_mb}mb.sqlite3"
    generate(source, args.size_mb)
    folder = Path(tempfile.mkdtemp(prefix="awaitdb-m1-", dir=DATA))
    try:
        by_hand(source, folder)  # warm the page cache for both
        hand, ours = [], []
        for rep in range(args.reps):
            order = [(by_hand, hand), (with_awaitdb, ours)]
            for fn, sink in order if rep % 2 == 0 else reversed(order):
                sink.append(fn(source, folder))
        size = source.stat().st_size / 2**20
        h, o = statistics.median(hand), statistics.median(ours)
        print(f"# M1: {size:,.0f} MB SQLite database, {args.reps} repetitions (medians), "
              f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs")  # fmt: skip
        print("| contender | seconds | x by hand |")
        print("| --- | --- | --- |")
        print(f"| backup API + quick_check by hand | {h:.2f} | 1.00 |")
        print(f"| awaitdb backup_sqlite (+ fsync, SHA-256, row counts, manifest) | {o:.2f} | "
              f"{o / h:.2f} |")  # fmt: skip
        print(f"runs: by hand {[round(x, 2) for x in hand]}, awaitdb {[round(x, 2) for x in ours]}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
