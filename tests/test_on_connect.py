"""``connect(..., on_connect=hook)``: the hook runs on every connection the pool opens.

SQLite: the writer, every reader and the loop's inline connection (async face), and every
connection of the sync face; PostgreSQL: every connection of both faces. A hook that raises
gives ``CannotConnect`` and leaves no connection or thread behind.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import pg_url_or_skip, reset_pg_schema, with_app_name

import awaitdb

CACHE = -12345


def _sqlite_hook(seen: list[Any]) -> Any:
    def hook(conn: Any) -> None:
        seen.append(conn)
        conn.execute(f"PRAGMA cache_size = {CACHE}")

    return hook


async def _async_sqlite_hook(conn: Any) -> None:
    await asyncio.sleep(0)  # a coroutine function is awaited on the loop
    conn.execute(f"PRAGMA cache_size = {CACHE}")


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_sqlite_hook_on_writer_readers_and_inline(tmp_path: Path, asynchronous: bool) -> None:
    seen: list[Any] = []
    hook = _async_sqlite_hook if asynchronous else _sqlite_hook(seen)
    url = f"sqlite:///{tmp_path / 'hook.db'}"
    async with awaitdb.connect(url, readers=3, on_connect=hook) as db:
        if not asynchronous:
            assert len(seen) == 1 + 3 + 1  # writer, readers, inline connection
        async with db.transaction() as tx:  # the writer
            assert await tx.fetch_val("PRAGMA cache_size") == CACHE
        # every reader at once: three read-only transactions pin three readers
        gate = asyncio.Event()

        async def read() -> int:
            async with db.transaction(readonly=True) as tx:
                value: int = await tx.fetch_val("PRAGMA cache_size")
                await gate.wait()
                return value

        tasks = [asyncio.create_task(read()) for _ in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        assert await asyncio.gather(*tasks) == [CACHE] * 3
        # a tiny autocommit read runs inline on the loop's own connection
        inline_before = db.stats().inline_reads
        assert await db.fetch_val("SELECT cache_size FROM pragma_cache_size()") == CACHE
        assert db.stats().inline_reads == inline_before + 1


def test_sqlite_sync_face_hook_on_every_connection(tmp_path: Path) -> None:
    seen: list[Any] = []
    url = f"sqlite:///{tmp_path / 'hook.db'}"
    with awaitdb.connect_sync(url, readers=2, on_connect=_sqlite_hook(seen)) as db:
        assert db.fetch_val("PRAGMA cache_size") == CACHE  # the writer
        results: list[int] = []

        def read() -> None:
            results.append(db.fetch_val("SELECT cache_size FROM pragma_cache_size()"))

        threads = [threading.Thread(target=read) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [CACHE, CACHE]
        assert len(seen) >= 2


def _bad(conn: Any) -> None:
    raise RuntimeError("no such codec")


def _awaitdb_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("awaitdb-")]


async def test_sqlite_hook_that_raises(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hook.db'}"
    with pytest.raises(awaitdb.CannotConnect, match="on_connect hook _bad failed.*no such codec"):
        await awaitdb.connect(url, on_connect=_bad)
    for _ in range(200):
        if not _awaitdb_threads():
            break
        await asyncio.sleep(0.01)
    assert _awaitdb_threads() == []
    with pytest.raises(awaitdb.CannotConnect, match="no such codec") as info:
        awaitdb.connect_sync(url, on_connect=_bad).fetch_val("SELECT 1")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_bad_hook_values(tmp_path: Path) -> None:
    with pytest.raises(awaitdb.InterfaceError, match="on_connect"):
        awaitdb.connect_sync(f"sqlite:///{tmp_path / 'x.db'}?on_connect=setup")
    with pytest.raises(awaitdb.InterfaceError, match="sync face"):
        awaitdb.connect_sync(
            f"sqlite:///{tmp_path / 'x.db'}", on_connect=_async_sqlite_hook
        ).fetch_val("SELECT 1")


# -- PostgreSQL ---------------------------------------------------------------------------------

MARK = "SELECT current_setting('awaitdb.mark', true)"


async def _pg_async_hook(conn: Any) -> None:
    await conn.execute("SET awaitdb.mark = 'hooked'")


def _pg_sync_hook(conn: Any) -> None:
    conn.execute("SET awaitdb.mark = 'hooked'")


def _server_connections(url: str, app: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (app,),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_postgres_async_hook_on_every_connection() -> None:
    url = pg_url_or_skip()
    reset_pg_schema(url)
    async with awaitdb.connect(
        with_app_name(url), min_size=3, max_size=3, on_connect=_pg_async_hook
    ) as db:
        gate = asyncio.Event()

        async def read() -> str:
            async with db.transaction() as tx:
                value: str = await tx.fetch_val(MARK)
                await gate.wait()
                return value

        tasks = [asyncio.create_task(read()) for _ in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        assert await asyncio.gather(*tasks) == ["hooked"] * 3
        assert db.stats().pool_size == 3


def test_postgres_sync_hook_on_every_connection() -> None:
    url = pg_url_or_skip()
    reset_pg_schema(url)
    with awaitdb.connect_sync(
        with_app_name(url), min_size=2, max_size=2, on_connect=_pg_sync_hook
    ) as db:
        with db.transaction() as tx:
            results = [tx.fetch_val(MARK)]

            def other() -> None:
                with db.transaction() as tx2:
                    results.append(tx2.fetch_val(MARK))

            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
        assert results == ["hooked", "hooked"]
        assert db.stats().pool_size == 2


async def test_postgres_hook_that_raises_leaves_no_connection() -> None:
    url = pg_url_or_skip()
    reset_pg_schema(url)
    app = "awaitdb-test-hookfail"
    with pytest.raises(awaitdb.CannotConnect, match="no such codec"):
        await awaitdb.connect(with_app_name(url, app), min_size=2, on_connect=_bad)
    with pytest.raises(awaitdb.CannotConnect, match="no such codec"):
        awaitdb.connect_sync(with_app_name(url, app), on_connect=_bad)
    for _ in range(100):
        if _server_connections(url, app) == 0:
            break
        await asyncio.sleep(0.02)
    assert _server_connections(url, app) == 0


def _open_files(path: Path) -> list[str]:
    out = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith(str(path)):
            out.append(target)
    return out


def test_sqlite_sync_hook_failing_later_closes_earlier_connections(tmp_path: Path) -> None:
    # review of issue 13: connections opened before the failing one stayed open until GC
    path = tmp_path / "hook.db"
    calls: list[Any] = []

    def hook(conn: Any) -> None:
        calls.append(conn)
        if len(calls) == 3:
            raise RuntimeError("third connection")

    with pytest.raises(awaitdb.CannotConnect, match="third connection") as info:
        awaitdb.connect_sync(f"sqlite:///{path}", on_connect=hook)
    assert len(calls) == 3
    assert _open_files(tmp_path) == []  # while the exception (and its traceback) is still alive
    del info


async def _pg_path_hook(conn: Any) -> None:
    await conn.execute("SET search_path = hooked_schema, public")


def _pg_path_hook_sync(conn: Any) -> None:
    conn.execute("SET search_path = hooked_schema, public")


async def test_postgres_async_hook_survives_the_pool_reset() -> None:
    # review of issue 13: RESET ALL after a session-changing statement undid the hook's SET
    url = pg_url_or_skip()
    reset_pg_schema(url)
    async with awaitdb.connect(url, max_size=1, on_connect=_pg_path_hook) as db:
        pid = await db.fetch_val("SELECT pg_backend_pid()")
        assert await db.fetch_val("SHOW search_path") == "hooked_schema, public"
        await db.execute("SET work_mem = '77MB'")
        assert await db.fetch_val("SHOW work_mem") != "77MB"  # the reset ran...
        assert await db.fetch_val("SHOW search_path") == "hooked_schema, public"  # ...then the hook
        assert await db.fetch_val("SELECT pg_backend_pid()") == pid


def test_postgres_sync_reset_keeps_the_connection_and_the_hook() -> None:
    # review of issue 13: the sync reset (several statements sent as one prepared statement)
    # always failed, so every SET replaced the connection; and the hook was not re-run.
    url = pg_url_or_skip()
    reset_pg_schema(url)
    with awaitdb.connect_sync(url, max_size=1, on_connect=_pg_path_hook_sync) as db:
        pid = db.fetch_val("SELECT pg_backend_pid()")
        db.execute("SET work_mem = '77MB'")
        assert db.fetch_val("SHOW work_mem") != "77MB"
        assert db.fetch_val("SHOW search_path") == "hooked_schema, public"
        assert db.fetch_val("SELECT pg_backend_pid()") == pid
        with db.connection() as conn:
            conn.execute("SET work_mem = '78MB'")
        assert db.fetch_val("SHOW work_mem") != "78MB"
        assert db.fetch_val("SELECT pg_backend_pid()") == pid
