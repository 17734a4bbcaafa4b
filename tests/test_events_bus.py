"""The in-process bus: listeners, wildcards, isolation, timeouts, shutdown, transaction ties."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

import awaitdb
from awaitdb import events


async def test_on_once_off_wildcards_and_both_forms() -> None:
    bus = events.Bus()
    seen: list[tuple[str, str]] = []

    @bus.on("order.paid")
    async def exact(event: events.Event) -> None:
        seen.append(("exact", event.name))

    def prefix(event: events.Event) -> None:
        seen.append(("prefix", event.name))

    assert bus.on("order.*", prefix) is prefix
    bus.on("*", lambda e: seen.append(("all", e.name)))
    bus.once("ready", lambda e: seen.append(("once", e.name)))

    await bus.emit("order.paid", {"id": 7})
    await bus.emit("order.paid.late")  # a prefix wildcard matches deeper names
    await bus.emit("order")  # ...but not the prefix itself
    await bus.emit("ready")
    await bus.emit("ready")
    assert seen == [
        ("exact", "order.paid"),
        ("prefix", "order.paid"),
        ("all", "order.paid"),
        ("prefix", "order.paid.late"),
        ("all", "order.paid.late"),
        ("all", "order"),
        ("all", "ready"),
        ("once", "ready"),
        ("all", "ready"),
    ]
    assert bus.listeners("order.paid") == [exact, prefix, bus.listeners("x")[0]]
    assert bus.off("order.*", prefix) == 1
    assert bus.off("order.*", prefix) == 0
    assert bus.off("*") == 1
    seen.clear()
    report = await bus.emit("order.paid", {"id": 8})
    assert seen == [("exact", "order.paid")]
    assert report.delivered == 1 and report.ok
    assert report.event.data == {"id": 8} and report.event.at.tzinfo is not None


@pytest.mark.parametrize("bad", ["", "a..b", "order.*", "*", "a b", "ü"])
async def test_bad_names_and_patterns_are_refused(bad: str) -> None:
    bus = events.Bus()
    with pytest.raises(awaitdb.InterfaceError, match="invalid event name"):
        await bus.emit(bad)
    if bad not in ("order.*", "*"):
        with pytest.raises(awaitdb.InterfaceError, match="invalid event pattern"):
            bus.on(bad, print)
    with pytest.raises(awaitdb.InterfaceError, match="callable"):
        bus.on("x", 3)  # type: ignore[arg-type]
    with pytest.raises(awaitdb.InterfaceError, match="timeout"):
        bus.on("x", print, timeout=0)


async def test_a_failing_listener_is_isolated_logged_counted_and_reported(caplog: Any) -> None:
    bus = events.Bus()
    ran: list[str] = []

    def broken(event: events.Event) -> None:
        raise ValueError("broken listener")

    async def also_broken(event: events.Event) -> None:
        raise KeyError("async too")

    bus.on("x", broken)
    bus.on("x", also_broken)
    bus.on("x", lambda e: ran.append("after"))
    with caplog.at_level(logging.ERROR, logger="awaitdb.events"):
        report = await bus.emit("x")
    assert ran == ["after"]
    assert not report.ok and report.delivered == 1
    assert [name.rsplit(".", 1)[-1] for name in report.failed] == ["broken", "also_broken"]
    assert any("broken" in r.getMessage() and r.exc_info for r in caplog.records)
    stats = bus.stats()
    assert stats.failures == 2
    assert [s.failures for s in stats.listeners] == [1, 1, 0]
    assert all(s.calls == 1 for s in stats.listeners)
    with pytest.raises(ValueError, match="broken listener") as info:
        await bus.emit("x", raise_errors=True)
    assert any("also_broken" in note for note in info.value.__notes__)
    assert ran == ["after", "after"]  # every listener ran before the error was raised


async def test_listener_timeouts() -> None:
    bus = events.Bus(timeout=0.05)
    ran: list[str] = []

    async def slow(event: events.Event) -> None:
        await asyncio.sleep(5)

    bus.on("x", slow)
    bus.on("x", lambda e: ran.append("next"))
    report = await bus.emit("x")
    assert isinstance(report.failures[0].error, TimeoutError)
    assert ran == ["next"]
    assert bus.stats().timeouts == 1
    assert bus.stats().listeners[0].timeouts == 1


async def test_off_loop_listeners_run_in_a_thread_and_keep_the_loop_free() -> None:
    bus = events.Bus()
    threads: list[int] = []

    def blocking(event: events.Event) -> None:
        time.sleep(0.05)
        threads.append(threading.get_ident())

    bus.on("x", blocking, off_loop=True)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        report = await bus.emit("x")
    finally:
        task.cancel()
    assert report.ok and threads and threads[0] != threading.get_ident()
    assert ticks >= 1  # the loop ran while the listener blocked its thread

    async def coro(event: events.Event) -> None: ...

    with pytest.raises(awaitdb.InterfaceError, match="off_loop"):
        bus.on("y", coro, off_loop=True)


async def test_emit_nowait_is_tracked_and_aclose_waits_for_it(caplog: Any) -> None:
    bus = events.Bus()
    done: list[int] = []

    async def listener(event: events.Event) -> None:
        await asyncio.sleep(0.02)
        done.append(event.data)

    bus.on("x", listener)
    for i in range(20):
        bus.emit_nowait("x", i)
    assert bus.stats().pending_tasks == 20
    await bus.aclose()
    assert sorted(done) == list(range(20))
    with pytest.raises(awaitdb.InterfaceError, match="closed"):
        bus.emit_nowait("x", 1)

    stuck = events.Bus()

    async def forever(event: events.Event) -> None:
        await asyncio.sleep(60)

    stuck.on("y", forever)
    stuck.emit_nowait("y")
    with caplog.at_level(logging.ERROR, logger="awaitdb.events"):
        await stuck.aclose(timeout=0.05)
    assert any("still running" in r.getMessage() for r in caplog.records)
    assert stuck.stats().pending_tasks == 0


async def test_emit_nowait_isolates_failures_and_honours_once(caplog: Any) -> None:
    bus = events.Bus()
    got: list[Any] = []

    async def fails(event: events.Event) -> None:
        raise RuntimeError("nowait listener failed")

    async def first_only(event: events.Event) -> None:
        got.append(event.data)

    bus.on("bad", fails)
    bus.once("first", first_only)
    with caplog.at_level(logging.ERROR, logger="awaitdb.events"):
        bus.emit_nowait("bad")
        bus.emit_nowait("first", 1)
        bus.emit_nowait("first", 2)
        await bus.aclose()
    assert got == [1]
    assert bus.stats().failures == 1 and bus.stats().listeners[0].calls == 1
    assert any("fails" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_emit_nowait_needs_a_loop() -> None:
    bus = events.Bus()

    def outside() -> None:
        with pytest.raises(awaitdb.InterfaceError, match="running event loop"):
            bus.emit_nowait("x")

    await asyncio.to_thread(outside)


# -- tied to transactions (both backends) -------------------------------------------------------


async def test_events_in_a_transaction_wait_for_commit_and_die_with_rollback(adb: Any) -> None:
    await adb.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    bus = events.Bus(db=adb)
    got: list[Any] = []

    async def listener(event: events.Event) -> None:
        # After COMMIT: the row the event describes is visible to other connections.
        got.append((event.data, await adb.fetch_val("SELECT count(*) FROM t")))

    bus.on("row.*", listener)
    async with adb.transaction():
        await adb.execute("INSERT INTO t (id) VALUES (1)")
        report = await bus.emit("row.added", 1)
        assert report.deferred
        bus.emit_nowait("row.added", 2)
        with pytest.raises(ZeroDivisionError):
            async with adb.transaction():
                await bus.emit("row.added", "dropped-with-savepoint")
                1 / 0  # noqa: B018
        async with adb.transaction():
            async with adb.transaction():
                await bus.emit("row.added", 3)  # released twice: kept
        assert got == []
    await bus.drain()
    assert got == [(1, 1), (2, 1), (3, 1)]  # in emit order, once the commit is visible
    with pytest.raises(RuntimeError):
        async with adb.transaction():
            await bus.emit("row.added", "never")
            raise RuntimeError
    await bus.drain()
    report = await bus.emit("row.added", 4)  # outside a transaction: at once
    assert not report.deferred and got[-1] == (4, 1)
    assert [g[0] for g in got] == [1, 2, 3, 4]
    stats = bus.stats()
    assert stats.deferred == 5 and stats.dropped_on_rollback == 2
    await bus.aclose()


async def test_slow_listeners_do_not_hold_the_block_exit(adb: Any) -> None:
    bus = events.Bus(db=adb)
    release = asyncio.Event()
    finished: list[int] = []

    async def slow(event: events.Event) -> None:
        await release.wait()
        finished.append(event.data)

    bus.on("x", slow)
    async with adb.transaction():
        await bus.emit("x", 1)
    # The block returned although the listener is still waiting: delivery is a tracked task.
    assert finished == [] and bus.stats().pending_tasks == 1
    release.set()
    await bus.aclose()
    assert finished == [1]


async def test_concurrent_transactions_deliver_only_their_committed_events(adb: Any) -> None:
    bus = events.Bus(db=adb)
    got: list[int] = []
    bus.on("n", lambda e: got.append(e.data))

    async def work(i: int) -> None:
        try:
            async with adb.transaction():
                await bus.emit("n", i)
                await adb.fetch_val("SELECT 1")
                if i % 3 == 0:
                    raise ValueError(i)
        except ValueError:
            pass

    await asyncio.gather(*(work(i) for i in range(30)))
    await bus.aclose()
    assert sorted(got) == [i for i in range(30) if i % 3]


async def test_hooks_reach_code_that_holds_only_db(adb: Any) -> None:
    calls: list[str] = []

    def helper(db: awaitdb.Database) -> None:
        tx = db.current_transaction()
        assert tx is not None
        tx.on_commit(lambda: calls.append("commit"))
        tx.on_rollback(lambda: calls.append("rollback"))

    async with adb.transaction():
        helper(adb)
    with pytest.raises(KeyError):
        async with adb.transaction():
            helper(adb)
            raise KeyError
    assert calls == ["commit", "rollback"]
