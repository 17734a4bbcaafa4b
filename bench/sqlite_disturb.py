"""S6: does a disturbance slow SQLite point selects for good? (issue 9)

    .venv/bin/python bench/sqlite_disturb.py            # ~15 s
    .venv/bin/python bench/sqlite_disturb.py --runs 3   # repeat each scenario, quote ranges

The sequential rate of awaitdb point selects is measured in 100 ms windows: undisturbed first
(the median of 10 windows is the reference), then after each disturbance, for 2 s:

- a busy Python thread (a CPU-bound library thread) runs beside the loop for 1 s while the loop
  keeps reading;
- a 3 s burst of 50 concurrent tasks reading.

For each it prints the time until the first window back at >= 90 % of the reference (S6: within
1 s), the median rate of the after-windows, the inline reads in them, and the loop lag p99 of
a 1 ms ticker during the disturbance and after it (S4: idle floor + 2 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Ticker, gather_split
from sqlite_bench import POINT, ROWS, setup

import awaitdb

WINDOW_S = 0.1
AFTER_S = 2.0
TARGET = 0.9


Window = tuple[float, int, int]  # ops/s, inline reads, reads


async def windows(db: awaitdb.Database, keys: list[int], seconds: float) -> list[Window]:
    """Sequential point selects for ``seconds``: (ops/s, inline reads, reads) per 100 ms."""
    out: list[Window] = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        start = time.perf_counter()
        inline0 = db.stats().inline_reads
        done = 0
        while True:
            for _ in range(50):
                await db.fetch_one(POINT, {"id": keys[i % len(keys)]})
                i += 1
            done += 50
            elapsed = time.perf_counter() - start
            if elapsed >= WINDOW_S:
                break
        out.append((done / elapsed, db.stats().inline_reads - inline0, done))
    return out


def busy_python(stop: threading.Event) -> None:
    """A CPU-bound pure-Python thread: it takes the GIL whenever the loop lets it go."""
    x = 0
    while not stop.is_set():
        for i in range(1000):
            x += i * i


async def scenario(
    db: awaitdb.Database,
    keys: list[int],
    reference: float,
    disturb: Callable[[], Awaitable[None]],
) -> dict[str, float]:
    with Ticker() as during:
        await disturb()
    with Ticker() as after_lag:
        after = await windows(db, keys, AFTER_S)
    back = next(
        (k * WINDOW_S for k, (rate, _, _) in enumerate(after) if rate >= TARGET * reference),
        float("inf"),
    )
    return {
        "back_s": back,
        "after": statistics.median(rate for rate, _, _ in after),
        "inline": sum(n for _, n, _ in after),
        "ops": sum(n for _, _, n in after),
        "lag_during": during.p99_ms(),
        "lag_after": after_lag.p99_ms(),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="awaitdb-disturb-")
    path = os.path.join(folder, "bench.db")
    setup(path)
    rng = random.Random(7)
    keys = [rng.randrange(1, ROWS + 1) for _ in range(100_000)]

    async def busy_thread() -> None:
        stop = threading.Event()
        thread = threading.Thread(target=busy_python, args=(stop,))
        thread.start()
        try:
            await windows(db, keys, 1.0)  # the loop keeps reading while the thread runs
        finally:
            stop.set()
            thread.join()

    async def burst() -> None:
        end = time.perf_counter() + 3.0

        async def reader(k: int) -> None:
            while time.perf_counter() < end:
                await db.fetch_one(POINT, {"id": keys[k % len(keys)]})
                k += 50

        await gather_split(reader, list(range(50)), 50)

    with Ticker() as idle:
        await asyncio.sleep(0.5)
    print(f"# idle loop lag p99 (floor): {idle.p99_ms():.2f} ms\n")
    print(
        "| run | scenario | reference ops/s | back to 90 % after s | median after ops/s "
        "| after / reference | inline reads after | lag p99 during ms | lag p99 after ms |"
    )
    print("|" + " --- |" * 9)
    for run in range(args.runs):
        db = await awaitdb.connect(f"sqlite:///{path}")
        try:
            await windows(db, keys, 0.3)  # warm-up
            for name, disturb in (("busy thread 1 s", busy_thread), ("50-task burst 3 s", burst)):
                reference = statistics.median(rate for rate, _, _ in await windows(db, keys, 1.0))
                row = await scenario(db, keys, reference, disturb)
                back = f"{row['back_s']:.1f}" if row["back_s"] != float("inf") else "never (2 s)"
                print(
                    f"| {run + 1} | {name} | {reference:,.0f} | {back} | {row['after']:,.0f} | "
                    f"{row['after'] / reference:.2f} | {row['inline']:,.0f} of {row['ops']:,.0f} "
                    f"| {row['lag_during']:.2f} | {row['lag_after']:.2f} |"
                )
        finally:
            await db.close()


if __name__ == "__main__":
    asyncio.run(main())
