"""Spec spellings made to work as the pages write them (events, jobs, core-api ``ssl``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import awaitdb
from awaitdb import events

# -- events.md "Tied to transactions": a Bus() with no db finds the current transaction -------


async def test_bus_without_db_delivers_after_commit_right_when_the_block_returns(
    adb: Any,
) -> None:
    bus = events.Bus()
    seen: list[tuple[str, Any]] = []
    bus.on("t.*", lambda e: seen.append(("sync", e.data)))

    @bus.on("t.*")
    async def fast(event: events.Event) -> None:  # never suspends
        seen.append(("async", event.data))

    async with adb.transaction():
        report = await bus.emit("t.b", {"n": 1})
        assert report.deferred
        assert seen == []
    # Fast listeners have run by the time the block returns.
    assert seen == [("sync", {"n": 1}), ("async", {"n": 1})]

    seen.clear()
    with pytest.raises(RuntimeError):
        async with adb.transaction():
            await bus.emit("t.b", {"n": 2})
            raise RuntimeError("roll back")
    await bus.drain()
    assert seen == []

    async with adb.transaction():
        await bus.emit("t.b", {"n": 3})
        with pytest.raises(RuntimeError):
            async with adb.transaction():  # a savepoint
                await bus.emit("t.b", {"n": 4})
                raise RuntimeError("roll back the savepoint")
        bus.emit_nowait("t.b", {"n": 5})
    await bus.drain()
    assert [d for _, d in seen] == [{"n": 3}, {"n": 3}, {"n": 5}, {"n": 5}]
    assert bus.stats().dropped_on_rollback == 2

    seen.clear()
    report = await bus.emit("t.b", {"n": 6})  # outside any transaction: at once
    assert not report.deferred and report.delivered == 2
    assert [d for _, d in seen] == [{"n": 6}, {"n": 6}]
    await bus.aclose()


async def test_a_slow_listener_keeps_running_after_the_block_and_drain_waits(adb: Any) -> None:
    bus = events.Bus()
    release = asyncio.Event()
    done: list[int] = []

    @bus.on("slow")
    async def slow(event: events.Event) -> None:
        await release.wait()
        done.append(event.data)

    async with adb.transaction():
        await bus.emit("slow", 1)
    assert done == [] and bus.stats().pending_tasks == 1  # the block did not wait for it
    release.set()
    await bus.aclose()
    assert done == [1]


async def test_current_transaction_is_the_innermost_block_of_any_database(adb: Any) -> None:
    assert awaitdb.current_transaction() is None
    async with adb.transaction() as outer:
        assert awaitdb.current_transaction() is outer
        async with adb.transaction() as inner:
            assert awaitdb.current_transaction() is inner

            async def child() -> Any:
                return awaitdb.current_transaction()

            assert await asyncio.create_task(child()) is inner
        assert awaitdb.current_transaction() is outer
    assert awaitdb.current_transaction() is None


def test_current_transaction_on_the_sync_face(sdb: Any) -> None:
    assert awaitdb.current_transaction() is None
    with sdb.transaction() as outer:
        assert awaitdb.current_transaction() is outer
        with sdb.transaction() as inner:
            assert awaitdb.current_transaction() is inner
        assert awaitdb.current_transaction() is outer
    assert awaitdb.current_transaction() is None
