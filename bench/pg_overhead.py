"""P4: CPU microseconds awaitdb adds per call over a bare asyncpg connection, sequential.

    .venv/bin/python bench/pg_overhead.py [--url ...] [--calls 20000] [--reps 5] [--profile]

Run bench/pg_bench.py once first: it creates the awaitdb_bench.items table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

import awaitdb

SQL = "SELECT id, name, value FROM awaitdb_bench.items WHERE id = :id"
PG = "SELECT id, name, value FROM awaitdb_bench.items WHERE id = $1"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--url",
        default=os.environ.get("AWAITDB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    bare = await asyncpg.connect(args.url)
    db = await awaitdb.connect(args.url, min_size=1, max_size=1)
    keys = [random.randrange(1, 100_000) for _ in range(args.calls)]
    bare_us: list[float] = []
    ours_us: list[float] = []
    for _ in range(args.reps):
        start = time.process_time()
        for key in keys:
            await bare.fetchrow(PG, key)
        bare_us.append((time.process_time() - start) / len(keys) * 1e6)
        start = time.process_time()
        for key in keys:
            await db.fetch_one(SQL, {"id": key})
        ours_us.append((time.process_time() - start) / len(keys) * 1e6)
    diffs = [round(a - b, 1) for a, b in zip(ours_us, bare_us, strict=True)]
    b, a = statistics.median(bare_us), statistics.median(ours_us)
    print(f"bare asyncpg {b:.1f} us CPU/call, awaitdb {a:.1f} us: overhead {a - b:.1f} us "
          f"(median); per repetition {diffs}")  # fmt: skip
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for key in keys[:5000]:
            await db.fetch_one(SQL, {"id": key})
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    await db.close()
    await bare.close()


if __name__ == "__main__":
    asyncio.run(main())
