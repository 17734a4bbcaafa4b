"""PostgreSQL side by side: awaitdb against asyncpg, psycopg, SQLAlchemy and databases (P1-P4).

    .venv/bin/python bench/pg_bench.py [--url postgresql://postgres@127.0.0.1:5432/test]
    .venv/bin/python bench/pg_bench.py --quick

Point select by primary key on a 100,000-row table (schema ``awaitdb_bench``). Contenders run
interleaved in one process, medians of repetitions; ratios are to asyncpg's default pool.
P3 runs 1,000 tasks on a pool of 10 and prints the distribution of per-query latency.
P4 is awaitdb's CPU per call minus a bare asyncpg connection's, sequential.
P5 compares awaitdb with "the bare-connection limit": 8 asyncpg connections handed out by a
bare ``asyncio.Queue`` (no reset, no checks, no stats), sequential and 32 tasks.
``--p5`` runs only the contenders P5 needs (asyncpg pool, bare Queue, awaitdb), for profiling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import databases
import psycopg
from harness import gather_split, interleave
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import awaitdb

ROWS = 100_000
TABLE = "awaitdb_bench.items"
POINT = f"SELECT id, name, value FROM {TABLE} WHERE id = :id"
POINT_PG = f"SELECT id, name, value FROM {TABLE} WHERE id = $1"
POINT_PSYCOPG = f"SELECT id, name, value FROM {TABLE} WHERE id = %s"


def setup(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS awaitdb_bench")
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'awaitdb_bench' "
            "AND tablename = 'items'"
        ).fetchone()
        if row and row[0]:
            count = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            if count and count[0] == ROWS:
                return
            conn.execute(f"DROP TABLE {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, name TEXT, value FLOAT8)")
        conn.execute(
            f"INSERT INTO {TABLE} SELECT g, 'item-' || g, g * 0.5 FROM generate_series(1, {ROWS}) g"
        )
        conn.execute(f"ANALYZE {TABLE}")


async def no_reset(conn: asyncpg.Connection) -> None:
    """asyncpg pool without its reset round trip on release."""


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--url",
        default=os.environ.get("AWAITDB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--p5", action="store_true", help="only the P5 contenders")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--ops", type=int, default=6_000)
    args = parser.parse_args()
    reps, ops = (3, 1_500) if args.quick else (args.reps, args.ops)
    url = args.url
    setup(url)
    rng = random.Random(7)
    keys = [rng.randrange(1, ROWS + 1) for _ in range(ops)]

    apool = await asyncpg.create_pool(url, min_size=8, max_size=8)
    full = not args.p5  # --p5 opens only the connections its contenders use
    apool_nr = await asyncpg.create_pool(url, min_size=8 if full else 0, max_size=8,
                                         reset=no_reset)  # fmt: skip
    ppool = AsyncConnectionPool(url, min_size=8, max_size=8, open=False)
    if full:
        await ppool.open(wait=True)
    engine = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://"), pool_size=8, max_overflow=0
    )
    dbs = databases.Database(url.replace("postgresql://", "postgresql+asyncpg://"),
                             min_size=8, max_size=8)  # fmt: skip
    if full:
        await dbs.connect()
    adb = await awaitdb.connect(url, min_size=8, max_size=8)
    bare = await asyncpg.connect(url)
    bare_queue: asyncio.Queue[asyncpg.Connection] = asyncio.Queue()
    for _ in range(8):
        bare_queue.put_nowait(await asyncpg.connect(url))

    async def asyncpg_pool(key: int) -> None:
        async with apool.acquire() as conn:
            await conn.fetchrow(POINT_PG, key)

    async def asyncpg_pool_no_reset(key: int) -> None:
        async with apool_nr.acquire() as conn:
            await conn.fetchrow(POINT_PG, key)

    async def psycopg_pool(key: int) -> None:
        async with ppool.connection() as conn:
            cur = await conn.execute(POINT_PSYCOPG, (key,))
            await cur.fetchone()

    sql_text = text(POINT)

    async def sqlalchemy_text(key: int) -> None:
        async with engine.connect() as conn:
            (await conn.execute(sql_text, {"id": key})).fetchone()

    async def databases_fetch(key: int) -> None:
        await dbs.fetch_one(POINT, {"id": key})

    async def awaitdb_fetch(key: int) -> None:
        await adb.fetch_one(POINT, {"id": key})

    async def bare_queue_fetch(key: int) -> None:
        conn = await bare_queue.get()
        try:
            await conn.fetchrow(POINT_PG, key)
        finally:
            bare_queue.put_nowait(conn)

    async def bare_asyncpg(key: int) -> None:
        await bare.fetchrow(POINT_PG, key)

    async def seq(fn: Any) -> None:
        for key in keys:
            await fn(key)

    fns = {
        "asyncpg pool (default)": asyncpg_pool,
        "asyncpg pool, no reset": asyncpg_pool_no_reset,
        "psycopg AsyncConnectionPool": psycopg_pool,
        "SQLAlchemy async text()": sqlalchemy_text,
        "databases": databases_fetch,
        "bare asyncpg Queue (P5 limit)": bare_queue_fetch,
        "awaitdb": awaitdb_fetch,
    }
    if args.p5:
        keep = ("asyncpg pool (default)", "bare asyncpg Queue (P5 limit)", "awaitdb")
        fns = {name: fn for name, fn in fns.items() if name in keep}
    contenders: dict[str, Any] = {}
    for name, fn in fns.items():
        contenders[f"sequential: {name}"] = (lambda fn=fn: seq(fn), ops, True)
        contenders[f"32 tasks / pool 8: {name}"] = (
            lambda fn=fn: gather_split(fn, keys, 32), ops, True)  # fmt: skip
    contenders["sequential: bare asyncpg connection (P4 floor)"] = (
        lambda: seq(bare_asyncpg), ops, False)  # fmt: skip
    med = await interleave(contenders, reps)

    print(
        f"# PostgreSQL {(await bare.fetchval('SHOW server_version'))}, Python "
        f"{platform.python_version()}, asyncpg {asyncpg.__version__}, psycopg "
        f"{psycopg.__version__}, {os.cpu_count()} CPUs; {ops:,} ops x {reps} reps (medians)\n"
    )
    print("| contender | ops/s | x asyncpg pool | CPU us/op | loop lag p99 ms |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in med.items():
        mode = name.split(":")[0]
        anchor = med.get(f"{mode}: asyncpg pool (default)")
        ratio = f"{row['ops'] / anchor['ops']:.2f}" if anchor else ""
        lag = f"{row['lag']:.2f}" if row["lag"] else ""
        print(f"| {name} | {row['ops']:,.0f} | {ratio} | {row['cpu_us']:.1f} | {lag} |")

    seq_awaitdb = med["sequential: awaitdb"]["cpu_us"]
    seq_bare = med["sequential: bare asyncpg connection (P4 floor)"]["cpu_us"]
    print(f"\nP4: awaitdb adds {seq_awaitdb - seq_bare:.1f} us CPU per call over a bare asyncpg "
          f"connection ({seq_awaitdb:.1f} vs {seq_bare:.1f})")  # fmt: skip
    for mode in ("sequential", "32 tasks / pool 8"):
        limit = med[f"{mode}: bare asyncpg Queue (P5 limit)"]
        mine_row = med[f"{mode}: awaitdb"]
        print(f"P5 {mode}: awaitdb = {mine_row['ops'] / limit['ops']:.2f} x the bare-connection "
              f"limit ({mine_row['cpu_us']:.1f} vs {limit['cpu_us']:.1f} us CPU/op)")  # fmt: skip
    if args.p5:
        await p5_close(adb, bare, bare_queue, None, engine, None, apool, apool_nr)
        return
    for mode in ("sequential", "32 tasks / pool 8"):
        base = med[f"{mode}: asyncpg pool (default)"]["ops"]
        others = {n.split(": ", 1)[1]: r["ops"] for n, r in med.items() if n.startswith(mode)}
        mine = others["awaitdb"]
        psy, sqla = others["psycopg AsyncConnectionPool"], others["SQLAlchemy async text()"]
        print(f"{mode}: awaitdb = {mine / base:.2f} x asyncpg pool, {mine / psy:.2f} x psycopg "
              f"pool, {mine / sqla:.2f} x SQLAlchemy")  # fmt: skip

    # P3: 1,000 concurrent tasks on a pool of 10.
    p3 = await awaitdb.connect(url, min_size=10, max_size=10, acquire_timeout=120)
    per_task = 20
    latencies: list[float] = []
    errors = 0

    async def task(i: int) -> None:
        nonlocal errors
        for j in range(per_task):
            start = time.perf_counter()
            try:
                await p3.fetch_one(POINT, {"id": keys[(i * per_task + j) % len(keys)]})
            except awaitdb.Error:
                errors += 1
            latencies.append(time.perf_counter() - start)

    await gather_split(awaitdb_fetch, keys[:2000], 32)  # warm
    start = time.perf_counter()
    await asyncio.gather(*(task(i) for i in range(1000)))
    wall = time.perf_counter() - start
    p3_rate = 1000 * per_task / wall
    base32 = med["32 tasks / pool 8: awaitdb"]["ops"]
    lat = sorted(latencies)
    p50, p99, mx = lat[len(lat) // 2], lat[int(len(lat) * 0.99)], lat[-1]
    stats = p3.stats()
    print(
        f"\nP3: 1,000 tasks x {per_task} queries on a pool of 10: {errors} errors, "
        f"{p3_rate:,.0f} queries/s ({p3_rate / base32:.2f} of the 32-task figure); "
        f"latency p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {mx * 1000:.1f} ms "
        f"(max/median {mx / p50:.2f}); pool acquire wait p50 {stats.acquire_wait_p50_ms} ms, "
        f"p99 {stats.acquire_wait_p99_ms} ms"
    )
    print(f"median per-query latency: {statistics.median(latencies) * 1000:.1f} ms")

    await p3.close()
    await p5_close(adb, bare, bare_queue, dbs, engine, ppool, apool, apool_nr)


async def p5_close(adb: Any, bare: Any, queue: Any, dbs: Any, *pools: Any) -> None:
    await adb.close()
    await bare.close()
    while not queue.empty():
        await queue.get_nowait().close()
    if dbs is not None:
        await dbs.disconnect()
    engine, ppool, apool, apool_nr = pools
    await engine.dispose()
    if ppool is not None:
        await ppool.close()
    await apool.close()
    await apool_nr.close()


if __name__ == "__main__":
    asyncio.run(main())
