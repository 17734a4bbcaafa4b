"""SQLite defects of issue 7: each test is named for its defect and failed before the fix.

Real SQLite files in temporary folders, both faces where the defect applies to both.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import SQLITE

import awaitdb
from awaitdb._sql import analyze

FACES = ["async", "sync"]


@pytest.fixture(params=FACES)
def face(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Both:
    """One SQLite database driven through either face with the same (blocking) calls."""

    def __init__(self, face: str, url: str, **options: Any) -> None:
        self.face = face
        if face == "async":
            self._loop = asyncio.new_event_loop()
            self.db: Any = self._loop.run_until_complete(awaitdb.connect(url, **options))
        else:
            self.db = awaitdb.connect_sync(url, **options)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.db, name)
        if self.face == "sync" or not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if asyncio.iscoroutine(result):
                return self._loop.run_until_complete(result)
            return result

        return call

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """The block's handle (``tx.execute(...)``) with blocking calls on both faces."""
        if self.face == "sync":
            with self.db.transaction() as tx:
                yield tx
            return
        block = self.db.transaction()
        context = contextvars.copy_context()  # enter and exit the block in one context

        def run(coro: Any) -> Any:
            return self._loop.run_until_complete(self._loop.create_task(coro, context=context))

        tx = run(block.__aenter__())
        proxy = Both.__new__(Both)
        proxy.face, proxy._loop, proxy.db = "async", self._loop, tx
        try:
            yield proxy
        except BaseException as exc:
            if not run(block.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            run(block.__aexit__(None, None, None))

    def shut(self) -> None:
        if self.face == "async":
            self._loop.run_until_complete(self.db.close())
            self._loop.close()
        else:
            self.db.close()


@pytest.fixture
def both(face: str, sqlite_url: str) -> Iterator[Any]:
    opened: list[Both] = []

    def open_(**options: Any) -> Both:
        db = Both(face, sqlite_url, **options)
        opened.append(db)
        return db

    yield open_
    for db in opened:
        if not db.db.closed:
            db.shut()


# -- 8: values SQLite would change --------------------------------------------------------------


def test_defect08_sqlite_values_round_trip_or_are_refused(both: Any) -> None:
    db = both()
    db.execute("CREATE TABLE v (r REAL, n NUMERIC, b BLOB)")
    for bad in (float("nan"), -0.0):
        with pytest.raises(awaitdb.DataError, match=":r"):
            db.execute("INSERT INTO v (r) VALUES (:r)", {"r": bad})
    for bad_decimal in (Decimal("1E+999999"), Decimal("1E-999999"), Decimal("1.2345678901234567")):
        with pytest.raises(awaitdb.DataError, match=":n"):
            db.execute("INSERT INTO v (n) VALUES (:n)", {"n": bad_decimal})
    with pytest.raises(awaitdb.DataError, match=":r"):
        db.execute_many("INSERT INTO v (r) VALUES (:r)", [{"r": 1.0}, {"r": float("nan")}])
    assert db.fetch_val("SELECT count(*) FROM v") == 0
    good = [
        (float("inf"), Decimal("1.25")),
        (1e308, Decimal("123456789012345678")),
        (0.0, Decimal("-7.5E-300")),
    ]
    for r, n in good:
        db.execute("INSERT INTO v (r, n) VALUES (:r, :n)", {"r": r, "n": n})
    rows = db.fetch_all("SELECT r, n FROM v ORDER BY rowid")
    assert [(row["r"], row["n"]) for row in rows] == good


# -- 14: errors that name the parameter, disk full with a sqlstate ------------------------------


def test_defect14_sqlite_bind_errors_name_the_parameter(both: Any) -> None:
    db = both()
    db.execute("CREATE TABLE t (x INTEGER, s TEXT)")
    with pytest.raises(awaitdb.DataError, match=":big") as info:
        db.execute("INSERT INTO t (x) VALUES (:big)", {"big": 2**64})
    assert info.value.sqlstate == "22003"
    with pytest.raises(awaitdb.DataError, match=":big"):
        db.fetch_val("SELECT :big + 1", {"big": -(2**63) - 1})
    with pytest.raises(awaitdb.DataError, match=":s") as info:
        db.execute("INSERT INTO t (s) VALUES (:s)", {"s": "ok\udc80"})
    assert info.value.sqlstate == "22021"
    with pytest.raises(awaitdb.DataError, match=":s"):
        db.execute_many("INSERT INTO t (s) VALUES (:s)", [{"s": "a"}, {"s": "\ud800"}])
    assert db.fetch_val("SELECT count(*) FROM t") == 0


def test_defect14_sqlite_bind_errors_name_a_list_parameter(both: Any) -> None:
    # ``IN :ids`` binds by position on SQLite: the error still names the list, short or long.
    db = both()
    db.execute("CREATE TABLE t (x INTEGER)")
    for ids in ([1, 2**70], [*range(2_000), 2**70]):
        with pytest.raises(awaitdb.DataError, match=":ids") as info:
            db.fetch_all("SELECT x FROM t WHERE x IN :ids", {"ids": ids})
        assert info.value.sqlstate == "22003"
    with pytest.raises(awaitdb.DataError, match=":ids"):
        db.fetch_all("SELECT x FROM t WHERE x IN :ids", {"ids": ["a", "\ud800"]})


def _fill_until_full(db: Any) -> list[awaitdb.Error]:
    errors: list[awaitdb.Error] = []
    db.execute("CREATE TABLE fill (data BLOB)")
    with db.transaction() as tx:
        tx.execute("PRAGMA max_page_count = 40")  # the writer's connection: SQLITE_FULL at once
    blob = b"x" * 50_000
    for _ in range(6):
        try:
            db.execute("INSERT INTO fill (data) VALUES (:d)", {"d": blob})
        except awaitdb.Error as exc:
            errors.append(exc)
    try:
        db.execute_many("INSERT INTO fill (data) VALUES (:d)", [{"d": blob}] * 4)
    except awaitdb.Error as exc:
        errors.append(exc)
    for fetch in (db.fetch_all, db.fetch_one, db.fetch_val):
        try:  # the statement fails after it started returning rows
            fetch(
                "INSERT INTO fill (data) SELECT :d FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL "
                "SELECT 3 UNION ALL SELECT 4) RETURNING rowid",
                {"d": blob},
            )
        except awaitdb.Error as exc:
            errors.append(exc)
    try:
        with db.transaction() as tx:
            for _ in range(4):
                tx.execute("INSERT INTO fill (data) VALUES (:d)", {"d": blob})
    except awaitdb.Error as exc:
        errors.append(exc)
    return errors


def test_defect14_sqlite_disk_full_has_a_sqlstate(both: Any) -> None:
    db = both()
    errors = _fill_until_full(db)
    assert len(errors) >= 3
    for error in errors:
        assert isinstance(error, awaitdb.OperationalError), error
        assert error.sqlstate == "53100", error
        assert "full" in str(error)


# -- 13: descriptors released by close() after disk-full errors ---------------------------------


def _open_fds(path: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            continue
        if target.startswith(path):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_defect13_close_releases_descriptors_after_disk_full(both: Any, sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    gc.collect()
    gc.disable()  # the point: no garbage collection pass may be needed
    try:
        db = both()
        errors = _fill_until_full(db)
        # A COMMIT that fails (as on a real full disk) while a cursor is open in the frame.
        db.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE c (pid INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)")
        for _ in range(2):
            try:
                db.execute_many("INSERT INTO c (pid) VALUES (:x)", [{"x": 1}, {"x": 2}])
            except awaitdb.Error as exc:
                errors.append(exc)
        assert len(errors) >= 5
        assert _open_fds(path)
        db.shut()
        assert _open_fds(path) == [], "descriptors still open after close()"
    finally:
        gc.enable()
    del errors


# -- 9: the file deleted or replaced while open ------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_defect09_writes_fail_when_the_file_is_deleted_or_replaced(
    both: Any, sqlite_url: str, tmp_path: Path, how: str
) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    db = both()
    db.execute("CREATE TABLE t (x INTEGER)")
    db.execute("INSERT INTO t (x) VALUES (1)")
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    else:
        other = tmp_path / "other.db"
        conn = sqlite3.connect(other)
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.commit()
        conn.close()
        shutil.copy(other, path + ".new")
        os.replace(path + ".new", path)
    for x in range(5):
        with pytest.raises(awaitdb.OperationalError, match="deleted or replaced") as info:
            db.execute("INSERT INTO t (x) VALUES (:x)", {"x": x})
        assert info.value.sqlstate == "58P01"
    with pytest.raises(awaitdb.OperationalError, match="deleted or replaced"):
        db.execute_many("INSERT INTO t (x) VALUES (:x)", [{"x": 1}])
    with pytest.raises(awaitdb.OperationalError, match="deleted or replaced"):
        with db.transaction() as tx:
            tx.execute("INSERT INTO t (x) VALUES (2)")


# -- 6: a cancelled iterate() is interrupted; close() keeps its deadline ------------------------


async def test_defect06_cancelled_iterate_stops_reader(sqlite_url: str) -> None:
    db = await awaitdb.connect(sqlite_url, readers=1, inline_reads=False)
    try:

        async def stream() -> None:
            async for _ in db.iterate(SQLITE.slow_sql):
                pass

        task = asyncio.create_task(stream())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The one reader is free again: a trivial read gets it well within its timeout.
        assert await db.fetch_val("SELECT 1", timeout=3) == 1
        assert await db.fetch_all("SELECT 1 AS x", timeout=3) == [(1,)]
    finally:
        await db.close()


def _hold_write_lock(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_defect06_async_close_deadline_holds_while_a_write_waits_for_a_lock(
    sqlite_url: str,
) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    db = await awaitdb.connect(sqlite_url, busy_timeout=20)
    await db.execute("CREATE TABLE t (x INTEGER)")
    other = _hold_write_lock(path)
    try:
        write = asyncio.create_task(db.execute("INSERT INTO t (x) VALUES (1)"))
        await asyncio.sleep(0.3)
        await asyncio.wait_for(db.close(timeout=0.5), timeout=5)
        with pytest.raises(awaitdb.Error):
            await write
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_defect06_sync_close_deadline_holds_while_a_write_waits_for_a_lock(
    sqlite_url: str,
) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    db = awaitdb.connect_sync(sqlite_url, busy_timeout=20)
    db.execute("CREATE TABLE t (x INTEGER)")
    other = _hold_write_lock(path)
    outcome: list[BaseException] = []

    def write() -> None:
        try:
            db.execute("INSERT INTO t (x) VALUES (1)")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=write)
    try:
        thread.start()
        threading.Event().wait(0.3)
        closer = threading.Thread(target=db.close, kwargs={"timeout": 0.5})
        closer.start()
        closer.join(5)
        assert not closer.is_alive(), "close(timeout=0.5) did not return"
        thread.join(5)
        assert not thread.is_alive()
        assert outcome and isinstance(outcome[0], awaitdb.Error)
    finally:
        other.execute("ROLLBACK")
        other.close()
        thread.join(25)


# -- 15 and 16: big reads and big statements run off the loop -----------------------------------


async def _runs_on_loop(db: awaitdb.Database, call: Any) -> bool:
    """Whether ``call`` ran on the loop thread: inline reads are counted by ``stats()``."""
    before = db.stats().inline_reads
    await call()
    return bool(db.stats().inline_reads > before)


async def test_defect15_big_reads_leave_the_loop(sqlite_url: str) -> None:
    db = await awaitdb.connect(sqlite_url)
    try:
        await db.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, data BLOB, body JSON)")
        await db.execute("INSERT INTO b (id, data, body) VALUES (1, :d, '[1]')", {"d": b"x" * 5})
        await db.execute(
            "INSERT INTO b (id, data, body) VALUES (2, :d, :j)",
            {"d": b"y" * 5_000_000, "j": "[" + ",".join(["12345"] * 400_000) + "]"},
        )
        blob = "SELECT data FROM b WHERE id = :id"
        doc = "SELECT body FROM b WHERE id = :id"
        # Small results stay on the loop.
        assert await _runs_on_loop(db, lambda: db.fetch_val(blob, {"id": 1}))
        # A big value is never read on the loop, not even the first time.
        for _ in range(3):
            assert not await _runs_on_loop(db, lambda: db.fetch_val(blob, {"id": 2}))
            assert not await _runs_on_loop(db, lambda: db.fetch_val(doc, {"id": 2}))
        assert len(await db.fetch_val(blob, {"id": 2})) == 5_000_000
        assert len(await db.fetch_val(doc, {"id": 2})) == 400_000
        # The decision is not for good: cheap results bring the statement back to the loop.
        for _ in range(50):
            if await _runs_on_loop(db, lambda: db.fetch_val(blob, {"id": 1})):
                break
        else:
            pytest.fail("a statement sent to threads once never came back to the loop")
    finally:
        await db.close()


async def test_defect15_costly_small_reads_move_to_threads(sqlite_url: str) -> None:
    db = await awaitdb.connect(sqlite_url)
    try:
        await db.execute("CREATE TABLE n (x INTEGER)")
        await db.execute(
            "INSERT INTO n (x) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 1500000) SELECT x FROM c"
        )
        count = "SELECT count(*) FROM n"
        inline = [await _runs_on_loop(db, lambda: db.fetch_val(count)) for _ in range(6)]
        assert inline[-3:] == [False, False, False], inline
    finally:
        await db.close()


async def test_defect16_wide_statements_and_big_batches_leave_the_loop(sqlite_url: str) -> None:
    db = await awaitdb.connect(sqlite_url)
    try:
        await db.execute("CREATE TABLE w (a INTEGER, b TEXT)")
        marks = ", ".join(f":p{i}" for i in range(5_000))
        wide_sql = f"SELECT count(*) FROM w WHERE a IN ({marks})"
        wide = {f"p{i}": i for i in range(5_000)}
        for _ in range(3):
            assert not await _runs_on_loop(db, lambda: db.fetch_val(wide_sql, wide))
        # execute_many checks its rows' parameters in a thread once the batch is big.
        loop_thread = threading.get_ident()
        checked_in: set[int] = set()
        info = analyze("INSERT INTO w (a, b) VALUES (:a, :b)")

        class Row(dict[str, Any]):
            def keys(self) -> Any:
                checked_in.add(threading.get_ident())
                return super().keys()

        rows = [Row(a=i, b="r") for i in range(20_000)]
        assert await db.execute_many(info.sql, rows) == 20_000
        assert checked_in and loop_thread not in checked_in
    finally:
        await db.close()


def test_lock_waits_in_slices_still_last_busy_timeout(both: Any, sqlite_url: str) -> None:
    """The 0.1 s slices of defect 6's fix keep ``busy_timeout``'s meaning both ways."""
    path = sqlite_url.removeprefix("sqlite:///")
    db = both(busy_timeout=5)
    db.execute("CREATE TABLE t (x INTEGER)")
    other = _hold_write_lock(path)
    release = threading.Timer(0.4, lambda: other.execute("ROLLBACK"))
    release.start()
    try:
        assert db.execute("INSERT INTO t (x) VALUES (1)") == 1  # waited past several slices
        other.execute("BEGIN IMMEDIATE")
        quick = both(busy_timeout=0.3)
        with pytest.raises(awaitdb.DatabaseBusy):
            quick.execute("INSERT INTO t (x) VALUES (2)")
        with pytest.raises(awaitdb.DatabaseBusy):
            with quick.transaction() as tx:
                tx.execute("INSERT INTO t (x) VALUES (3)")
    finally:
        release.join()
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
    assert db.fetch_val("SELECT count(*) FROM t") == 1
