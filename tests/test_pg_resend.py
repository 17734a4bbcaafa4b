"""Issue 8: a statement moves to another connection only when the driver never sent it.

A statement that reached the server may have written, whatever its first keyword says, so it
is never sent twice: its caller gets ``ConnectionLost``. The witness is a sequence: ``nextval``
is not rolled back when the session is killed, so its value counts how many times the server
ran the statement. Both faces, on the real server, backends killed with
``pg_terminate_backend``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest

import awaitdb

pytestmark = pytest.mark.postgresql

SEQ = "awaitdb_resend_seq"
# Both read as "reads" to a first-keyword guess: a WITH ... INSERT, and SELECT f() where f writes.
STATEMENTS = {
    "with-insert": (
        f"WITH ins AS (INSERT INTO t (id) VALUES (nextval('{SEQ}')) RETURNING id) "
        "SELECT ins.id, pg_sleep(30) FROM ins"
    ),
    "select-f": "SELECT awaitdb_resend_write(), pg_sleep(30)",
}
WITH_INSERT = (
    f"WITH ins AS (INSERT INTO t (id) VALUES (nextval('{SEQ}')) RETURNING id) SELECT id FROM ins"
)


def _app_url(pg_url: str, app: str) -> str:
    return pg_url.replace("application_name=awaitdb-test", f"application_name={app}")


def _server(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url.split("?", maxsplit=1)[0], autocommit=True)


def _schema(url: str) -> None:
    with _server(url) as conn:
        conn.execute(f"CREATE SEQUENCE {SEQ}")
        conn.execute("CREATE TABLE t (id BIGINT)")
        conn.execute(
            "CREATE FUNCTION awaitdb_resend_write() RETURNS bigint LANGUAGE sql AS "
            f"$$ INSERT INTO t (id) VALUES (nextval('{SEQ}')) RETURNING id $$"
        )


def _runs(url: str) -> int:
    """How many times the server ran the statement (the sequence survives the kill)."""
    with _server(url) as conn:
        row = conn.execute(f"SELECT last_value, is_called FROM {SEQ}").fetchone()
    assert row is not None
    return int(row[0]) if row[1] else 0


def _kill_when_running(url: str, app: str, marker: str, timeout: float = 20.0) -> int:
    """Wait until a session of ``app`` has written (the sequence moved) and still runs a
    statement containing ``marker``; terminate it."""
    deadline = time.monotonic() + timeout
    with _server(url) as conn:
        while time.monotonic() < deadline:
            if not _runs(url):
                time.sleep(0.02)
                continue
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s "
                "AND state = 'active' AND position(%s in query) > 0 AND pid <> pg_backend_pid()",
                (app, marker),
            ).fetchall()
            if rows:
                return len(rows)
            time.sleep(0.02)
    raise AssertionError(f"no session of {app} ran {marker!r}")


def _terminate_all(url: str, app: str) -> int:
    """Terminate every session of ``app`` and wait until each has ended (its goodbye sent)."""
    with _server(url) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s "
            "AND pid <> pg_backend_pid()",
            (app,),
        ).fetchall()
    return len(rows)


@pytest.mark.parametrize("name", sorted(STATEMENTS))
async def test_sent_statement_is_never_sent_twice_async(pg_url: str, name: str) -> None:
    app = f"awaitdb-test-resend-{name}"
    url = _app_url(pg_url, app)
    _schema(url)
    async with awaitdb.connect(url, min_size=3, max_size=3) as db:
        call = asyncio.create_task(db.fetch_val(STATEMENTS[name]))
        killed = await asyncio.to_thread(_kill_when_running, url, app, "pg_sleep(30)")
        assert killed == 1
        with pytest.raises(awaitdb.ConnectionLost):
            await call  # its outcome is unknown: reported, not retried
        assert _runs(url) == 1  # the server ran it once; before the fix, twice
        assert await db.fetch_val("SELECT count(*) FROM t") == 0  # the kill rolled it back
        assert db.stats().pool_in_use == 0


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_sent_statement_is_never_sent_twice_sync(pg_url: str, name: str) -> None:
    app = f"awaitdb-test-resend-sync-{name}"
    url = _app_url(pg_url, app)
    _schema(url)
    with awaitdb.connect_sync(url, min_size=3, max_size=3) as db:
        killer = threading.Thread(target=_kill_when_running, args=(url, app, "pg_sleep(30)"))
        killer.start()
        try:
            with pytest.raises(awaitdb.ConnectionLost):
                db.fetch_val(STATEMENTS[name])
        finally:
            killer.join(30)
        assert _runs(url) == 1
        assert db.fetch_val("SELECT count(*) FROM t") == 0
        assert db.stats().pool_in_use == 0


async def test_never_sent_statement_moves_to_a_fresh_connection_async(pg_url: str) -> None:
    app = "awaitdb-test-resend-idle"
    url = _app_url(pg_url, app)
    _schema(url)
    async with awaitdb.connect(url, min_size=2, max_size=2) as db:
        await asyncio.gather(*(db.fetch_val("SELECT pg_sleep(0.05)") for _ in range(2)))
        # Killed while idle, and the loop does not run before the next statement: the
        # server's goodbye sits unread in the sockets. A write must still go through, once.
        assert _terminate_all(url, app) == 2
        sql = WITH_INSERT
        assert await db.fetch_val(sql) == 1
        assert await db.execute(f"INSERT INTO t (id) VALUES (nextval('{SEQ}'))") == 1
        assert _runs(url) == 2
        assert await db.fetch_val("SELECT count(*) FROM t") == 2
        assert db.stats().connections_replaced >= 1


def test_never_sent_statement_moves_to_a_fresh_connection_sync(pg_url: str) -> None:
    app = "awaitdb-test-resend-idle-sync"
    url = _app_url(pg_url, app)
    _schema(url)
    with awaitdb.connect_sync(url, min_size=2, max_size=2) as db:
        assert db.fetch_val("SELECT 1") == 1
        assert _terminate_all(url, app) == 2
        sql = WITH_INSERT
        assert db.fetch_val(sql) == 1
        assert db.execute(f"INSERT INTO t (id) VALUES (nextval('{SEQ}'))") == 1
        assert _runs(url) == 2
        assert db.fetch_val("SELECT count(*) FROM t") == 2
        assert db.stats().connections_replaced >= 1
