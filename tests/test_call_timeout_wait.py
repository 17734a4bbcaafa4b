"""A call's ``timeout=`` bounds its wait for a connection too, the same on both backends and
both faces: ``QueryTimeout`` when another session holds the only writer (SQLite) or the only
pooled connection (PostgreSQL), and nothing of the call is applied (issue 9 review, p21).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import awaitdb


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("pg_url")
    return url


async def test_async_call_timeout_bounds_the_wait_for_a_connection(url: str) -> None:
    db = await awaitdb.connect(url, max_size=1, acquire_timeout=30)
    try:
        await db.execute("CREATE TABLE t (v TEXT)")
        held, done = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with db.transaction():
                await db.execute("INSERT INTO t (v) VALUES ('held')")
                held.set()
                await done.wait()

        task = asyncio.create_task(holder())
        await held.wait()
        with pytest.raises(awaitdb.QueryTimeout):
            await db.execute("INSERT INTO t (v) VALUES ('late')", timeout=0.1)
        done.set()
        await task
        await db.execute("INSERT INTO t (v) VALUES ('after')", timeout=5)
        rows = [r["v"] for r in await db.fetch_all("SELECT v FROM t ORDER BY v")]
    finally:
        await db.close()
    assert rows == ["after", "held"]


async def test_async_a_shorter_acquire_timeout_still_says_pool_timeout(pg_url: str) -> None:
    db = await awaitdb.connect(pg_url, max_size=1, acquire_timeout=0.1)
    try:
        held, done = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with db.transaction():
                await db.fetch_val("SELECT 1")
                held.set()
                await done.wait()

        task = asyncio.create_task(holder())
        await held.wait()
        with pytest.raises(awaitdb.PoolTimeout):
            await db.fetch_val("SELECT 1", timeout=30)
        done.set()
        await task
    finally:
        await db.close()


def test_sync_call_timeout_bounds_the_wait_for_a_connection(url: str) -> None:
    db = awaitdb.connect_sync(url, max_size=1, acquire_timeout=30)
    try:
        db.execute("CREATE TABLE t (v TEXT)")
        held, done = threading.Event(), threading.Event()

        def holder() -> None:
            with db.transaction():
                db.execute("INSERT INTO t (v) VALUES ('held')")
                held.set()
                done.wait()

        thread = threading.Thread(target=holder)
        thread.start()
        try:
            held.wait()
            with pytest.raises(awaitdb.QueryTimeout):
                db.execute("INSERT INTO t (v) VALUES ('late')", timeout=0.1)
        finally:
            done.set()
            thread.join()
        db.execute("INSERT INTO t (v) VALUES ('after')", timeout=5)
        rows = [r["v"] for r in db.fetch_all("SELECT v FROM t ORDER BY v")]
    finally:
        db.close()
    assert rows == ["after", "held"]
