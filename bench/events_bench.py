"""Events side by side: the bus against pyee (E1), the stream against Redis Streams (E2, E3).

    .venv/bin/python bench/events_bench.py [--pg postgresql://postgres@127.0.0.1:5432/test]
                                           [--redis redis://127.0.0.1:6379/0] [--reps 3]

E1  in-process emit to one async listener, 20,000 events, each delivered before the run ends:
    ``await bus.emit`` and ``bus.emit_nowait`` against pyee's ``AsyncIOEventEmitter``.
E2  durable stream on PostgreSQL: 32 publisher tasks, one commit per event, one consumer task
    in the same process consuming everything (throughput: first publish to last consumed);
    then latency: one publisher, one event at a time, publish -> consumed, p50/p90. Side by
    side with Redis Streams: XADD from 32 tasks, one XREADGROUP (BLOCK, COUNT 500) + XACK
    consumer; the same latency run.
E3  the same stream workload on SQLite (a file in a temporary folder).

Contenders run interleaved in one process, medians of ``--reps`` repetitions. The stream runs
use fresh group names and delete their own ``bench.*`` events afterwards: point ``--pg`` at a
scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis
from pyee.asyncio import AsyncIOEventEmitter

import awaitdb
from awaitdb import events

E1_EVENTS = 20_000
STREAM_EVENTS = 4_000
LATENCY_EVENTS = 300
PUBLISHERS = 32


# -- E1 ------------------------------------------------------------------------------------------


async def e1_awaitdb_emit() -> None:
    bus = events.Bus()
    seen = 0

    async def listener(event: events.Event) -> None:
        nonlocal seen
        seen += 1

    bus.on("order.paid", listener)
    for i in range(E1_EVENTS):
        await bus.emit("order.paid", i)
    assert seen == E1_EVENTS


async def e1_awaitdb_nowait() -> None:
    bus = events.Bus()
    seen = 0

    async def listener(event: events.Event) -> None:
        nonlocal seen
        seen += 1

    bus.on("order.paid", listener)
    for i in range(E1_EVENTS):
        bus.emit_nowait("order.paid", i)
    await bus.aclose()
    assert seen == E1_EVENTS


async def e1_pyee() -> None:
    ee = AsyncIOEventEmitter()
    seen = 0

    async def listener(data: Any) -> None:
        nonlocal seen
        seen += 1

    ee.on("order.paid", listener)
    for i in range(E1_EVENTS):
        ee.emit("order.paid", i)
    while seen < E1_EVENTS:  # every delivery done, as with the bus
        await asyncio.sleep(0)
    assert seen == E1_EVENTS


async def timed(run: Callable[[], Awaitable[Any]], ops: int) -> dict[str, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    extra = await run()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    result = {"ops": ops / wall, "cpu_us": cpu / ops * 1e6}
    if isinstance(extra, dict):
        result.update(extra)
    return result


async def side_by_side(
    contenders: dict[str, tuple[Callable[[], Awaitable[Any]], int]], reps: int
) -> dict[str, dict[str, float]]:
    """Warm each, then run them round-robin ``reps`` times; medians of every figure."""
    names = list(contenders)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for name in names:
        await contenders[name][0]()
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            run, ops = contenders[name]
            runs[name].append(await timed(run, ops))
    return {
        name: {key: statistics.median(r[key] for r in runs[name]) for key in runs[name][0]}
        for name in names
    }


# -- E2 / E3: the stream -------------------------------------------------------------------------


class StreamBench:
    """Throughput and latency of awaitdb's stream on one database."""

    def __init__(self, db: awaitdb.Database) -> None:
        self.db = db
        self.stream = events.Stream(db)

    async def throughput(self) -> dict[str, float]:
        group = f"bench-{uuid.uuid4().hex[:8]}"
        await self.stream.create_group(group, "bench.*")
        done = asyncio.Event()
        count = 0

        async def consume() -> None:
            nonlocal count
            async with self.stream.subscribe("bench.*", group=group, batch_size=500) as c:
                async for _ in c:
                    count += 1
                    if count == STREAM_EVENTS:
                        done.set()
                        return

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.05)

        async def publish(k: int) -> None:
            for i in range(k, STREAM_EVENTS, PUBLISHERS):
                await self.stream.publish("bench.order", {"i": i})

        await asyncio.gather(*(publish(k) for k in range(PUBLISHERS)))
        await done.wait()
        await consumer
        await self.stream.drop_group(group)
        return {}

    async def latency(self) -> list[float]:
        group = f"bench-{uuid.uuid4().hex[:8]}"
        await self.stream.create_group(group, "bench.*")
        latencies: list[float] = []

        async def consume() -> None:
            async with self.stream.subscribe("bench.*", group=group) as c:
                async for event in c:
                    latencies.append(time.perf_counter() - event.data["t"])
                    if len(latencies) == LATENCY_EVENTS:
                        return

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        for _ in range(LATENCY_EVENTS):
            await self.stream.publish("bench.ping", {"t": time.perf_counter()})
            await asyncio.sleep(0.001)
        await consumer
        await self.stream.drop_group(group)
        return latencies

    async def cleanup(self) -> None:
        await self.db.execute("DELETE FROM awaitdb_events WHERE name LIKE 'bench.%'")


class RedisBench:
    """The same two runs on Redis Streams: XADD, XREADGROUP (BLOCK) and XACK."""

    def __init__(self, client: Any) -> None:
        self.r = client
        self.key = f"awaitdb-bench-{uuid.uuid4().hex[:8]}"

    async def _group(self) -> str:
        group = f"g-{uuid.uuid4().hex[:8]}"
        await self.r.xgroup_create(self.key, group, id="$", mkstream=True)
        return group

    async def _consume(self, group: str, n: int, on: Callable[[dict[Any, Any]], None]) -> None:
        seen = 0
        while seen < n:
            reply = await self.r.xreadgroup(group, "c1", {self.key: ">"}, count=500, block=1000)
            for _, entries in reply or []:
                ids = []
                for entry_id, fields in entries:
                    on(fields)
                    ids.append(entry_id)
                    seen += 1
                if ids:
                    await self.r.xack(self.key, group, *ids)

    async def throughput(self) -> dict[str, float]:
        group = await self._group()
        consumer = asyncio.create_task(self._consume(group, STREAM_EVENTS, lambda f: None))
        await asyncio.sleep(0.05)

        async def publish(k: int) -> None:
            for i in range(k, STREAM_EVENTS, PUBLISHERS):
                await self.r.xadd(self.key, {"name": "bench.order", "i": i})

        await asyncio.gather(*(publish(k) for k in range(PUBLISHERS)))
        await consumer
        return {}

    async def latency(self) -> list[float]:
        group = await self._group()
        latencies: list[float] = []

        def on(fields: dict[Any, Any]) -> None:
            latencies.append(time.perf_counter() - float(fields[b"t"]))

        consumer = asyncio.create_task(self._consume(group, LATENCY_EVENTS, on))
        await asyncio.sleep(0.05)
        for _ in range(LATENCY_EVENTS):
            await self.r.xadd(self.key, {"name": "bench.ping", "t": repr(time.perf_counter())})
            await asyncio.sleep(0.001)
        await consumer
        return latencies

    async def cleanup(self) -> None:
        await self.r.delete(self.key)


class FloorBench:
    """The floor on PostgreSQL: bare asyncpg INSERTs, one commit each, same concurrency."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: Any = None

    async def throughput(self) -> dict[str, float]:
        import asyncpg

        if self.pool is None:
            self.pool = await asyncpg.create_pool(self.url, min_size=20, max_size=20)
            await self.pool.execute(
                "CREATE TABLE IF NOT EXISTS awaitdb_bench_floor (id BIGINT GENERATED ALWAYS"
                " AS IDENTITY PRIMARY KEY, data JSONB)"
            )

        async def insert(k: int) -> None:
            for i in range(k, STREAM_EVENTS, PUBLISHERS):
                await self.pool.execute(
                    "INSERT INTO awaitdb_bench_floor (data) VALUES ($1::text::jsonb)",
                    f'{{"i":{i}}}',
                )

        await asyncio.gather(*(insert(k) for k in range(PUBLISHERS)))
        return {}

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.execute("DROP TABLE IF EXISTS awaitdb_bench_floor")
            await self.pool.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def stream_section(
    title: str,
    ours: StreamBench,
    anchor: RedisBench,
    reps: int,
    label: str,
    floor: FloorBench | None = None,
) -> None:
    contenders: dict[str, tuple[Callable[[], Awaitable[Any]], int]] = {
        label: (ours.throughput, STREAM_EVENTS),
        "redis": (anchor.throughput, STREAM_EVENTS),
    }
    if floor is not None:
        contenders["asyncpg INSERT"] = (floor.throughput, STREAM_EVENTS)
    results = await side_by_side(contenders, reps)
    lat: dict[str, list[float]] = {label: [], "redis": []}
    for _ in range(reps):
        lat[label].extend(await ours.latency())
        lat["redis"].extend(await anchor.latency())
    print(f"\n{title}: {STREAM_EVENTS:,} events, {PUBLISHERS} publishers, one commit each")
    print(f"{'':<16}{'events/s':>10}{'CPU us/ev':>11}{'p50 ms':>9}{'p90 ms':>9}")
    for name in (label, "redis"):
        r = results[name]
        print(
            f"{name:<16}{r['ops']:>10,.0f}{r['cpu_us']:>11.0f}"
            f"{pct(lat[name], 0.5):>9.2f}{pct(lat[name], 0.9):>9.2f}"
        )
    if floor is not None:
        r = results["asyncpg INSERT"]
        print(f"{'asyncpg INSERT':<16}{r['ops']:>10,.0f}{r['cpu_us']:>11.0f}  (floor)")
    ratio = results[label]["ops"] / results["redis"]["ops"]
    print(f"ratio {label}/redis throughput: {ratio:.2f} x")
    await ours.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, {platform.machine()}, reps={args.reps}")

    e1 = await side_by_side(
        {
            "awaitdb emit": (e1_awaitdb_emit, E1_EVENTS),
            "awaitdb emit_nowait": (e1_awaitdb_nowait, E1_EVENTS),
            "pyee": (e1_pyee, E1_EVENTS),
        },
        args.reps,
    )
    print(f"\nE1: in-process emit, one async listener, {E1_EVENTS:,} events")
    for name, r in e1.items():
        ratio = r["ops"] / e1["pyee"]["ops"]
        print(
            f"{name:<22}{r['ops']:>12,.0f} ev/s {r['cpu_us']:>6.1f} CPU us/ev {ratio:>6.2f} x pyee"
        )

    client = aioredis.from_url(args.redis)
    anchor = RedisBench(client)
    try:
        if not args.skip_pg:
            floor = FloorBench(args.pg)
            try:
                async with awaitdb.connect(args.pg, max_size=20) as db:
                    await stream_section(
                        "E2 PostgreSQL", StreamBench(db), anchor, args.reps, "awaitdb-pg", floor
                    )
            finally:
                await floor.close()
        with tempfile.TemporaryDirectory() as tmp:
            async with awaitdb.connect(f"sqlite:///{tmp}/events.db") as db:
                await stream_section("E3 SQLite", StreamBench(db), anchor, args.reps, "awaitdb-sq")
    finally:
        await anchor.cleanup()
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
