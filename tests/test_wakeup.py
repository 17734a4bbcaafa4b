"""The shared wake-up layer (awaitdb/_wakeup.py) on both backends, on real databases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import awaitdb
from awaitdb._errors import InterfaceError
from awaitdb._wakeup import waker_for


async def settled(sub: Any) -> None:
    """Let the listener come up, and drop its 'you may have missed news' wake-up."""
    await asyncio.sleep(0.3)
    await sub.wait(0)


async def test_notify_outside_a_transaction_wakes_at_once(adb: awaitdb.Database) -> None:
    waker = waker_for(adb)
    assert waker_for(adb) is waker
    with await waker.subscribe("news") as sub:
        await settled(sub)
        assert not await sub.wait(0)
        await waker.notify("news")
        assert await sub.wait(5)
        assert not await sub.wait(0)  # consumed


async def test_notify_in_a_transaction_waits_for_commit(adb: awaitdb.Database) -> None:
    waker = waker_for(adb)
    with await waker.subscribe("news") as sub:
        await settled(sub)
        with pytest.raises(RuntimeError):
            async with adb.transaction():
                await waker.notify("news")
                raise RuntimeError("roll back")
        assert not await sub.wait(0.2)  # rolled back: no news
        async with adb.transaction():
            await waker.notify("news")
            assert not await sub.wait(0)  # not before COMMIT
        assert await sub.wait(5)


async def test_other_channels_are_not_woken(adb: awaitdb.Database) -> None:
    waker = waker_for(adb)
    with await waker.subscribe("a") as a, await waker.subscribe("b") as b:
        waker.wake_local("a")
        assert await a.wait(0)
        assert not await b.wait(0)


async def test_news_from_another_connection_arrives(
    adb: awaitdb.Database, aconnect: Callable[..., Any]
) -> None:
    """Another Database stands for another process: NOTIFY, or a SQLite commit it makes."""
    other = await aconnect()
    await adb.execute("CREATE TABLE t (x INTEGER)")
    waker = waker_for(adb)
    with await waker.subscribe("news") as sub:
        await settled(sub)  # the listener is up / the watcher has its first version
        async with other.transaction():
            await other.execute("INSERT INTO t VALUES (1)")
            await waker_for(other).notify("news")
        assert await sub.wait(10)


async def test_subscription_misuse(adb: awaitdb.Database) -> None:
    waker = waker_for(adb)
    with pytest.raises(InterfaceError):
        await waker.subscribe("")
    sub = await waker.subscribe("x")
    sub.close()
    with pytest.raises(InterfaceError):
        await sub.wait(0)


async def test_postgres_listener_recovers_from_a_lost_connection(pg_url: str) -> None:
    db = await awaitdb.connect(pg_url)
    try:
        waker = waker_for(db)
        with await waker.subscribe("news") as sub:
            for _ in range(100):
                if waker.fallback_interval is None:
                    break
                await asyncio.sleep(0.05)
            assert waker.fallback_interval is None  # listening
            await db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
            )
            for _ in range(200):  # back to listening after the loss
                await sub.wait(0.05)
                if waker.fallback_interval is None and waker._conn is not None:
                    break
            assert waker.fallback_interval is None
            other = await awaitdb.connect(pg_url)
            try:
                await sub.wait(0)
                await waker_for(other).notify("news")
                assert await sub.wait(10)
            finally:
                await other.close()
    finally:
        await db.close()
