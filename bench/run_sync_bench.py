"""Sync code beside async code on one SQLite file: two faces vs ``db.sync_view()`` (issue 13).

    .venv/bin/python bench/run_sync_bench.py            # 5 repetitions (~30 s)
    .venv/bin/python bench/run_sync_bench.py --reps 3

While 20 async tasks insert rows as fast as they can, a sync thread runs 200 small write
transactions (two INSERTs each). The anchor is the status quo: a separate ``connect_sync``
database on the same file, two writers meeting at SQLite's file lock. The contender is a
``SyncView`` of the async database: one writer, one queue. Printed per repetition and as
medians: the sync transactions' p50/p99 latency, ``DatabaseBusy`` failures, async inserts/s.
Repetitions alternate the two (order rotated) so that noise on a shared machine hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import awaitdb

SYNC_TX = 200
ASYNC_TASKS = 20


def _sync_work(db: Any, latencies: list[float], errors: list[str]) -> None:
    for i in range(SYNC_TX):
        start = time.perf_counter()
        try:
            with db.transaction() as tx:
                tx.execute("INSERT INTO log (who, i) VALUES ('sync', :i)", {"i": i})
                tx.execute("INSERT INTO log (who, i) VALUES ('sync', :i)", {"i": -i})
        except awaitdb.DatabaseBusy as exc:
            errors.append(str(exc))
        latencies.append(time.perf_counter() - start)


async def one_run(mode: str) -> dict[str, float]:
    folder = tempfile.mkdtemp()
    url = f"sqlite:///{folder}/bench.db"
    async with awaitdb.connect(url) as db:
        await db.execute("CREATE TABLE log (who TEXT NOT NULL, i INTEGER)")
        sync_db: Any = awaitdb.connect_sync(url) if mode == "connect_sync" else db.sync_view()
        latencies: list[float] = []
        errors: list[str] = []
        stop = False
        inserted = 0

        async def writer() -> None:
            nonlocal inserted
            while not stop:
                await db.execute("INSERT INTO log (who, i) VALUES ('async', 1)")
                inserted += 1

        tasks = [asyncio.create_task(writer()) for _ in range(ASYNC_TASKS)]
        start = time.perf_counter()
        thread = threading.Thread(target=_sync_work, args=(sync_db, latencies, errors))
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - start
        stop = True
        await asyncio.gather(*tasks)
        if mode == "connect_sync":
            sync_db.close()
    ordered = sorted(latencies)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        "busy": float(len(errors)),
        "async_per_s": inserted / elapsed,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    modes = ["connect_sync", "sync_view"]
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for rep in range(args.reps):
        for mode in modes if rep % 2 == 0 else list(reversed(modes)):
            result = await one_run(mode)
            results[mode].append(result)
            print(
                f"rep {rep} {mode:>12}: sync tx p50 {result['p50_ms']:7.2f} ms  "
                f"p99 {result['p99_ms']:7.2f} ms  busy {result['busy']:.0f}  "
                f"async {result['async_per_s']:8.0f} inserts/s",
                flush=True,
            )
    print(
        f"\nmedians over {args.reps} repetitions ({SYNC_TX} sync transactions, "
        f"{ASYNC_TASKS} async writer tasks):"
    )
    for mode in modes:
        runs = results[mode]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{mode:>12}: sync tx p50 {med['p50_ms']:7.2f} ms  p99 {med['p99_ms']:7.2f} ms  "
            f"busy {med['busy']:.0f}  async {med['async_per_s']:8.0f} inserts/s"
        )


if __name__ == "__main__":
    asyncio.run(main())
