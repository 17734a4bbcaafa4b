"""PostgreSQL backend: faults, overload, cancellation, retries, session resets, both faces.

Runs against the real server in AWAITDB_TEST_PG_URL (skipped loudly without it, failing in CI).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest
from conftest import cancellation_storm

import awaitdb


def _server(url: str) -> psycopg.Connection[Any]:
    """An outside connection to inspect and disturb the server (not through awaitdb)."""
    return psycopg.connect(url.split("?", maxsplit=1)[0], autocommit=True)


def _terminate_all(url: str, app: str) -> int:
    with _server(url) as conn:
        rows = conn.execute(
            # waits until each session has ended: its goodbye is in the client's socket
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s "
            "AND pid <> pg_backend_pid()",
            (app,),
        ).fetchall()
    return len(rows)


def _sessions(url: str, app: str, state: str | None = None) -> int:
    with _server(url) as conn:
        sql = (  # this database only: a shared server runs other suites too
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s"
        )
        args: tuple[Any, ...] = (app,)
        if state is not None:
            sql += " AND state = %s"
            args = (app, state)
        row = conn.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


def _app_url(pg_url: str, app: str) -> str:
    return pg_url.replace("application_name=awaitdb-test", f"application_name={app}")


async def test_terminated_connections_recover(pg_url: str) -> None:
    url = _app_url(pg_url, "awaitdb-test-kill")
    async with awaitdb.connect(url, min_size=8, max_size=8) as db:
        await db.execute("CREATE TABLE ledger (id BIGINT PRIMARY KEY, task INTEGER)")
        committed: list[int] = []
        lost: list[BaseException] = []  # fast writes caught mid-flight, if any
        counter = iter(range(10**9))
        stop = asyncio.Event()

        async def worker(task: int) -> None:
            while not stop.is_set():
                i = next(counter)
                try:
                    await db.execute(
                        "INSERT INTO ledger (id, task) VALUES (:i, :t)", {"i": i, "t": task}
                    )
                    committed.append(i)
                    await db.fetch_val("SELECT count(*) FROM ledger WHERE task = :t", {"t": task})
                except awaitdb.ConnectionLost as exc:
                    lost.append(exc)

        async def slow_write(i: int) -> None:
            await db.execute(
                "INSERT INTO ledger (id, task) SELECT :i, -1 FROM pg_sleep(2)", {"i": -i - 1}
            )

        tasks = [asyncio.create_task(worker(t)) for t in range(50)]
        await asyncio.sleep(0.3)
        in_flight = [asyncio.create_task(slow_write(i)) for i in range(3)]
        await asyncio.sleep(0.3)  # the slow writes are running on the server now
        killed = _terminate_all(url, "awaitdb-test-kill")
        assert killed >= 1
        await asyncio.sleep(0.5)  # the pool recovers by itself while the tasks keep going
        before = len(committed)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)  # nothing but ConnectionLost escaped the workers
        assert len(committed) > before  # work continued after the kill, no restart
        outcomes = await asyncio.gather(*in_flight, return_exceptions=True)
        # in-flight writes were told their connection was lost (their outcome is unknown)
        assert all(isinstance(o, awaitdb.ConnectionLost) for o in outcomes), outcomes
        ids = {r["id"] for r in await db.fetch_all("SELECT id FROM ledger")}
        assert set(committed) <= ids  # nothing reported committed was lost
        stats = db.stats()
        assert stats.connections_replaced + stats.connection_errors >= 1
        assert stats.pool_in_use == 0


async def test_dead_idle_connections_are_replaced_silently(pg_url: str) -> None:
    url = _app_url(pg_url, "awaitdb-test-idle")
    async with awaitdb.connect(url, min_size=3, max_size=3) as db:
        await asyncio.gather(*(db.fetch_val("SELECT pg_sleep(0.05)") for _ in range(3)))
        assert _terminate_all(url, "awaitdb-test-idle") == 3
        # No caller sees an error, whether or not the loop has noticed the sockets close yet:
        # a connection the server has ended is replaced on checkout, before anything is sent.
        for _ in range(10):
            assert await db.fetch_val("SELECT 1") == 1
        assert db.stats().connections_replaced >= 1


async def test_a_thousand_tasks_on_a_pool_of_ten(pg_url: str) -> None:
    async with awaitdb.connect(pg_url, max_size=10, acquire_timeout=60) as db:
        await db.execute("CREATE TABLE t (id BIGINT PRIMARY KEY)")

        async def task(i: int) -> int:
            await db.execute("INSERT INTO t (id) VALUES (:i)", {"i": i})
            value: int = await db.fetch_val("SELECT id FROM t WHERE id = :i", {"i": i})
            return value

        results = await asyncio.gather(*(task(i) for i in range(1000)))
        assert results == list(range(1000))
        stats = db.stats()
        assert stats.pool_size <= 10 and stats.pool_in_use == 0 and stats.acquire_timeouts == 0


@pytest.mark.slow
async def test_random_cancellations_leave_nothing_open(pg_url: str) -> None:
    url = _app_url(pg_url, "awaitdb-test-cancel")
    async with awaitdb.connect(url, max_size=10) as db:
        await db.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
        counter = iter(range(10**9))

        async def op(kind: int) -> None:
            if kind == 0:
                await db.fetch_val("SELECT pg_sleep(0.002)")
            elif kind == 1:
                await db.execute("INSERT INTO t (id) VALUES (:i)", {"i": next(counter)})
            elif kind == 2:
                async with db.transaction():
                    await db.execute("INSERT INTO t (id) VALUES (:i)", {"i": next(counter)})
                    await db.fetch_val("SELECT pg_sleep(0.001)")
                    async with db.transaction():
                        await db.execute("INSERT INTO t (id) VALUES (:i)", {"i": next(counter)})
            elif kind == 3:
                async for rec in db.iterate("SELECT generate_series(1, 1000) AS x", batch_size=50):
                    if rec["x"] > 120:
                        break
            else:
                await db.fetch_val("SELECT pg_sleep(0.01)", timeout=0.003)

        assert await cancellation_storm(op, 5, seed=1122, batch=30, max_delay=0.004) >= 2000
        for _ in range(200):  # background resets finish
            if db.stats().pool_in_use == 0:
                break
            await asyncio.sleep(0.01)
        assert db.stats().pool_in_use == 0
        assert _sessions(url, "awaitdb-test-cancel", "idle in transaction") == 0
        assert _sessions(url, "awaitdb-test-cancel", "active") == 0
        assert await db.fetch_val("SELECT 1") == 1


async def test_conflicting_serializable_transfers_both_finish(pg_url: str) -> None:
    async with awaitdb.connect(pg_url, max_size=4) as db:
        await db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance BIGINT)")
        await db.execute("INSERT INTO accounts VALUES (1, 100), (2, 100)")
        both_read = asyncio.Barrier(2)
        attempts = {"a": 0, "b": 0}

        def transfer(name: str, src: int, dst: int, amount: int) -> Any:
            async def work(tx: awaitdb.Transaction) -> None:
                attempts[name] += 1
                total = await tx.fetch_val("SELECT sum(balance) FROM accounts")
                if attempts[name] == 1:
                    await both_read.wait()  # force the two first attempts to overlap
                bal = await tx.fetch_val("SELECT balance FROM accounts WHERE id = :i", {"i": src})
                assert total == 200
                await tx.execute(
                    "UPDATE accounts SET balance = :b WHERE id = :i", {"b": bal - amount, "i": src}
                )
                await tx.execute(
                    "UPDATE accounts SET balance = balance + :a WHERE id = :i",
                    {"a": amount, "i": dst},
                )

            return db.run_in_transaction(work, isolation="serializable", retries=10)

        await asyncio.gather(transfer("a", 1, 2, 30), transfer("b", 2, 1, 50))
        balances = {r["id"]: r["balance"] for r in await db.fetch_all("SELECT * FROM accounts")}
        assert balances == {1: 120, 2: 80}
        assert attempts["a"] + attempts["b"] >= 3  # one of them was retried


async def test_serialization_failure_is_transient(pg_url: str) -> None:
    async with awaitdb.connect(pg_url) as db:
        await db.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER)")
        await db.execute("INSERT INTO c VALUES (1, 0)")
        gate = asyncio.Barrier(2)

        async def bump() -> None:
            async with db.transaction(isolation="serializable"):
                await db.fetch_val("SELECT n FROM c WHERE id = 1")
                await gate.wait()
                await db.execute("UPDATE c SET n = n + 1 WHERE id = 1")

        results = await asyncio.gather(bump(), bump(), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1
        assert isinstance(errors[0], awaitdb.SerializationFailure)
        assert isinstance(errors[0], awaitdb.TransientError)
        assert errors[0].sqlstate == "40001"


async def test_session_state_is_reset_only_when_changed(pg_url: str) -> None:
    async with awaitdb.connect(pg_url, min_size=1, max_size=1) as db:
        pid = await db.fetch_val("SELECT pg_backend_pid()")
        await db.execute("SET statement_timeout = '1234ms'")
        # the reset runs in the background; the next caller waits for the connection (size 1)
        assert await db.fetch_val("SHOW statement_timeout") == "0"
        assert await db.fetch_val("SELECT pg_backend_pid()") == pid  # same connection, reset
        await db.execute("CREATE TEMP TABLE scratch (x INTEGER)")
        with pytest.raises(awaitdb.ProgrammingError):
            await db.fetch_val("SELECT count(*) FROM scratch")
        async with db.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(42)")
        # this database's lock 42 only: other databases on a shared server hold their own
        held = await db.fetch_val(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert held == 0


async def test_cannot_connect_after_acquire_timeout() -> None:
    with pytest.raises(awaitdb.CannotConnect, match="cannot connect"):
        await awaitdb.connect("postgresql://nobody:secret@127.0.0.1:1/db", acquire_timeout=0.5)
    with pytest.raises(awaitdb.CannotConnect) as info:
        awaitdb.connect_sync("postgresql://nobody:secret@127.0.0.1:1/db", acquire_timeout=0.5)
    assert "secret" not in str(info.value)


async def test_pool_timeout_carries_pool_stats(pg_url: str) -> None:
    async with awaitdb.connect(pg_url, max_size=1, acquire_timeout=0.2) as db:
        release = asyncio.Event()

        async def hold() -> None:
            async with db.transaction():
                await release.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.05)
        with pytest.raises(awaitdb.PoolTimeout, match="size=1/1"):
            await db.fetch_val("SELECT 1")
        release.set()
        await holder


async def test_statement_cache_size_zero(pg_url: str) -> None:
    async with awaitdb.connect(pg_url, statement_cache_size=0) as db:
        for i in range(5):
            assert await db.fetch_val("SELECT CAST(:i AS INTEGER)", {"i": i}) == i
    db2 = awaitdb.connect_sync(pg_url, statement_cache_size=0)
    try:
        assert db2.fetch_val("SELECT CAST(:i AS INTEGER)", {"i": 3}) == 3
    finally:
        db2.close()


async def test_failed_statement_then_commit_raises(pg_url: str) -> None:
    async with awaitdb.connect(pg_url) as db:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        with pytest.raises(awaitdb.TransactionAborted):
            async with db.transaction():
                await db.execute("INSERT INTO t VALUES (1)")
                with pytest.raises(awaitdb.UniqueViolation):
                    await db.execute("INSERT INTO t VALUES (1)")
        assert await db.fetch_val("SELECT count(*) FROM t") == 0


def test_sync_face_recovers_from_terminated_connections(pg_url: str) -> None:
    url = _app_url(pg_url, "awaitdb-test-sync-kill")
    db = awaitdb.connect_sync(url, min_size=4, max_size=4)
    try:
        db.execute("CREATE TABLE t (id BIGINT PRIMARY KEY)")
        errors: list[BaseException] = []

        def work(k: int) -> None:
            for i in range(200):
                try:
                    db.execute("INSERT INTO t (id) VALUES (:i)", {"i": k * 1000 + i})
                except awaitdb.ConnectionLost as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        _terminate_all(url, "awaitdb-test-sync-kill")
        for thread in threads:
            thread.join(60)
        assert db.fetch_val("SELECT count(*) FROM t") >= 800 - len(errors)
        assert db.fetch_val("SELECT 1") == 1
        assert db.stats().pool_in_use == 0
    finally:
        db.close()
