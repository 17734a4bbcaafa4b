"""S3 alone: 50 tasks of single-row autocommit INSERTs through awaitdb, against sync sqlite3.

    .venv/bin/python bench/sqlite_insert.py [--rows 10000] [--reps 5]

Interleaved repetitions, medians; prints the ratio and the writes each group commit carried.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import gather_split
from sqlite_bench import INSERT, INSERT_QMARK, setup

import awaitdb


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    path = os.path.join(tempfile.mkdtemp(prefix="awaitdb-s3-"), "bench.db")
    setup(path)
    db = await awaitdb.connect(f"sqlite:///{path}")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA synchronous=NORMAL")
    counter = iter(range(10**9))
    ours, theirs = [], []
    for _ in range(args.reps):
        start = time.perf_counter()
        await gather_split(
            lambda _k: db.execute(INSERT, {"k": next(counter), "p": "x"}),
            list(range(args.rows)),
            50,
        )
        ours.append(args.rows / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(args.rows):
            raw.execute(INSERT_QMARK, (next(counter), "x"))
        theirs.append(args.rows / (time.perf_counter() - start))
    a, s = statistics.median(ours), statistics.median(theirs)
    stats = db.stats()
    per_commit = stats.grouped_writes / max(stats.group_commits, 1)
    print(f"awaitdb {a:,.0f}/s, sync sqlite3 {s:,.0f}/s: {a / s:.2f} x")
    print(f"{per_commit:.0f} writes per group commit")
    raw.close()
    await db.close()


if __name__ == "__main__":
    asyncio.run(main())
