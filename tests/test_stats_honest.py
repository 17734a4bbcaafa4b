"""Honest stats: query times and the slow-query log count execution only, never the wait for a
connection; a call that never got a connection is not a slow query; retries are counted."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from conftest import pg_url_or_skip, reset_pg_schema, with_app_name

import awaitdb


def _slow_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("slow query")]


async def test_acquire_wait_is_not_query_time(caplog: pytest.LogCaptureFixture) -> None:
    url = pg_url_or_skip()
    reset_pg_schema(url)
    caplog.set_level(logging.WARNING, logger="awaitdb")
    async with awaitdb.connect(with_app_name(url), min_size=1, max_size=1, slow_query_ms=200) as db:
        holding = asyncio.Event()

        async def hold() -> None:
            async with db.transaction() as tx:
                await tx.execute("SELECT 1")
                holding.set()
                await asyncio.sleep(0.4)

        holder = asyncio.create_task(hold())
        await holding.wait()
        assert await db.fetch_val("SELECT 1 AS one") == 1  # waits ~0.4 s for the connection
        await holder
        stats = db.stats()
        assert stats.acquire_wait_p99_ms >= 300  # the wait is reported as acquire wait...
        assert stats.query_p99_ms < stats.acquire_wait_p99_ms  # ...and not as query time
        assert stats.slow_queries == 0
    assert _slow_lines(caplog) == []


async def test_pool_timeout_is_not_a_slow_query(caplog: pytest.LogCaptureFixture) -> None:
    url = pg_url_or_skip()
    reset_pg_schema(url)
    caplog.set_level(logging.WARNING, logger="awaitdb")
    async with awaitdb.connect(
        with_app_name(url), max_size=1, acquire_timeout=0.3, slow_query_ms=100
    ) as db:
        holding, done = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with db.transaction() as tx:
                await tx.execute("SELECT 1")
                holding.set()
                await done.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        with pytest.raises(awaitdb.PoolTimeout):
            await db.fetch_val("SELECT 1")
        done.set()
        await holder
        stats = db.stats()
        assert stats.acquire_timeouts == 1
        assert stats.slow_queries == 0 and stats.query_errors == 0
    assert _slow_lines(caplog) == []


def test_pool_timeout_is_not_a_slow_query_sync(caplog: pytest.LogCaptureFixture) -> None:
    url = pg_url_or_skip()
    reset_pg_schema(url)
    caplog.set_level(logging.WARNING, logger="awaitdb")
    with awaitdb.connect_sync(
        with_app_name(url), max_size=1, acquire_timeout=0.3, slow_query_ms=100
    ) as db:
        errors: list[BaseException] = []
        with db.transaction() as tx:
            tx.execute("SELECT 1")

            def other() -> None:
                try:
                    db.fetch_val("SELECT 1")
                except awaitdb.PoolTimeout as exc:
                    errors.append(exc)

            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
        assert len(errors) == 1
        assert db.stats().slow_queries == 0
    assert _slow_lines(caplog) == []


async def test_slow_query_log_names_execution_time(
    caplog: pytest.LogCaptureFixture, aconnect: Any, dialect: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="awaitdb")
    db = await aconnect(slow_query_ms=0)
    await db.fetch_val("SELECT 1")
    assert db.stats().slow_queries == 1
    assert _slow_lines(caplog) and "waiting" not in _slow_lines(caplog)[0]


async def test_sqlite_wait_for_the_writer_is_acquire_wait(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # review of issue 13: async SQLite counted the wait behind another task's open transaction
    # as query time (a slow query), where sync SQLite and PostgreSQL report it as acquire wait.
    caplog.set_level(logging.WARNING, logger="awaitdb")
    url = f"sqlite:///{tmp_path / 'w.db'}"
    async with awaitdb.connect(url, slow_query_ms=200) as db:
        await db.execute("CREATE TABLE s (x INTEGER)")
        holding = asyncio.Event()

        async def hold() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO s VALUES (1)")
                holding.set()
                await asyncio.sleep(0.4)

        holder = asyncio.create_task(hold())
        await holding.wait()
        assert await db.execute("INSERT INTO s VALUES (2)") == 1  # waits ~0.4 s for the writer
        await holder
        stats = db.stats()
        assert stats.acquire_wait_p99_ms >= 300
        assert stats.query_p99_ms < stats.acquire_wait_p99_ms
        assert stats.slow_queries == 0
    assert _slow_lines(caplog) == []


def test_sqlite_sync_wait_for_the_writer_is_acquire_wait(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="awaitdb")
    url = f"sqlite:///{tmp_path / 'w.db'}"
    with awaitdb.connect_sync(url, slow_query_ms=200) as db:
        db.execute("CREATE TABLE s (x INTEGER)")
        holding, done = threading.Event(), threading.Event()

        def hold() -> None:
            with db.transaction() as tx:
                tx.execute("INSERT INTO s VALUES (1)")
                holding.set()
                done.wait(0.4)

        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait(10)
        assert db.execute("INSERT INTO s VALUES (2)") == 1
        holder.join()
        stats = db.stats()
        assert stats.acquire_wait_p99_ms >= 300
        assert stats.query_p99_ms < stats.acquire_wait_p99_ms
        assert stats.slow_queries == 0
    assert _slow_lines(caplog) == []
