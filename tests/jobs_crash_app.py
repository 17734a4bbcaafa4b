"""A worker process for tests/test_jobs_crash.py: ``python jobs_crash_app.py URL LEASE GRACE``.

Its tasks record what they did in tables the test reads: ``runs`` (one row per execution of a
plain task), ``effects`` (written by a transactional task) and ``flaky_seen`` (a task that fails
on its first run and succeeds after).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import awaitdb
from awaitdb import jobs

POLICY: dict[str, Any] = {"retries": 1000, "backoff": 0.01, "max_backoff": 0.05}


def define(db: awaitdb.Database) -> jobs.Queue:
    queue = jobs.Queue(db, "crash")

    @queue.task(name="plain", **POLICY)
    async def plain(n: int) -> None:
        await asyncio.sleep(0.005)
        await db.execute("INSERT INTO runs (n) VALUES (:n)", {"n": n})

    @queue.task(name="effect", transactional=True, **POLICY)
    async def effect(tx: Any, n: int) -> None:
        await tx.execute("INSERT INTO effects (n) VALUES (:n)", {"n": n})

    @queue.task(name="flaky", **POLICY)
    async def flaky(n: int) -> None:
        first = await db.execute(
            "INSERT INTO flaky_seen (n) VALUES (:n) ON CONFLICT DO NOTHING", {"n": n}
        )
        if first:
            raise RuntimeError("fails on its first run")

    @queue.task(name="sleepy")
    async def sleepy(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return queue


async def main(url: str, lease: float, grace: float) -> None:
    db = await awaitdb.connect(url)
    try:
        queue = define(db)
        worker = jobs.Worker(queue, concurrency=8, lease=lease, grace=grace, poll=0.5)
        await queue.ready()
        print("ready", flush=True)
        await worker.run()
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
