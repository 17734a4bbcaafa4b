"""Issue 7, defect 16: PostgreSQL ``fetch_all`` of 200k rows against asyncpg alone, and the SQL
scanner on a 5 MB SQL text (time to analyse it, and the event loop's worst lag during one
``execute`` of it).

    AWAITDB_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/db .venv/bin/python \\
        bench/pg_fetch_scan.py [--reps 5]

Runs are interleaved (awaitdb, asyncpg, awaitdb, ...); medians of ``--reps`` repetitions are
printed with CPU ms per call. Loop lag is the worst wake-up delay of a 1 ms ticker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

import awaitdb
from awaitdb import _sql

ROWS_SQL = "SELECT g AS id, 'name ' || g AS name FROM generate_series(1, 200000) g"


def big_insert(target_bytes: int = 5_000_000) -> str:
    """One INSERT of about ``target_bytes`` with string literals, comments and casts."""
    parts: list[str] = []
    size, i = 0, 0
    while size < target_bytes:
        piece = f"({i}, 'row {i}: it''s ; a :fake param', '2024-01-01'::date) /* c{i} */"
        parts.append(piece)
        size += len(piece) + 2
        i += 1
    return "INSERT INTO big (id, note, day) VALUES\n" + ",\n".join(parts)


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, float, float]:
    """(wall ms, CPU ms, worst loop lag ms) of one call."""
    lags: list[float] = []

    async def tick() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - start - 0.001)

    ticker = asyncio.get_running_loop().create_task(tick())
    await asyncio.sleep(0.005)
    lags.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    await call()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await asyncio.sleep(0.003)  # let a ticker that was held up record how late it woke
    ticker.cancel()
    return wall * 1000, cpu * 1000, max(lags, default=0.0) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    url = os.environ.get("AWAITDB_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    conn = await asyncpg.connect(url)
    db = await awaitdb.connect(url, min_size=1, max_size=2)
    await db.execute("DROP TABLE IF EXISTS big")
    await db.execute("CREATE TABLE big (id INTEGER, note TEXT, day DATE)")
    sql = big_insert()
    results: dict[str, list[tuple[float, float, float]]] = {
        "awaitdb fetch_all 200k": [],
        "asyncpg fetch 200k": [],
        "scan 5 MB SQL on the loop": [],
        "awaitdb execute 5 MB SQL": [],
    }
    for _ in range(args.reps):
        results["awaitdb fetch_all 200k"].append(await timed(lambda: db.fetch_all(ROWS_SQL)))
        results["asyncpg fetch 200k"].append(await timed(lambda: conn.fetch(ROWS_SQL)))

        async def scan() -> None:
            _sql._cache.clear()
            _sql._scan(sql)  # on the loop, on purpose: the scanner's own speed

        results["scan 5 MB SQL on the loop"].append(await timed(scan))
        _sql._cache.clear()
        results["awaitdb execute 5 MB SQL"].append(await timed(lambda: db.execute(sql)))
    base = statistics.median(r[0] for r in results["asyncpg fetch 200k"])
    print(f"{len(sql) / 1e6:.1f} MB SQL text; medians of {args.reps} interleaved repetitions")
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        lag = max(r[2] for r in runs)
        ratio = f"  {wall / base:.2f} x asyncpg" if "200k" in name else ""
        print(f"{name:32} {wall:8.1f} ms  cpu {cpu:8.1f} ms  worst loop lag {lag:7.1f} ms{ratio}")
    await db.execute("DROP TABLE big")
    await db.close()
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
