"""Defects found in review of issue 11 (events), each pinned by a test on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import pytest

import awaitdb
from awaitdb import events


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


async def drain(consumer: events.Consumer, quiet: float = 0.5) -> list[Any]:
    """Every event ``consumer`` delivers until none comes for ``quiet`` seconds."""
    got: list[Any] = []
    while True:
        try:
            got.append((await asyncio.wait_for(consumer.__anext__(), quiet)).data)
        except TimeoutError:
            return got


async def test_a_take_cancelled_during_its_commit_loses_no_batch(adb: Any) -> None:
    """Timeouts land anywhere in a take, also after the server committed it: at least once."""
    stream = events.Stream(adb)
    await stream.create_group("g")
    total = 1500
    published = asyncio.Event()

    async def publisher() -> None:
        for i in range(total):
            await stream.publish("n", i)
            if i % 10 == 0:
                await asyncio.sleep(0)
        published.set()

    seen: set[int] = set()
    rng = random.Random(11)
    task = asyncio.create_task(publisher())
    async with stream.subscribe(group="g", batch_size=5, poll_interval=0.05) as consumer:
        idle = 0
        while idle < 200 and len(seen) < total:
            try:
                event = await asyncio.wait_for(consumer.__anext__(), rng.uniform(0.0001, 0.003))
            except TimeoutError:
                idle += published.is_set()
                continue
            seen.add(event.data)
    await task
    async with stream.subscribe(group="g", lease=0.1, poll_interval=0.05) as rest:
        seen.update(await drain(rest))
    assert sorted(set(range(total)) - seen) == []
    assert (await stream.stats()).groups[0].lag == 0


async def test_two_live_consumers_of_one_name_lose_nothing(adb: Any) -> None:
    """A's acknowledgement must not delete B's claim: duplicates, never losses."""
    stream = events.Stream(adb)
    await stream.create_group("g")
    for i in range(15):
        await stream.publish("n", i)
    # the lease must outlast the steps below on a loaded machine (0.3 s did not, under coverage)
    a = stream.subscribe(group="g", consumer="same", batch_size=5, lease=3.0)
    b = stream.subscribe(group="g", consumer="same", batch_size=5, lease=3.0)
    try:
        assert [e.data for e in await take(a, 1)] == [0]
        assert [e.data for e in await take(b, 1)] == [0]  # adopts the claim under its name
        assert [e.data for e in await take(a, 5)] == [1, 2, 3, 4, 5]  # A now holds 5..9
        assert [e.data for e in await take(b, 5)] == [1, 2, 3, 4, 10]  # B acknowledges, 10..14
        await b.aclose()  # 10 done, 11..14 handed back
        # A dies with 5 in hand: its batch must come back once its lease runs out.
    finally:
        if a._sub is not None:
            a._sub.close()
    await asyncio.sleep(3.1)
    wanted = set(range(5, 15)) - {10}
    got: set[Any] = set()
    async with stream.subscribe(group="g", consumer="rescuer", poll_interval=0.05) as other:

        async def until_all_came_back() -> None:
            async for event in other:
                got.add(event.data)
                if wanted <= got:
                    return

        # no quiet period to guess on a loaded machine: wait for every one, or fail after 30 s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until_all_came_back(), 30)
    assert wanted <= got, f"lost: {sorted(wanted - got)}"


@pytest.mark.parametrize(
    "options",
    [
        {"batch_size": 2.5},
        {"batch_size": "3"},
        {"batch_size": True},
        {"batch_size": 0},
        {"lease": "x"},
        {"lease": float("nan")},
        {"lease": float("inf")},
        {"lease": 0},
        {"poll_interval": None},
        {"poll_interval": -1},
    ],
)
async def test_subscribe_refuses_bad_numbers(adb: Any, options: dict[str, Any]) -> None:
    """A float batch_size skipped events on PostgreSQL (LIMIT 2.5); others raised raw errors."""
    stream = events.Stream(adb)
    with pytest.raises(awaitdb.InterfaceError, match=next(iter(options))):
        stream.subscribe(group="g", **options)


async def test_bus_refuses_bad_timeouts() -> None:
    for bad in ("5", float("nan"), 0, -1, True):
        with pytest.raises(awaitdb.InterfaceError, match="timeout"):
            events.Bus(timeout=bad)
        with pytest.raises(awaitdb.InterfaceError, match="timeout"):
            events.Bus().on("x", print, timeout=bad)
    assert events.Bus(timeout=2).on("x", print, timeout=0.5) is print


def test_stream_needs_an_async_database(sdb: Any) -> None:
    with pytest.raises(awaitdb.InterfaceError, match="async Database"):
        events.Stream(sdb)


@pytest.mark.parametrize("bad", [None, 5, ""])
async def test_create_group_checks_the_group_name(adb: Any, bad: Any) -> None:
    with pytest.raises(awaitdb.InterfaceError, match="group name"):
        await events.Stream(adb).create_group(bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"x": -float("inf")}, "a\x00b"])
async def test_data_postgresql_cannot_store_is_refused_on_both_backends(adb: Any, bad: Any) -> None:
    stream = events.Stream(adb)
    with pytest.raises(awaitdb.InterfaceError, match="JSON"):
        await stream.publish("x", bad)
    await stream.create_group("g", from_start=True)
    await stream.publish("x", ["\\u0000 is text", 1.5])  # a backslash, then "u0000": fine
    async with stream.subscribe(group="g") as consumer:
        assert [e.data for e in await take(consumer, 1)] == [["\\u0000 is text", 1.5]]


def _wakeup_tasks() -> list[asyncio.Task[Any]]:
    names = {"awaitdb-pg-listener", "awaitdb-sqlite-watcher"}
    return [t for t in asyncio.all_tasks() if t.get_name() in names and not t.done()]


async def test_closing_the_database_closes_the_wake_up_layer(db_url: str) -> None:
    """A consumer left by ``break`` keeps its subscription; ``db.close()`` ends the listener."""
    from awaitdb._wakeup import _wakers

    db = await awaitdb.connect(db_url)
    try:
        stream = events.Stream(db)
        await stream.create_group("g")
        await stream.publish("n", 1)
        async for _event in stream.subscribe(group="g"):
            break
        assert len(_wakeup_tasks()) == 1
        waker = _wakers[db]
        assert waker in [getattr(h, "__self__", None) for h in db._close_hooks]
    finally:
        await db.close()
    assert _wakeup_tasks() == [] and waker.closed
    assert getattr(waker, "_conn", None) is None  # PostgreSQL: the LISTEN connection is gone
    with pytest.raises(awaitdb.InterfaceError, match="closed"):
        await stream.subscribe(group="g").__anext__()


async def test_deliver_to_started_inside_a_transaction_runs_on_its_own(adb: Any) -> None:
    """The pump must not run its takes in the caller's transaction (0 events delivered)."""
    stream = events.Stream(adb)
    bus = events.Bus()
    got: list[Any] = []
    bus.on("n", lambda e: got.append(e.data))
    await stream.create_group("bus")
    async with adb.transaction():
        await adb.fetch_val("SELECT 1")
        stream.deliver_to(bus, poll_interval=0.05)
    for i in range(3):
        await stream.publish("n", i)
    for _ in range(200):
        if len(got) == 3:
            break
        await asyncio.sleep(0.05)
    await stream.aclose()
    assert got == [0, 1, 2]


async def test_aclose_from_another_task_ends_the_iteration(adb: Any) -> None:
    """The iterating task sees StopAsyncIteration; a closed consumer takes nothing more."""
    stream = events.Stream(adb)
    await stream.create_group("g")
    total = 60
    seen: set[int] = set()
    rng = random.Random(7)
    for round_ in range(12):
        for i in range(5):
            await stream.publish("n", round_ * 5 + i)
        consumer = stream.subscribe(group="g", batch_size=2, poll_interval=5)

        async def iterate(c: events.Consumer = consumer) -> None:
            async for event in c:
                seen.add(event.data)
                await asyncio.sleep(0)

        task = asyncio.create_task(iterate())
        await asyncio.sleep(rng.uniform(0, 0.02))
        await consumer.aclose()
        await asyncio.wait_for(task, 10)  # ends cleanly: no AssertionError, no hang
    await stream.publish("n", total)
    async with stream.subscribe(group="g", poll_interval=0.05) as rest:
        seen.update(await drain(rest))
    assert sorted(set(range(total + 1)) - seen) == []


async def test_a_cancelled_commit_hook_still_runs_every_later_hook(adb: Any) -> None:
    """Cancelled during an earlier async on_commit hook: the bus event is still delivered."""
    bus = events.Bus(db=adb)
    got: list[Any] = []
    bus.on("n", lambda e: got.append(e.data))
    hook_started = asyncio.Event()
    later: list[str] = []

    async def slow_hook() -> None:
        hook_started.set()
        await asyncio.sleep(10)

    async def later_hook() -> None:
        later.append("async")

    async def work() -> None:
        async with adb.transaction() as tx:
            tx.on_commit(slow_hook)
            await bus.emit("n", 1)
            tx.on_commit(later_hook)
            tx.on_commit(lambda: later.append("sync"))

    task = asyncio.create_task(work())
    await hook_started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await bus.aclose()
    for _ in range(100):
        if len(later) == 2:
            break
        await asyncio.sleep(0.01)
    assert got == [1]
    assert sorted(later) == ["async", "sync"]


async def _wait_for_first_take(consumer: events.Consumer) -> None:
    for _ in range(1000):
        if consumer._took:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the consumer never took")


async def test_sqlite_commit_right_after_a_consumer_starts_wakes_it(sqlite_url: str) -> None:
    """Another connection's commit just after the first take is not hidden in the baseline."""
    async with awaitdb.connect(sqlite_url) as db, awaitdb.connect(sqlite_url) as other:
        stream = events.Stream(db)
        await stream.create_group("g")
        async with stream.subscribe(group="g", poll_interval=60) as consumer:
            first = asyncio.ensure_future(consumer.__anext__())
            await _wait_for_first_take(consumer)
            await events.Stream(other).publish("from.elsewhere", 1)
            assert (await asyncio.wait_for(first, 5)).name == "from.elsewhere"


async def test_sqlite_watcher_uses_the_database_path_after_chdir(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(home)
    async with awaitdb.connect("sqlite:///app.db") as db:
        async with awaitdb.connect(f"sqlite:///{home / 'app.db'}") as other:
            stream = events.Stream(db)
            await stream.create_group("g")
            monkeypatch.chdir(elsewhere)
            async with stream.subscribe(group="g", poll_interval=60) as consumer:
                first = asyncio.ensure_future(consumer.__anext__())
                await _wait_for_first_take(consumer)
                await asyncio.sleep(0.2)  # the watcher has its baseline
                await events.Stream(other).publish("n", 1)
                assert (await asyncio.wait_for(first, 5)).data == 1
    assert not (elsewhere / "app.db").exists()


async def test_an_event_committed_after_the_bus_closed_is_logged(
    adb: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bus = events.Bus(db=adb)
    got: list[Any] = []
    bus.on("n", lambda e: got.append(e.data))
    async with adb.transaction():
        report = await bus.emit("n", 1)
        await bus.aclose()
    assert got == [] and bus.stats().pending_tasks == 0
    assert f"bus closed before delivering n (id {report.event.id})" in caplog.text


async def test_a_listener_raising_its_own_timeout_error_is_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def mine(event: events.Event) -> None:
        raise TimeoutError("the listener's own")

    async def slow(event: events.Event) -> None:
        await asyncio.sleep(5)

    for timeout in (None, 5.0):
        bus = events.Bus(timeout=timeout)
        bus.on("n", mine)
        report = await bus.emit("n")
        assert isinstance(report.failures[0].error, TimeoutError)
        assert bus.stats().timeouts == 0 and bus.stats().failures == 1
    assert "failed on n" in caplog.text and "the listener's own" in caplog.text
    bus = events.Bus()
    bus.on("n", slow, timeout=0.01)
    report = await bus.emit("n")
    assert isinstance(report.failures[0].error, TimeoutError)
    assert bus.stats().timeouts == 1 and "timed out after 0.01s on n" in caplog.text


async def test_emit_nowait_isolates_a_listener_that_cannot_be_called(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = events.Bus()

    async def wrong() -> None:  # no event parameter
        pass

    bus.on("n", wrong)
    bus.emit_nowait("n", 1)  # does not raise
    await bus.aclose()
    assert bus.stats().failures == 1 and "failed on n" in caplog.text


async def test_deliveries_cut_by_aclose_name_their_event(caplog: pytest.LogCaptureFixture) -> None:
    bus = events.Bus()

    async def stuck(event: events.Event) -> None:
        await asyncio.sleep(10)

    bus.on("slow.thing", stuck)
    bus.on("slow.thing", lambda e: None)  # two listeners: a wrapped delivery
    bus.on("slow.other", stuck)  # one plain async listener: the direct path
    first = bus.emit_nowait("slow.thing", 1)
    second = bus.emit_nowait("slow.other", 2)
    await bus.aclose(timeout=0.05)
    assert f"slow.thing (id {first.id})" in caplog.text
    assert f"slow.other (id {second.id})" in caplog.text


async def test_the_listen_connection_is_opened_like_the_pools(pg_url: str) -> None:
    """The LISTEN connection gets the pool's connect arguments and on_connect hook."""
    seen: list[Any] = []

    async def hook(conn: Any) -> None:
        seen.append(conn)

    url = pg_url + "&statement_cache_size=7"
    async with awaitdb.connect(url, on_connect=hook) as db:
        stream = events.Stream(db)
        await stream.create_group("g")
        async with stream.subscribe(group="g", poll_interval=60) as consumer:
            waiting = asyncio.ensure_future(consumer.__anext__())
            from awaitdb._wakeup import waker_for

            waker: Any = waker_for(db)
            for _ in range(500):
                if waker._conn is not None:
                    break
                await asyncio.sleep(0.01)
            assert waker._conn in seen
            assert waker._conn._stmt_cache.get_max_size() == 7
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
