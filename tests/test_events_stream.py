"""The durable stream on both backends: transactions, groups, claims, trim, wake-ups, crashes."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import awaitdb
from awaitdb import events

WORKER = str(Path(__file__).with_name("events_worker.py"))


async def take(consumer: events.Consumer, n: int, timeout: float = 10.0) -> list[events.Event]:
    """The next ``n`` events of ``consumer`` (fails the test after ``timeout`` seconds)."""
    got: list[events.Event] = []

    async def run() -> None:
        async for event in consumer:
            got.append(event)
            if len(got) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return got


async def nothing_more(consumer: events.Consumer, wait: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(consumer.__anext__(), wait)


async def test_publish_counts_only_if_the_transaction_commits(adb: Any) -> None:
    stream = events.Stream(adb)
    await stream.create_group("g", "order.*")
    async with adb.transaction():
        await stream.publish("order.paid", {"id": 1})
        with pytest.raises(KeyError):
            async with adb.transaction():
                await stream.publish("order.paid", {"id": "savepoint"})
                raise KeyError
        async with adb.transaction():
            await stream.publish("order.shipped", {"id": 2})
    with pytest.raises(RuntimeError):
        async with adb.transaction():
            await stream.publish("order.paid", {"id": "rolled back"})
            raise RuntimeError
    await stream.publish("user.created", {"id": "other pattern"})
    await stream.publish("order.paid.late", [3, "x"])
    async with stream.subscribe("order.*", group="g") as consumer:
        got = await take(consumer, 3)
        await nothing_more(consumer)
    assert [(e.name, e.data) for e in got] == [
        ("order.paid", {"id": 1}),
        ("order.shipped", {"id": 2}),
        ("order.paid.late", [3, "x"]),
    ]
    assert got[0].id < got[1].id < got[2].id and got[0].publisher and got[0].at.year >= 2024


async def test_bad_input_is_refused(adb: Any) -> None:
    stream = events.Stream(adb)
    with pytest.raises(awaitdb.InterfaceError, match="JSON"):
        await stream.publish("x", {"when": object()})
    with pytest.raises(awaitdb.InterfaceError, match="invalid event name"):
        await stream.publish("x.*")
    with pytest.raises(awaitdb.InterfaceError, match="group"):
        stream.subscribe("x", group="")
    with pytest.raises(awaitdb.InterfaceError, match="invalid event pattern"):
        stream.subscribe("x..y", group="g")
    await stream.create_group("g", "a.*")
    with pytest.raises(awaitdb.InterfaceError, match="follows 'a.\\*'"):
        await stream.create_group("g", "b.*")


async def test_groups_keep_their_own_positions_and_resume(adb: Any) -> None:
    stream = events.Stream(adb)
    await stream.create_group("billing")
    await stream.create_group("audit")
    for i in range(10):
        await stream.publish("n", i)
    async with stream.subscribe(group="billing") as consumer:
        assert [e.data for e in await take(consumer, 4)] == [0, 1, 2, 3]
    # A new consumer of the group resumes after the last event the previous one finished.
    async with stream.subscribe(group="billing") as consumer:
        assert [e.data for e in await take(consumer, 6)] == [4, 5, 6, 7, 8, 9]
        await nothing_more(consumer)
    async with stream.subscribe(group="audit", batch_size=3) as consumer:
        assert [e.data for e in await take(consumer, 10)] == list(range(10))
    # A group created now starts after the newest event; from_start replays everything kept.
    async with stream.subscribe(group="late") as consumer:
        await nothing_more(consumer)
    async with stream.subscribe(group="replay", from_start=True) as consumer:
        assert [e.data for e in await take(consumer, 10)] == list(range(10))
    await stream.rewind("billing")
    async with stream.subscribe(group="billing") as consumer:
        assert [e.data for e in await take(consumer, 10)] == list(range(10))
    with pytest.raises(awaitdb.InterfaceError, match="no group"):
        await stream.rewind("missing")


async def test_several_consumers_share_a_group(adb: Any) -> None:
    stream = events.Stream(adb)
    await stream.create_group("workers")
    for i in range(60):
        await stream.publish("job", i)
    seen: dict[str, list[int]] = {"a": [], "b": []}
    all_seen = asyncio.Event()

    async def work(name: str) -> None:
        async with stream.subscribe(group="workers", consumer=name, batch_size=5) as consumer:
            async for event in consumer:
                seen[name].append(event.data)
                await asyncio.sleep(0.002)
                if len(seen["a"]) + len(seen["b"]) >= 60:
                    all_seen.set()

    tasks = [asyncio.create_task(work(name)) for name in seen]
    try:
        await asyncio.wait_for(all_seen.wait(), 20)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(seen["a"] + seen["b"]) == list(range(60))  # each once, none lost
    assert seen["a"] and seen["b"]
    assert seen["a"] == sorted(seen["a"]) and seen["b"] == sorted(seen["b"])


async def test_an_unfinished_batch_goes_back_to_the_group(adb: Any) -> None:
    stream = events.Stream(adb)
    await stream.create_group("g")
    for i in range(6):
        await stream.publish("n", i)
    # Leaving normally: the event handed out last is done; the rest of the batch goes back.
    async with stream.subscribe(group="g") as consumer:
        assert [e.data for e in await take(consumer, 2)] == [0, 1]
    # Leaving by an exception: the event being handled is not done: delivered again.
    with pytest.raises(ValueError):
        async with stream.subscribe(group="g") as consumer:
            async for event in consumer:
                if event.data == 3:
                    raise ValueError("handler failed")
    async with stream.subscribe(group="g") as consumer:
        assert [e.data for e in await take(consumer, 3)] == [3, 4, 5]


async def test_an_abandoned_claim_is_taken_over_when_its_lease_runs_out(adb: Any) -> None:
    stream = events.Stream(adb)
    await stream.create_group("g")
    for i in range(3):
        await stream.publish("n", i)
    stuck = stream.subscribe(group="g", consumer="stuck", lease=0.3)
    assert (await stuck.__anext__()).data == 0  # then never asks again, never closes
    async with stream.subscribe(group="g", consumer="rescuer", poll_interval=0.1) as other:
        got = await take(other, 3)
    assert [e.data for e in got] == [0, 1, 2]  # at least once: 0 is delivered again
    # A consumer restarted under the same name takes its own claim over at once.
    await stream.publish("n", 3)
    first = stream.subscribe(group="g", consumer="same")
    assert (await first.__anext__()).data == 3
    async with stream.subscribe(group="g", consumer="same") as again:
        assert (await take(again, 1))[0].data == 3
    await stuck.aclose()


async def test_trim_never_passes_a_group_unless_forced(adb: Any) -> None:
    stream = events.Stream(adb)
    await stream.create_group("slow")
    for i in range(5):
        await stream.publish("n", i)
    async with stream.subscribe(group="slow") as consumer:
        await take(consumer, 2)
    assert await stream.trim(older_than=0) == 2  # the two the group finished
    stats = await stream.stats()
    assert stats.events == 3
    assert stats.groups[0].lag == 3 and stats.groups[0].group == "slow"
    async with stream.subscribe(group="slow") as consumer:
        assert [e.data for e in await take(consumer, 3)] == [2, 3, 4]
    await stream.publish("n", 5)
    assert await stream.trim(older_than=3600) == 0  # too recent
    assert await stream.trim(older_than=dt.timedelta(0)) == 3  # 5 waits for the group
    assert await stream.trim(older_than=0, force=True) == 1
    assert (await stream.stats()).events == 0
    with pytest.raises(awaitdb.InterfaceError, match="older_than"):
        await stream.trim(older_than=-1)
    assert await stream.drop_group("slow")


async def test_deliver_to_feeds_a_bus(adb: Any) -> None:
    stream = events.Stream(adb)
    bus = events.Bus()
    got: list[Any] = []
    arrived = asyncio.Event()

    @bus.on("order.*")
    async def listener(event: events.Event) -> None:
        got.append(event.data)
        if len(got) == 3:
            arrived.set()

    await stream.create_group("bus", "order.*")
    stream.deliver_to(bus, "order.*")
    for i in range(3):
        await stream.publish("order.paid", i)
    await asyncio.wait_for(arrived.wait(), 10)
    await stream.aclose()
    assert got == [0, 1, 2]


async def test_a_stream_event_published_in_a_transaction_bound_bus_flow(adb: Any) -> None:
    """The outbox flow: data, stream event and bus event commit (or vanish) together."""
    await adb.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    stream = events.Stream(adb)
    bus = events.Bus(db=adb)
    local: list[int] = []
    bus.on("order.paid", lambda e: local.append(e.data))
    await stream.create_group("g")
    for i, fail in ((1, False), (2, True), (3, False)):
        try:
            async with adb.transaction():
                await adb.execute("INSERT INTO orders (id) VALUES (:i)", {"i": i})
                await stream.publish("order.paid", i)
                await bus.emit("order.paid", i)
                if fail:
                    raise RuntimeError
        except RuntimeError:
            pass
    await bus.aclose()
    async with stream.subscribe(group="g") as consumer:
        assert [e.data for e in await take(consumer, 2)] == [1, 3]
    assert local == [1, 3]


async def test_consumers_in_other_processes_are_woken_without_polling(db_url: str) -> None:
    """poll_interval=60: only a wake-up (NOTIFY / data_version) can deliver in time."""
    async with awaitdb.connect(db_url) as db:
        stream = events.Stream(db)
        await stream.create_group("g")
        async with stream.subscribe(group="g", poll_interval=60) as consumer:
            first = asyncio.ensure_future(consumer.__anext__())
            await asyncio.sleep(0.3)  # the consumer is asleep, waiting
            proc = await asyncio.create_subprocess_exec(
                sys.executable, WORKER, "publish-one", db_url, "from.other.process"
            )
            try:
                assert await asyncio.wait_for(proc.wait(), 60) == 0
                event = await asyncio.wait_for(first, 10)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        assert event.name == "from.other.process" and event.data["from"] == proc.pid


async def test_late_commit_of_a_lower_id_is_not_skipped_postgresql(pg_url: str) -> None:
    async with awaitdb.connect(pg_url) as db:
        stream = events.Stream(db)
        await stream.create_group("g")
        early_published = asyncio.Event()
        late_may_commit = asyncio.Event()

        async def early() -> int:  # takes the lower id, commits last
            async with db.transaction():
                event_id = await stream.publish("n", "early")
                early_published.set()
                await late_may_commit.wait()
            return event_id

        task = asyncio.create_task(early())
        await early_published.wait()
        later = await stream.publish("n", "later")  # higher id, committed first
        async with stream.subscribe(group="g", poll_interval=0.2) as consumer:
            # "later" is committed but waits behind the open transaction: not delivered yet,
            # and the group's position must not move past "early".
            await nothing_more(consumer, 0.5)
            late_may_commit.set()
            early_id = await task
            assert early_id < later
            got = await take(consumer, 2)
        assert [e.data for e in got] == ["early", "later"]


@pytest.mark.slow
async def test_sigkill_publishers_and_consumers(db_url: str, tmp_path: Path) -> None:
    """Random SIGKILLs: every committed event reaches every group, in order per publisher."""
    per_publisher = 120
    groups = ["g1", "g2"]
    async with awaitdb.connect(db_url) as db:
        stream = events.Stream(db)
        for group in groups:
            await stream.create_group(group, "crash.*")
    outputs = {group: tmp_path / f"{group}.txt" for group in groups}
    roles: dict[str, list[str]] = {
        **{f"pub-{p}": ["publish", db_url, p, str(per_publisher)] for p in ("p1", "p2")},
        **{f"con-{g}": ["consume", db_url, g, str(outputs[g])] for g in groups},
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(role: str) -> None:
        procs[role] = subprocess.Popen([sys.executable, WORKER, *roles[role]])

    rng = random.Random(1106)
    kills = 0
    try:
        for role in roles:
            start(role)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.2, 0.7))
            role = rng.choice(list(roles))
            if procs[role].poll() is None:
                procs[role].send_signal(signal.SIGKILL)
                procs[role].wait()
                kills += 1
            start(role)
        for p in ("p1", "p2"):  # let the publishers finish
            if procs[f"pub-{p}"].poll() is not None and procs[f"pub-{p}"].returncode != 0:
                start(f"pub-{p}")
        for p in ("p1", "p2"):
            assert procs[f"pub-{p}"].wait(timeout=60) == 0
        async with awaitdb.connect(db_url) as db:
            committed = {
                (r["publisher"], r["id"])
                for r in await db.fetch_all("SELECT publisher, id FROM awaitdb_events")
            }
        assert len(committed) == 2 * per_publisher
        lines: dict[str, list[tuple[str, int, int, int]]] = {}
        for _ in range(300):  # consumers catch up (bounded)
            for group in groups:
                lines[group] = _read(outputs[group])
            if all({(p, i) for p, _, i, _ in lines[g]} >= committed for g in groups):
                break
            await asyncio.sleep(0.1)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert kills >= 5
    for group in groups:
        got = lines[group]
        assert {(p, i) for p, _, i, _ in got} == committed  # all, and nothing else
        assert not any(rb for *_, rb in got)  # nothing rolled back
        for publisher in ("p1", "p2"):
            firsts: list[int] = []
            for p, seq, _, _ in got:
                if p == publisher and seq not in firsts:
                    firsts.append(seq)
            assert firsts == list(range(per_publisher))  # first deliveries in commit order


def _read(path: Path) -> list[tuple[str, int, int, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 4 and all(part.isdigit() for part in parts[1:]):
            out.append((parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
        # else: a line cut by SIGKILL; its event was not finished and is delivered again
    return out
