"""SQLite side by side: awaitdb against sync sqlite3 and aiosqlite (targets S1-S5).

    .venv/bin/python bench/sqlite_bench.py            # full run (~1-2 minutes)
    .venv/bin/python bench/sqlite_bench.py --quick    # smaller, for a smoke test

Contenders run interleaved in one process (round-robin, order rotated each repetition) so that
noise on a shared machine hits them alike; the table shows medians over repetitions of ops/s,
the ratio to the anchor, CPU microseconds per operation (process CPU time / ops) and, for async
contenders, the p99 lag of a 1 ms ticker task running beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosqlite
from harness import gather_split, measure

import awaitdb

ROWS = 100_000
POINT = "SELECT id, name, value FROM items WHERE id = :id"
POINT_QMARK = "SELECT id, name, value FROM items WHERE id = ?"
INSERT = "INSERT INTO log (k, payload) VALUES (:k, :p)"
INSERT_QMARK = "INSERT INTO log (k, payload) VALUES (?, ?)"
SCAN = "SELECT count(*) FROM items WHERE name LIKE '%77%'"


def setup(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, value REAL)")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO items VALUES (?, ?, ?)",
        ((i, f"item-{i}", i * 0.5) for i in range(1, ROWS + 1)),
    )
    conn.execute("COMMIT")
    conn.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, k INTEGER, payload TEXT)")
    conn.close()


def sync_conn(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--ops", type=int, default=10_000)
    args = parser.parse_args()
    reps, ops = (3, 2_000) if args.quick else (args.reps, args.ops)

    folder = tempfile.mkdtemp(prefix="awaitdb-bench-")
    path = os.path.join(folder, "bench.db")
    setup(path)
    rng = random.Random(7)
    keys = [rng.randrange(1, ROWS + 1) for _ in range(ops)]
    # S1 at two run lengths (issue 9: short runs and long runs must both hold the target).
    short, long = (500, 10_000) if args.quick else (2_000, 100_000)
    long_keys = [rng.randrange(1, ROWS + 1) for _ in range(long)]
    short_keys = long_keys[:short]

    raw = sync_conn(path)
    aio = await aiosqlite.connect(path, isolation_level=None)
    await aio.execute("PRAGMA synchronous=NORMAL")
    adb = await awaitdb.connect(f"sqlite:///{path}")
    sdb = awaitdb.connect_sync(f"sqlite:///{path}")
    counter = iter(range(10**9))

    def raw_point() -> None:
        for key in keys:
            raw.execute(POINT_QMARK, (key,)).fetchone()

    def sync_face_point() -> None:
        for key in keys:
            sdb.fetch_one(POINT, {"id": key})

    def raw_insert() -> None:
        for key in keys:
            raw.execute(INSERT_QMARK, (next(counter), f"p{key}"))

    async def as_async(fn: Callable[[], None]) -> None:
        fn()

    async def aio_point(key: int) -> None:
        await aio.execute_fetchall(POINT_QMARK, (key,))

    async def adb_point(key: int) -> None:
        await adb.fetch_one(POINT, {"id": key})

    async def aio_insert(key: int) -> None:
        await aio.execute(INSERT_QMARK, (next(counter), f"p{key}"))

    async def adb_insert(key: int) -> None:
        await adb.execute(INSERT, {"k": next(counter), "p": f"p{key}"})

    executor_conn = sync_conn(path)
    loop = asyncio.get_running_loop()
    from concurrent.futures import ThreadPoolExecutor

    one_thread = ThreadPoolExecutor(1)

    async def executor_point(key: int) -> None:
        await loop.run_in_executor(
            one_thread, lambda: executor_conn.execute(POINT_QMARK, (key,)).fetchone()
        )

    async def seq(fn: Callable[[int], Awaitable[None]]) -> None:
        for key in keys:
            await fn(key)

    scan_count = max(40, ops // 100)

    async def adb_scans() -> None:
        await gather_split(lambda _: adb.fetch_val(SCAN), list(range(scan_count)), 4)

    async def inline_scans() -> None:
        for _ in range(scan_count):
            raw.execute(SCAN.replace(":", "")).fetchone()
            await asyncio.sleep(0)

    async def idle() -> None:
        await asyncio.sleep(0.5)

    # name -> (workload, anchor name, ops, measure lag)
    contenders: dict[str, tuple[Callable[[], Awaitable[None]], str, int, bool]] = {
        "point: sync sqlite3": (lambda: as_async(raw_point), "", ops, False),
        "point: aiosqlite sequential": (lambda: seq(aio_point), "point: sync sqlite3", ops, True),
        "point: aiosqlite 50 tasks": (
            lambda: gather_split(aio_point, keys, 50), "point: sync sqlite3", ops, True),
        "point: run_in_executor 1 thread, 50 tasks": (
            lambda: gather_split(executor_point, keys, 50), "point: sync sqlite3", ops, True),
        "point: awaitdb sequential (S2)": (
            lambda: seq(adb_point), "point: sync sqlite3", ops, True),
        "point: awaitdb 50 tasks (S1)": (
            lambda: gather_split(adb_point, keys, 50), "point: sync sqlite3", ops, True),
        f"point: aiosqlite 50 tasks, {short:,} ops": (
            lambda: gather_split(aio_point, short_keys, 50), "point: sync sqlite3", short, True),
        f"point: awaitdb 50 tasks, {short:,} ops (S1)": (
            lambda: gather_split(adb_point, short_keys, 50), "point: sync sqlite3", short, True),
        f"point: aiosqlite 50 tasks, {long:,} ops": (
            lambda: gather_split(aio_point, long_keys, 50), "point: sync sqlite3", long, True),
        f"point: awaitdb 50 tasks, {long:,} ops (S1)": (
            lambda: gather_split(adb_point, long_keys, 50), "point: sync sqlite3", long, True),
        f"point: awaitdb {short:,} one-shot tasks at once": (
            lambda: gather_split(adb_point, short_keys, short), "point: sync sqlite3", short,
            True),
        "point: awaitdb sync face (S5)": (
            lambda: as_async(sync_face_point), "point: sync sqlite3", ops, False),
        "insert: sync sqlite3 autocommit": (lambda: as_async(raw_insert), "", ops, False),
        "insert: aiosqlite 50 tasks": (
            lambda: gather_split(aio_insert, keys, 50), "insert: sync sqlite3 autocommit", ops,
            True),
        "insert: awaitdb 50 tasks (S3)": (
            lambda: gather_split(adb_insert, keys, 50), "insert: sync sqlite3 autocommit", ops,
            True),
        "idle loop (lag floor)": (idle, "", 1, True),
        "2 ms scans: inline on the loop": (inline_scans, "", scan_count, True),
        "2 ms scans: awaitdb, 4 tasks (S4)": (adb_scans, "", scan_count, True),
    }  # fmt: skip

    names = list(contenders)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for name in names:  # warm-up: caches, statement caches, thread start-up
        workload = contenders[name][0]
        await workload()
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            workload, _, count, lag = contenders[name]
            results[name].append(await measure(workload, count, lag))

    aio_by_group = {
        "point: awaitdb sequential (S2)": "point: aiosqlite sequential",
        "point: awaitdb 50 tasks (S1)": "point: aiosqlite 50 tasks",
        "insert: awaitdb 50 tasks (S3)": "insert: aiosqlite 50 tasks",
        f"point: awaitdb 50 tasks, {short:,} ops (S1)": f"point: aiosqlite 50 tasks, {short:,} ops",
        f"point: awaitdb 50 tasks, {long:,} ops (S1)": f"point: aiosqlite 50 tasks, {long:,} ops",
    }
    med = {n: {k: statistics.median(r[k] for r in results[n]) for k in ("ops", "cpu_us", "lag")}
           for n in names}  # fmt: skip
    print(
        f"# SQLite {sqlite3.sqlite_version}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {ROWS:,} rows, {ops:,} ops x {reps} reps (medians)\n"
    )
    header = "| contender | ops/s | x anchor | x aiosqlite | CPU us/op | loop lag p99 ms |"
    print(header)
    print("|" + " --- |" * 6)
    for name in names:
        _, anchor, _, lag = contenders[name]
        row = med[name]
        ratio = f"{row['ops'] / med[anchor]['ops']:.2f}" if anchor else ""
        if not anchor and "sync sqlite3" in name:
            ratio = "1.00"
        vs_aio = ""
        if name in aio_by_group:
            vs_aio = f"{row['ops'] / med[aio_by_group[name]]['ops']:.1f}"
        ops_text = f"{row['ops']:,.0f}" if "idle" not in name else ""
        cpu_text = f"{row['cpu_us']:.1f}" if "idle" not in name else ""
        lag_text = f"{row['lag']:.2f}" if lag else ""
        print(f"| {name} | {ops_text} | {ratio} | {vs_aio} | {cpu_text} | {lag_text} |")
    s2 = med["point: awaitdb sequential (S2)"]["ops"]
    print("\nS1 / S2 (S1 never below S2): " + ", ".join(
        f"{label} {med[name]['ops'] / s2:.2f}"
        for label, name in (
            (f"{ops:,} ops", "point: awaitdb 50 tasks (S1)"),
            (f"{short:,} ops", f"point: awaitdb 50 tasks, {short:,} ops (S1)"),
            (f"{long:,} ops", f"point: awaitdb 50 tasks, {long:,} ops (S1)"),
        )
    ))  # fmt: skip
    stats = adb.stats()
    print(
        f"\nawaitdb: {stats.inline_reads:,} inline reads, {stats.group_commits:,} group commits "
        f"carrying {stats.grouped_writes:,} writes"
    )

    await aio.close()
    await adb.close()
    sdb.close()
    raw.close()
    executor_conn.close()
    one_thread.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
