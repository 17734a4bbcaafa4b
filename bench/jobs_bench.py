"""Jobs, side by side: awaitdb.jobs vs pgqueuer and procrastinate (targets J1-J4).

    AWAITDB_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/aw_i10jobs \
        .venv/bin/python bench/jobs_bench.py [--reps 3] [--jobs 10000]

J1  no-op jobs drained on PostgreSQL (jobs/s from the first claim to the last "done" recorded)
J2  enqueue: one commit per job (sequential), and batched (1,000 per call)
J3  no-op jobs drained on SQLite
J4  enqueue-to-start latency on an idle worker in the same process (p50/p99 ms), both backends

Contenders run interleaved, ``--reps`` times each, and the medians are printed with CPU
microseconds per job (this process only; the PostgreSQL server's CPU is not counted). Each
library gets its own PostgreSQL schema (``bench_awaitdb``, ``bench_pgqueuer``,
``bench_procrastinate``), dropped and re-created at the start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import awaitdb
from awaitdb import jobs

PG_URL = os.environ.get("AWAITDB_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/aw_i10jobs")
SCHEMAS = ("bench_awaitdb", "bench_pgqueuer", "bench_procrastinate")


def with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


async def reset_schemas() -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        for schema in SCHEMAS:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()


Result = dict[str, float]


async def timed(work: Callable[[], Awaitable[None]], ops: int) -> Result:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await work()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    return {"ops": ops / wall, "cpu_us": cpu / ops * 1e6}


# -- awaitdb -------------------------------------------------------------------------------------


class AwaitdbJobs:
    """One database, one queue with a no-op task and a latency probe."""

    def __init__(self, db: awaitdb.Database, concurrency: int) -> None:
        self.db = db
        self.queue = jobs.Queue(db, "bench")
        self.concurrency = concurrency
        self.started: list[float] = []
        self.probed = asyncio.Event()

        @self.queue.task(name="noop", retries=0)
        async def noop(n: int) -> None:
            pass

        @self.queue.task(name="probe", retries=0)
        async def probe(t: float) -> None:
            self.started.append(time.perf_counter())
            self.probed.set()

        self.noop, self.probe = noop, probe

    async def clear(self) -> None:
        await self.queue.ready()
        await self.db.execute("DELETE FROM awaitdb_jobs")

    async def fill(self, n: int) -> None:
        for start in range(0, n, 5000):
            await self.noop.enqueue_many([{"n": i} for i in range(start, min(n, start + 5000))])

    async def drain(self, n: int) -> None:
        worker = jobs.Worker(self.queue, concurrency=self.concurrency, batch=self.concurrency)
        async with worker:
            while worker.counts["done"] < n:
                await asyncio.sleep(0.002)

    async def enqueue_each(self, n: int) -> None:
        for i in range(n):
            await self.noop.enqueue(n=i)

    async def enqueue_batched(self, n: int) -> None:
        for start in range(0, n, 1000):
            await self.noop.enqueue_many([{"n": i} for i in range(start, start + 1000)])

    async def latency(self, samples: int) -> tuple[list[float], list[float]]:
        """Start minus enqueue call, and start minus the enqueue's commit (return)."""
        self.started = []
        from_call: list[float] = []
        from_commit: list[float] = []
        async with jobs.Worker(self.queue, concurrency=4):
            await asyncio.sleep(0.3)  # the worker is idle and listening
            for _ in range(samples):
                self.probed.clear()
                count = len(self.started)
                t0 = time.perf_counter()
                await self.probe.enqueue(t=t0)
                t1 = time.perf_counter()
                try:
                    await asyncio.wait_for(self.probed.wait(), 5)
                except TimeoutError:
                    continue
                if len(self.started) > count:
                    from_call.append(self.started[-1] - t0)
                    from_commit.append(self.started[-1] - t1)
                await asyncio.sleep(0.01)
        return from_call, from_commit


# -- pgqueuer ------------------------------------------------------------------------------------


class PgQueuer:
    """pgqueuer 1.x with asyncpg: 5 consumers x batch 10 (its documented benchmark setup)."""

    consumers = 5
    batch = 10

    async def open(self) -> None:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        self.url = with_search_path(PG_URL, "bench_pgqueuer")
        self.conn = await asyncpg.connect(self.url)
        self.queries = Queries(AsyncpgDriver(self.conn))
        await self.queries.install()

    async def close(self) -> None:
        await self.conn.close()

    async def clear(self) -> None:
        await self.conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")

    async def fill(self, n: int) -> None:
        for start in range(0, n, 1000):
            k = min(1000, n - start)
            await self.queries.enqueue(["noop"] * k, [None] * k, [0] * k)

    async def drain(self, n: int) -> None:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.qm import QueueManager
        from pgqueuer.queries import Queries
        from pgqueuer.types import QueueExecutionMode

        conns = [await asyncpg.connect(self.url) for _ in range(self.consumers)]
        try:
            managers = []
            for conn in conns:
                qm = QueueManager(Queries(AsyncpgDriver(conn)))

                @qm.entrypoint("noop")
                async def noop(job: Any) -> None:
                    pass

                managers.append(qm)
            await asyncio.gather(
                *(qm.run(batch_size=self.batch, mode=QueueExecutionMode.drain) for qm in managers)
            )
        finally:
            for conn in conns:
                if not conn.is_closed():
                    await conn.close()

    async def enqueue_each(self, n: int) -> None:
        for _ in range(n):
            await self.queries.enqueue("noop", None)

    async def enqueue_batched(self, n: int) -> None:
        for _ in range(0, n, 1000):
            await self.queries.enqueue(["noop"] * 1000, [None] * 1000, [0] * 1000)


# -- procrastinate -------------------------------------------------------------------------------


class Procrastinate:
    """procrastinate 3.x with its psycopg connector; one worker, concurrency 10."""

    async def open(self) -> None:
        import procrastinate

        conninfo = PG_URL + ("&" if "?" in PG_URL else "?") + "options=-csearch_path%3D"
        conninfo += "bench_procrastinate"
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

        @self.app.task(name="noop")
        async def noop(n: int) -> None:
            pass

        self.noop = noop
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()

    async def close(self) -> None:
        await self.app.close_async()

    async def clear(self) -> None:
        async with self.app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            await conn.execute("TRUNCATE procrastinate_jobs CASCADE")

    async def fill(self, n: int) -> None:
        for start in range(0, n, 1000):
            await self.noop.batch_defer_async(
                *({"n": i} for i in range(start, min(n, start + 1000)))
            )

    async def drain(self, n: int) -> None:
        await self.app.run_worker_async(wait=False, concurrency=10, install_signal_handlers=False)

    async def enqueue_each(self, n: int) -> None:
        for i in range(n):
            await self.noop.defer_async(n=i)

    async def enqueue_batched(self, n: int) -> None:
        for start in range(0, n, 1000):
            await self.noop.batch_defer_async(*({"n": i} for i in range(start, start + 1000)))


# -- runs ----------------------------------------------------------------------------------------


async def interleaved(
    contenders: dict[str, tuple[Any, Callable[[Any], Awaitable[None]], int, bool]], reps: int
) -> dict[str, Result]:
    """Each contender: (object, workload(obj), ops, needs a fill first). Medians of reps."""
    results: dict[str, list[Result]] = {name: [] for name in contenders}
    names = list(contenders)
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            obj, work, ops, fill = contenders[name]
            await obj.clear()
            if fill:
                await obj.fill(ops)
            results[name].append(await timed(lambda: work(obj), ops))  # noqa: B023
    return {
        name: {k: statistics.median(r[k] for r in rs) for k in ("ops", "cpu_us")}
        for name, rs in results.items()
    }


def table(title: str, rows: dict[str, Result], anchor: str | None) -> None:
    print(f"\n{title}")
    print(f"  {'contender':<34}{'jobs/s':>10}{'CPU us/job':>12}{'x anchor':>10}")
    base = rows[anchor]["ops"] if anchor else None
    for name, r in rows.items():
        ratio = f"{r['ops'] / base:.2f}" if base else "-"
        print(f"  {name:<34}{r['ops']:>10,.0f}{r['cpu_us']:>12.0f}{ratio:>10}")


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2] * 1000
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000
    return f"p50 {p50:.2f} ms  p99 {p99:.2f} ms  (n={len(ordered)})"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default="J1,J2,J3,J4", help="comma-separated targets")
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--slow-jobs", type=int, default=1000, help="for procrastinate")
    parser.add_argument("--each", type=int, default=2000, help="J2 one-commit enqueues")
    parser.add_argument("--batched", type=int, default=50000, help="J2 batched enqueues")
    args = parser.parse_args()
    n = args.jobs

    await reset_schemas()
    pg = await awaitdb.connect(with_search_path(PG_URL, "bench_awaitdb"), max_size=10)
    tmp = tempfile.TemporaryDirectory()
    lite = await awaitdb.connect(f"sqlite:///{Path(tmp.name) / 'jobs.db'}")
    a_pg, a_lite = AwaitdbJobs(pg, concurrency=100), AwaitdbJobs(lite, concurrency=100)
    pgq, proc = PgQueuer(), Procrastinate()
    await pgq.open()
    await proc.open()
    try:
        print(f"jobs_bench: {n:,} no-op jobs, {args.reps} interleaved reps, medians")
        only = set(args.only.upper().split(","))
        await run_all(args, only, n, a_pg, a_lite, pgq, proc)
    finally:
        await pgq.close()
        await proc.close()
        await pg.close()
        await lite.close()
        tmp.cleanup()


async def run_all(
    args: Any, only: set[str], n: int, a_pg: Any, a_lite: Any, pgq: Any, proc: Any
) -> None:
    if "J1" in only:
        j1 = await interleaved(
            {
                "awaitdb (1 worker, concurrency 100)": (a_pg, lambda o: o.drain(n), n, True),
                "pgqueuer (5 consumers x batch 10)": (pgq, lambda o: o.drain(n), n, True),
                "procrastinate (concurrency 10)": (
                    proc, lambda o: o.drain(args.slow_jobs), args.slow_jobs, True,
                ),
            },
            args.reps,
        )  # fmt: skip
        table("J1 no-op jobs drained, PostgreSQL", j1, "pgqueuer (5 consumers x batch 10)")

    if "J2" in only:
        each, batched = args.each, args.batched
        j2 = await interleaved(
            {
                "awaitdb enqueue, 1 commit each": (a_pg, lambda o: o.enqueue_each(each), each, 0),
                "pgqueuer enqueue, 1 commit each": (pgq, lambda o: o.enqueue_each(each), each, 0),
                "procrastinate defer, 1 commit each": (
                    proc, lambda o: o.enqueue_each(each // 4), each // 4, False,
                ),
                "awaitdb enqueue_many, 1,000/call": (
                    a_pg, lambda o: o.enqueue_batched(batched), batched, False,
                ),
                "pgqueuer enqueue, 1,000/call": (
                    pgq, lambda o: o.enqueue_batched(batched), batched, False,
                ),
                "procrastinate batch_defer, 1,000/call": (
                    proc, lambda o: o.enqueue_batched(batched // 5), batched // 5, False,
                ),
            },
            args.reps,
        )  # fmt: skip
        table("J2 enqueue, PostgreSQL", j2, "pgqueuer enqueue, 1 commit each")

    if "J3" in only:
        j3 = await interleaved(
            {"awaitdb SQLite (1 worker, concurrency 100)": (a_lite, lambda o: o.drain(n), n, 1)},
            args.reps,
        )
        table("J3 no-op jobs drained, SQLite", j3, None)

    if "J4" in only:
        print("\nJ4 enqueue-to-start latency, idle worker in the same process")
        for label, obj in (("PostgreSQL", a_pg), ("SQLite", a_lite)):
            await obj.clear()
            from_call, from_commit = await obj.latency(200)
            print(f"  awaitdb {label:<11} from the enqueue call:   {percentiles(from_call)}")
            print(f"  awaitdb {label:<11} from its commit/return:  {percentiles(from_commit)}")


if __name__ == "__main__":
    asyncio.run(main())
