"""Issue 7: the PostgreSQL, pool, error-tree, secrets and loop defects, each named for its number.

Real databases only: the PostgreSQL server in AWAITDB_TEST_PG_URL (``pg_url``) and SQLite files.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

import awaitdb
from awaitdb._config import parse_config, redact_url

UTC = dt.UTC


def _app_url(pg_url: str, app: str) -> str:
    return pg_url.replace("application_name=awaitdb-test", f"application_name={app}")


def _terminate_all(url: str, app: str) -> int:
    with psycopg.connect(url.split("?", maxsplit=1)[0], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s "
            "AND pid <> pg_backend_pid()",
            (app,),
        ).fetchall()
    return len(rows)


class _LoopErrors:
    """Collects what the event loop reports ("Future exception was never retrieved"...)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.loop = asyncio.get_running_loop()
        self.old = self.loop.get_exception_handler()
        self.loop.set_exception_handler(self._handle)

    def _handle(self, loop: Any, context: dict[str, Any]) -> None:
        self.seen.append(str(context.get("message")) + " " + repr(context.get("exception")))

    def close(self) -> None:
        self.loop.set_exception_handler(self.old)


# -- 1: the pool ----------------------------------------------------------------------------------


async def test_defect01_pool_keeps_slot_when_waiter_cancelled_after_grow(pg_url: str) -> None:
    # max_lifetime=0 makes every release drop its connection, so every release hands the
    # freed slot (the "grow" placeholder) to the oldest waiter, which we cancel at random.
    errors = _LoopErrors()
    db = await awaitdb.connect(pg_url, min_size=1, max_size=2, max_lifetime=0.0)
    try:
        rng = random.Random(7)
        cancelled = 0
        while cancelled < 2000:
            tasks = [asyncio.create_task(db.fetch_val("SELECT 1")) for _ in range(12)]
            await asyncio.sleep(rng.random() * 0.004)
            for task in tasks:
                if rng.random() < 0.7:
                    task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            cancelled += sum(1 for t in tasks if t.cancelled())
            for result in results:
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    raise result
        for _ in range(1000):  # background resets of interrupted connections (loaded CI)
            if db.stats().pool_in_use == 0:
                break
            await asyncio.sleep(0.01)
        assert db.stats().pool_in_use == 0
        assert db.stats().pool_size <= 2
        assert await db.fetch_val("SELECT 41 + 1") == 42
    finally:
        await db.close()
        errors.close()
    assert errors.seen == []


# -- 2: session state -----------------------------------------------------------------------------


async def test_defect02_session_detection_reads_the_whole_statement(pg_url: str) -> None:
    async with awaitdb.connect(pg_url, min_size=1, max_size=1) as db:
        await db.execute("DO $$ BEGIN PERFORM set_config('search_path', 'nowhere', false); END $$")
        await db.execute("DO $$ BEGIN EXECUTE 'SET statement_timeout = 50'; END $$")
        # The one pooled connection was reset before this caller got it.
        assert await db.fetch_val("SHOW search_path") != "nowhere"
        assert await db.fetch_val("SELECT 1 FROM pg_sleep(0.2)") == 1


# -- 3: timeouts in URLs ---------------------------------------------------------------------------


def test_defect03_timeouts_in_the_url_refused() -> None:
    for url in [
        "sqlite:///x.db?statement_timeout=nan",
        "sqlite:///x.db?busy_timeout=inf",
        "postgresql://u@h/db?acquire_timeout=-1",
        "postgresql://u@h/db?max_idle=NaN",
        "postgresql://u@h/db?slow_query_ms=infinity",
    ]:
        name = url.rpartition("?")[2].partition("=")[0]
        with pytest.raises(awaitdb.InterfaceError, match=name):
            parse_config(url)
    assert parse_config("sqlite:///x.db?statement_timeout=2.5").statement_timeout == 2.5


# -- 4: year 1 and year 9999 ----------------------------------------------------------------------

_EXTREMES = {
    "d": [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(2000, 1, 1)],
    "ts": [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)],
    "tz": [
        dt.datetime(1, 1, 2, 0, 0, 0, 1, tzinfo=UTC),
        dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC),
    ],
}


async def test_defect04_year_1_and_9999_round_trip_on_both_faces(pg_url: str) -> None:
    async with awaitdb.connect(pg_url) as adb:
        await adb.execute("CREATE TABLE t (id INTEGER, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ)")
        for i in range(2):
            row = {"id": i, "d": _EXTREMES["d"][i], "ts": _EXTREMES["ts"][i]}
            row["tz"] = _EXTREMES["tz"][i]
            await adb.execute("INSERT INTO t VALUES (:id, :d, :ts, :tz)", row)
        with awaitdb.connect_sync(pg_url) as sdb:
            for i in range(2):
                row = {"id": 10 + i, "d": _EXTREMES["d"][i], "ts": _EXTREMES["ts"][i]}
                row["tz"] = _EXTREMES["tz"][i]
                sdb.execute("INSERT INTO t VALUES (:id, :d, :ts, :tz)", row)
            srows = sdb.fetch_all("SELECT id, d, ts, tz FROM t ORDER BY id")
        arows = await adb.fetch_all("SELECT id, d, ts, tz FROM t ORDER BY id")
        assert [tuple(r) for r in arows] == [tuple(r) for r in srows]
        for r in arows:
            i = r["id"] % 10
            assert (r["d"], r["ts"], r["tz"]) == (
                _EXTREMES["d"][i],
                _EXTREMES["ts"][i],
                _EXTREMES["tz"][i],
            )
        # Nothing was stored as infinity.
        assert (
            await adb.fetch_val("SELECT count(*) FROM t WHERE d IN ('infinity', '-infinity')") == 0
        )
        assert (
            await adb.fetch_val("SELECT count(*) FROM t WHERE ts IN ('infinity', '-infinity')") == 0
        )
        with awaitdb.connect_sync(pg_url) as sdb:
            for sql in [
                "SELECT 'infinity'::date",
                "SELECT '-infinity'::timestamp",
                "SELECT 'infinity'::timestamptz",
                "SELECT '0044-03-15 BC'::date",
            ]:
                with pytest.raises(awaitdb.DataError):
                    await adb.fetch_val(sql)
                with pytest.raises(awaitdb.DataError):
                    sdb.fetch_val(sql)
        assert await adb.fetch_val("SELECT :d::date", {"d": dt.date(2024, 2, 29)}) == dt.date(
            2024, 2, 29
        )


# -- 7: leaving a block after close() ------------------------------------------------------------


async def test_defect07_leaving_transaction_after_close_keeps_cancellation(pg_url: str) -> None:
    db = await awaitdb.connect(pg_url)
    inside = asyncio.Event()

    async def work() -> None:
        async with db.transaction() as tx:
            await tx.execute("SELECT 1")
            inside.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(work())
    await inside.wait()
    await db.close(timeout=0.05)  # the transaction's connection is terminated
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()

    db2 = await awaitdb.connect(pg_url)
    inside2 = asyncio.Event()
    release = asyncio.Event()

    async def work2() -> None:
        async with db2.transaction() as tx:
            await tx.execute("SELECT 1")
            inside2.set()
            await release.wait()

    task2 = asyncio.create_task(work2())
    await inside2.wait()
    await db2.close(timeout=0.05)
    release.set()
    with pytest.raises(awaitdb.Error):
        await task2


# -- 10: raw exceptions ---------------------------------------------------------------------------


async def _call(method: Callable[..., Any], *args: Any) -> Any:
    """Call a query method of either face (the async one returns a coroutine)."""
    result = method(*args)
    return await result if asyncio.iscoroutine(result) else result


async def test_defect10_driver_value_errors_stay_in_the_tree_pg(pg_url: str) -> None:
    deep: Any = 0
    for _ in range(3000):
        deep = [deep]
    deep_sql = "SELECT (repeat('[', 3000) || repeat(']', 3000))::jsonb"
    async with awaitdb.connect(pg_url) as adb:
        await adb.execute("CREATE TABLE t (s TEXT, j JSONB)")
        with awaitdb.connect_sync(pg_url) as sdb:
            for db in (adb, sdb):
                for method in (db.execute, db.fetch_val):
                    with pytest.raises(awaitdb.InterfaceError, match=":text"):
                        sql = "INSERT INTO t (s) VALUES (:text)"
                        await _call(method, sql, {"text": "a\ud800b"})
                with pytest.raises(awaitdb.InterfaceError, match=":doc"):
                    await _call(db.execute, "INSERT INTO t (j) VALUES (:doc)", {"doc": deep})
                with pytest.raises(awaitdb.DataError, match="JSON"):
                    await _call(db.fetch_val, deep_sql)
                assert await _call(db.fetch_val, "SELECT 1") == 1
                assert await _call(db.fetch_val, "SELECT count(*) FROM t") == 0
            assert sdb.stats().pool_in_use == 0


async def test_defect10_database_used_from_a_second_event_loop(db_url: str) -> None:
    db = await awaitdb.connect(db_url)
    try:
        assert await db.fetch_val("SELECT 1") == 1
        caught: list[BaseException] = []

        def other_loop() -> None:
            async def use() -> None:
                await db.fetch_val("SELECT 1")

            async def use_tx() -> None:
                async with db.transaction():
                    pass

            for coro in (use, use_tx):
                try:
                    asyncio.run(coro())
                except BaseException as exc:
                    caught.append(exc)

        thread = threading.Thread(target=other_loop)
        thread.start()
        thread.join(10)
        assert len(caught) == 2
        for exc in caught:
            assert isinstance(exc, awaitdb.InterfaceError), repr(exc)
            assert "event loop" in str(exc)
        assert await db.fetch_val("SELECT 2") == 2
    finally:
        await db.close()


# -- 11: Ctrl-C on the sync face ------------------------------------------------------------------


class _Explosive(dict[str, Any]):
    """A JSON value whose encoding raises ``exc`` inside the driver call (deterministic)."""

    exc: BaseException = KeyboardInterrupt()

    def items(self) -> Any:
        raise self.exc


def test_defect11_keyboard_interrupt_passes_through_sync_face(db_url: str) -> None:
    with awaitdb.connect_sync(db_url) as db:
        db.execute("CREATE TABLE t (id INTEGER, doc TEXT)")
        for exc in (KeyboardInterrupt(), SystemExit(3), GeneratorExit()):
            value = _Explosive(a=1)
            value.exc = exc
            with pytest.raises(type(exc)) as info:
                db.execute("INSERT INTO t (id, doc) VALUES (1, :doc)", {"doc": value})
            assert info.value is exc
            with pytest.raises(type(exc)):
                with db.transaction() as tx:
                    tx.execute("INSERT INTO t (id) VALUES (2)")
                    tx.execute("INSERT INTO t (id, doc) VALUES (3, :doc)", {"doc": value})
            assert db.fetch_val("SELECT count(*) FROM t") == 0
            assert db.stats().pool_in_use == 0
        with db.transaction() as tx:
            tx.execute("INSERT INTO t (id) VALUES (-1)")
        assert db.fetch_val("SELECT count(*) FROM t") == 1


def test_defect11_ctrl_c_during_a_query_sync_pg(pg_url: str) -> None:
    url = _app_url(pg_url, "awaitdb-test-ctrlc")
    with awaitdb.connect_sync(url, min_size=1, max_size=1) as db:
        for _ in range(2):
            timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            try:
                with pytest.raises(KeyboardInterrupt):
                    db.fetch_val("SELECT pg_sleep(5)")
            finally:
                timer.cancel()
            assert db.fetch_val("SELECT 1") == 1
            assert db.stats().pool_in_use == 0
    active = -1
    with psycopg.connect(pg_url.split("?", maxsplit=1)[0], autocommit=True) as conn:
        for _ in range(100):  # the server ends a closed connection's backend shortly
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = %s AND state = 'active'",
                ("awaitdb-test-ctrlc",),
            ).fetchone()
            assert row is not None
            active = row[0]
            if active == 0:
                break
            time.sleep(0.02)
    assert active == 0


# -- 12: secrets ----------------------------------------------------------------------------------


def test_defect12_passwords_never_leak() -> None:
    for url, secret in [
        ("postgresql://alice@db.example/app?password=s3cr3t&sslmode=disable", "s3cr3t"),
        ("postgresql://alice:p@ss@word@db.example/app", "ss@word"),
        ("postgresql://alice:p%40ss@db.example/app", "p%40ss"),
        ("postgresql://alice:top/secret?x@db.example/app", "secret"),
    ]:
        redacted = redact_url(url)
        assert secret not in redacted and "***" in redacted, redacted
        try:
            config = parse_config(url)
        except awaitdb.InterfaceError as exc:  # an unencoded "/" cannot be parsed: say so
            assert secret not in str(exc) and "top" not in str(exc), str(exc)
            continue
        assert secret not in config.redacted_url
        assert secret not in repr(config)
    assert redact_url("postgresql://alice:pw@h/app?password=x") == (
        "postgresql://alice:***@h/app?password=***"
    )
    no_password = "postgresql://alice@h:5432/app?application_name=a@b"
    assert redact_url(no_password) == no_password


async def test_defect12_passwords_hidden_from_db_and_errors(pg_url: str) -> None:
    url = pg_url + "&password=s3cr3tpw"
    async with awaitdb.connect(url) as db:
        assert "s3cr3tpw" not in repr(db) and "s3cr3tpw" not in db.url
    with awaitdb.connect_sync(url) as sdb:
        assert "s3cr3tpw" not in repr(sdb) and "s3cr3tpw" not in sdb.url
    bad = "postgresql://postgres:s3cr3tpw@127.0.0.1:1/nowhere?password=s3cr3tpw"
    with pytest.raises(awaitdb.CannotConnect) as info:
        await awaitdb.connect(bad, acquire_timeout=0.2)
    assert "s3cr3tpw" not in str(info.value)
    with pytest.raises(awaitdb.CannotConnect) as sinfo:
        awaitdb.connect_sync(bad, acquire_timeout=0.2)
    assert "s3cr3tpw" not in str(sinfo.value)
    # psycopg quotes a badly percent-encoded password in its message.
    for face in ("async", "sync"):
        badly = "postgresql://postgres:ab%zzcd@127.0.0.1:1/nowhere"
        with pytest.raises(awaitdb.Error) as binfo:
            if face == "async":
                await awaitdb.connect(badly, acquire_timeout=0.2)
            else:
                awaitdb.connect_sync(badly, acquire_timeout=0.2)
        assert "zzcd" not in str(binfo.value)


def test_defect12_pg_dump_never_sees_the_password(tmp_path: Path, pg_url: str) -> None:
    from awaitdb._postgres.migration import pg_dump_command

    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:s3cr3tpw@")
    argv, env = pg_dump_command("/usr/bin/pg_dump", url + "&password=s3cr3tpw", tmp_path / "x")
    assert not any("s3cr3tpw" in part for part in argv)
    assert env["PGPASSWORD"] == "s3cr3tpw"


# -- 14: smaller unclear errors -------------------------------------------------------------------


async def test_defect14_bad_sslmode_refused_at_connect(pg_url: str) -> None:
    with pytest.raises(awaitdb.InterfaceError, match="sslmode"):
        await awaitdb.connect(pg_url + "&sslmode=bogus")
    with pytest.raises(awaitdb.InterfaceError, match="sslmode"):
        awaitdb.connect_sync(pg_url + "&sslmode=bogus")
    with pytest.raises(awaitdb.InterfaceError, match="ssl"):
        await awaitdb.connect(pg_url, ssl="bogus")


async def test_defect14_begin_on_dead_connection_moves_on(pg_url: str) -> None:
    url = _app_url(pg_url, "awaitdb-test-begin")
    async with awaitdb.connect(url, min_size=3, max_size=3) as db:
        with awaitdb.connect_sync(url, min_size=3, max_size=3) as sdb:
            await asyncio.gather(*(db.fetch_val("SELECT pg_sleep(0.05)") for _ in range(3)))
            assert db.stats().pool_size == 3 and sdb.stats().pool_size == 3
            assert _terminate_all(url, "awaitdb-test-begin") == 6
            await asyncio.sleep(0.2)
            for _ in range(4):
                async with db.transaction() as tx:
                    assert await tx.fetch_val("SELECT 1") == 1
                with sdb.transaction() as stx:
                    assert stx.fetch_val("SELECT 1") == 1


def test_defect14_nul_character_names_the_parameter_sync(pg_url: str) -> None:
    with awaitdb.connect_sync(pg_url) as db:
        db.execute("CREATE TABLE t (a TEXT, b TEXT)")
        with pytest.raises(awaitdb.DataError, match=":second"):
            db.execute("INSERT INTO t VALUES (:first, :second)", {"first": "ok", "second": "a\0b"})
        assert db.fetch_val("SELECT 1") == 1


async def test_defect14_aware_datetime_into_timestamp_same_on_both_faces(pg_url: str) -> None:
    aware = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    async with awaitdb.connect(pg_url) as adb:
        await adb.execute("CREATE TABLE t (id INTEGER, ts TIMESTAMP)")
        await adb.execute("INSERT INTO t VALUES (1, :ts)", {"ts": aware})
        with awaitdb.connect_sync(pg_url) as sdb:
            sdb.execute("INSERT INTO t VALUES (2, :ts)", {"ts": aware})
        rows = await adb.fetch_all("SELECT ts FROM t ORDER BY id")
        zone = await adb.fetch_val("SHOW TimeZone")
    from zoneinfo import ZoneInfo

    expected = aware.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    assert [r["ts"] for r in rows] == [expected, expected]
