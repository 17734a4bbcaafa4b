"""T1: one-statement write transactions through awaitdb, against sync sqlite3, side by side.

    .venv/bin/python bench/sqlite_txn.py              # ~1 minute
    .venv/bin/python bench/sqlite_txn.py --quick      # a smoke test

Each awaitdb operation is ``async with db.transaction(): await db.execute(INSERT ...)``, run by
one task (sequential) and by 200 concurrent tasks; the anchor is sync sqlite3 running
``BEGIN IMMEDIATE; INSERT; COMMIT`` on the same kind of file (WAL, synchronous=NORMAL).
Contenders run interleaved (order rotated each repetition); the table shows medians of ops/s,
the ratio to the anchor, CPU us/op (process CPU time / ops) and the p99 lag of a 1 ms ticker
beside the async contenders, next to the idle floor (the same ticker with nothing running).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Ticker, gather_split, interleave

import awaitdb

INSERT = "INSERT INTO log (k, payload) VALUES (:k, :p)"
INSERT_QMARK = "INSERT INTO log (k, payload) VALUES (?, ?)"


def setup(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, k INTEGER, payload TEXT)")
    conn.close()


async def idle_floor(seconds: float) -> float:
    with Ticker() as ticker:
        await asyncio.sleep(seconds)
    return ticker.p99_ms()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=4_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.ops, args.reps = 1_000, 3
    path = os.path.join(tempfile.mkdtemp(prefix="awaitdb-t1-"), "bench.db")
    setup(path)
    db = await awaitdb.connect(f"sqlite:///{path}")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA synchronous=NORMAL")
    counter = iter(range(10**9))
    ops = args.ops

    async def one(_key: int) -> None:
        async with db.transaction():
            await db.execute(INSERT, {"k": next(counter), "p": "x"})

    async def sequential() -> None:
        for key in range(ops):
            await one(key)

    async def concurrent() -> None:
        await gather_split(one, list(range(ops)), args.tasks)

    async def anchor() -> None:
        for _ in range(ops):
            raw.execute("BEGIN IMMEDIATE")
            raw.execute(INSERT_QMARK, (next(counter), "x"))
            raw.execute("COMMIT")

    contenders: dict[str, tuple[Callable[[], Awaitable[None]], int, bool]] = {
        "sync sqlite3 BEGIN IMMEDIATE; INSERT; COMMIT": (anchor, ops, False),
        "awaitdb transaction, sequential": (sequential, ops, True),
        f"awaitdb transaction, {args.tasks} tasks": (concurrent, ops, True),
    }
    floors = [await idle_floor(0.3) for _ in range(3)]
    results = await interleave(contenders, args.reps)
    floor = statistics.median(floors)
    base = results["sync sqlite3 BEGIN IMMEDIATE; INSERT; COMMIT"]["ops"]
    print(f"T1, {ops:,} transactions per run, {args.reps} interleaved reps, medians")
    print(f"{'contender':48} {'ops/s':>10} {'ratio':>7} {'CPU us/op':>10} {'lag p99 ms':>11}")
    for name, r in results.items():
        lag = f"{r['lag']:.2f}" if r["lag"] else "-"
        print(
            f"{name:48} {r['ops']:>10,.0f} {r['ops'] / base:>6.2f}x {r['cpu_us']:>10.1f} {lag:>11}"
        )
    print(f"idle floor (loop lag p99, nothing running): {floor:.2f} ms")
    loop_writer = getattr(db._backend, "_loop_writer", None)  # private: None before issue 9
    on_loop = "n/a" if loop_writer is None else f"{loop_writer.transactions:,}"
    print(f"transactions committed on the loop thread: {on_loop}")
    raw.close()
    await db.close()


if __name__ == "__main__":
    asyncio.run(main())
