"""Defects of issue 7 still open after its merge (found by the independent re-run).

Each test is named for its defect and failed before the fix. Real SQLite files and the real
PostgreSQL server; no test asserts timing.
"""

from __future__ import annotations

import _thread
import asyncio
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import awaitdb

LONG = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000000) "
    "SELECT count(*) FROM c"
)
LONG_ROWS = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000000) "
    "SELECT x FROM c WHERE x % 100000000 = 0"
)


@contextmanager
def ctrl_c_after(seconds: float) -> Iterator[None]:
    """Deliver SIGINT to this (main) thread after ``seconds``, as a Ctrl-C would."""
    timer = threading.Timer(seconds, signal.raise_signal, (signal.SIGINT,))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _deep(depth: int = 3000) -> dict[str, Any]:
    root: dict[str, Any] = {}
    cur = root
    for _ in range(depth):
        cur["a"] = cur = {}
    return root


# -- 1: Ctrl-C under a timeout on the sync SQLite face ---------------------------------------


def test_verify7_ctrl_c_under_a_timeout_stays_keyboard_interrupt_sync_sqlite(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    calls: list[Callable[[awaitdb.SyncDatabase], Any]] = [
        lambda db: db.fetch_val(LONG, timeout=30),
        lambda db: sum(1 for _ in db.iterate(LONG_ROWS, timeout=30)),
        _in_transaction,
    ]
    with awaitdb.connect_sync(url) as db:
        db.execute("CREATE TABLE t (id INTEGER)")
        for call in calls:
            with ctrl_c_after(0.3), pytest.raises(KeyboardInterrupt):
                call(db)
            assert db.fetch_val("SELECT 1", timeout=5) == 1  # the connection still works
            assert db.stats().pool_in_use == 0
        with pytest.raises(awaitdb.QueryTimeout):  # a real timeout is still a timeout
            db.fetch_val(LONG, timeout=0.2)
    with awaitdb.connect_sync(url, statement_timeout=30) as db:
        with ctrl_c_after(0.3), pytest.raises(KeyboardInterrupt):
            db.fetch_val(LONG)
        assert db.fetch_val("SELECT count(*) FROM t") == 0


def _in_transaction(db: awaitdb.SyncDatabase) -> None:
    with db.transaction(timeout=30) as tx:
        tx.execute("INSERT INTO t (id) VALUES (1)")
        tx.fetch_val(LONG)


# -- 2: deep JSON parameter on async SQLite reads --------------------------------------------


async def test_verify7_deep_json_parameter_is_a_named_error_async_sqlite(tmp_path: Path) -> None:
    deep = _deep()
    for inline in (True, False):
        url = f"sqlite:///{tmp_path / 'j.db'}"
        async with awaitdb.connect(url, inline_reads=inline) as db:
            await db.execute("CREATE TABLE IF NOT EXISTS j (v TEXT)")
            for sql in ("SELECT :x", "SELECT :x FROM (SELECT 1)", "INSERT INTO j VALUES (:x)"):
                with pytest.raises((awaitdb.InterfaceError, awaitdb.DataError)) as info:
                    await db.fetch_val(sql, {"x": deep})
                assert ":x" in str(info.value)
                with pytest.raises((awaitdb.InterfaceError, awaitdb.DataError)) as info:
                    await db.fetch_all("SELECT v FROM j WHERE v IN :ids", {"ids": [deep]})
                assert "ids" in str(info.value)
            assert await db.fetch_val("SELECT :x", {"x": {"a": 1}}) == '{"a":1}'
    with awaitdb.connect_sync(f"sqlite:///{tmp_path / 'j.db'}") as sdb:
        with pytest.raises((awaitdb.InterfaceError, awaitdb.DataError)) as info:
            sdb.fetch_val("SELECT :x", {"x": deep})
        assert ":x" in str(info.value)
    await asyncio.sleep(0)


# -- 3: the password in a chained driver error -----------------------------------------------

SECRET = "S3cretPW"
LEAKY_URLS = [
    f"postgresql://u:{SECRET}%zz@127.0.0.1:5432/db",
    f"postgresql://u:{SECRET}@x@127.0.0.1:1/db?connect_timeout=1",
    f"postgresql://u@127.0.0.1:1/db?password={SECRET}&connect_timeout=1",
]


def _formatted(exc: BaseException) -> str:
    """The printed traceback, and every exception chained to it (as error trackers walk it)."""
    text = "".join(traceback.format_exception(exc))
    seen: BaseException | None = exc
    while seen is not None:
        text += f"\n{type(seen).__name__}: {seen}"
        seen = seen.__cause__ or seen.__context__
    return text


@pytest.mark.parametrize("url", LEAKY_URLS)
def test_verify7_password_never_in_the_traceback_sync_pg(url: str) -> None:
    with pytest.raises(awaitdb.CannotConnect) as info:
        awaitdb.connect_sync(url, acquire_timeout=1)
    text = _formatted(info.value)
    assert SECRET not in text, text
    assert "***" in text


@pytest.mark.parametrize("url", LEAKY_URLS)
async def test_verify7_password_never_in_the_traceback_async_pg(url: str) -> None:
    with pytest.raises(awaitdb.CannotConnect) as info:
        await awaitdb.connect(url, acquire_timeout=1)
    text = _formatted(info.value)
    assert SECRET not in text, text
    assert "***" in text


@pytest.mark.parametrize("url", LEAKY_URLS[:2])
def test_verify7_password_never_printed_by_cli_backup(url: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "awaitdb.cli", "backup", str(tmp_path / "b"), "--url", url],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert SECRET not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# -- 4: sync SQLite close(timeout=) while another thread steps a statement -------------------


def test_verify7_close_with_timeout_while_another_thread_iterates_sync_sqlite(
    tmp_path: Path,
) -> None:
    for run in range(4):
        db = awaitdb.connect_sync(f"sqlite:///{tmp_path / f'm{run}.db'}")
        started = threading.Event()
        errors: list[BaseException] = []

        def reader(
            db: awaitdb.SyncDatabase = db,
            started: threading.Event = started,
            errors: list[BaseException] = errors,
        ) -> None:
            started.set()
            try:
                for _ in db.iterate(LONG_ROWS):
                    pass
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            assert started.wait(30)
            time.sleep(0.3)  # the reader is inside a long step of its statement
            db.close(timeout=0.2)
        finally:
            thread.join(60)
        assert not thread.is_alive()
        assert len(errors) == 1, errors
        error = errors[0]
        assert isinstance(error, awaitdb.InterfaceError | awaitdb.QueryTimeout), repr(error)
        assert "closed" in str(error), repr(error)
        assert not isinstance(error.__cause__, MemoryError), repr(error.__cause__)


# -- 1b: Ctrl-C with no timeout stops a sync SQLite statement at once ------------------------

ENDLESS_SCRIPT = """
import signal, sys, threading, awaitdb
db = awaitdb.connect_sync(sys.argv[1])
endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
for call in (lambda: db.fetch_val(endless), lambda: list(db.iterate(endless))):
    threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,)).start()
    try:
        call()
    except KeyboardInterrupt:
        print("KeyboardInterrupt", db.fetch_val("SELECT 1"), flush=True)
db.close()
"""


def test_verify7_ctrl_c_without_a_timeout_stops_the_statement_sync_sqlite(tmp_path: Path) -> None:
    # A statement that never ends: before the fix Ctrl-C waited for its end (the child hangs
    # and is killed by ``timeout``, failing the test).
    url = f"sqlite:///{tmp_path / 'e.db'}"
    proc = subprocess.run(
        [sys.executable, "-c", ENDLESS_SCRIPT, url],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.split() == ["KeyboardInterrupt", "1"] * 2, proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr


# -- 1c: Ctrl-C during an async SQLite read run inline on the loop thread --------------------


def test_verify7_ctrl_c_during_an_inline_read_is_not_lost_async_sqlite(tmp_path: Path) -> None:
    # ``kick()`` trips SIGINT from inside the statement (``interrupt_main`` only sets the flag):
    # Python's handler then runs in the inline read's progress handler on the loop thread.
    def hook(conn: Any) -> None:
        conn.create_function("kick", 0, _thread.interrupt_main)

    sql = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) "
        "SELECT count(CASE WHEN x = 1 THEN kick() END) FROM c"
    )
    seen: list[str] = []

    async def main() -> None:
        async with awaitdb.connect(f"sqlite:///{tmp_path / 'i.db'}", on_connect=hook) as db:
            for _ in range(2):
                try:
                    await db.fetch_val(sql)
                except KeyboardInterrupt:
                    seen.append("KeyboardInterrupt")
                assert await db.fetch_val("SELECT 1") == 1

    loop = asyncio.new_event_loop()  # no asyncio.Runner: the default SIGINT handler raises
    try:
        loop.run_until_complete(main())
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped the read that was running")
    finally:
        loop.close()
    assert seen == ["KeyboardInterrupt"] * 2
