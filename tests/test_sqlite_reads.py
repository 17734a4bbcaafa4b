"""SQLite reads (issues 8 and 9): what a database learns about a statement is its own and is
unlearned; a read waiting for the loop's inline budget waits for the loop, not for a thread.

Every assertion is about where reads ran (the ``inline_reads`` counter) or what they returned,
never about time.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Iterator

import pytest

import awaitdb
from awaitdb import _sql
from awaitdb._sql import READ, SqlInfo, analyze

BIG = 300_000
# Costly with a big :n (a scan of the whole table), cheap with a small one (a rowid range).
COSTLY_OR_CHEAP = "SELECT count(*) FROM big WHERE rowid <= :n AND x % 7 = 0"
WRITE_BEHIND_CTE = "WITH v(i) AS (VALUES (1), (2)) INSERT INTO t (id) SELECT i FROM v RETURNING id"


@pytest.fixture(autouse=True)
def _misread_write() -> Iterator[SqlInfo]:
    """``WRITE_BEHIND_CTE`` analysed as if its text read (the analysis now sees its INSERT):
    a write only a reader's refusal reveals, which each database learns for itself."""
    info = SqlInfo(WRITE_BEHIND_CTE, (), READ, (WRITE_BEHIND_CTE,), ())
    _sql._cache[WRITE_BEHIND_CTE] = info
    try:
        yield info
    finally:
        _sql._cache.pop(WRITE_BEHIND_CTE, None)


async def _big(db: awaitdb.Database) -> None:
    await db.execute("CREATE TABLE big (x INTEGER)")
    await db.execute(
        f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {BIG}) "
        "INSERT INTO big SELECT x FROM c"
    )


async def _inline(db: awaitdb.Database, sql: str, params: dict[str, int] | None) -> bool:
    """Run ``sql`` once; whether it ran inline on the loop (else a reader thread ran it)."""
    before = db.stats().inline_reads
    await db.fetch_val(sql, params or None)
    return db.stats().inline_reads > before


async def _send_off(db: awaitdb.Database) -> None:
    """Costly runs until the statement is kept off the loop (a cheap run then takes a thread)."""
    for _ in range(5):
        assert await db.fetch_val(COSTLY_OR_CHEAP, {"n": BIG}) == BIG // 7
        if not await _inline(db, COSTLY_OR_CHEAP, {"n": 1}):
            return
    pytest.fail("a costly read never left the loop")


async def _runs_until_inline(db: awaitdb.Database, limit: int) -> int:
    """Cheap runs until one runs inline again; how many went to a thread before it."""
    for threaded in range(limit):
        if await _inline(db, COSTLY_OR_CHEAP, {"n": 3}):
            return threaded
    pytest.fail(f"still off the loop after {limit} cheap runs")


async def test_a_costly_statement_comes_back_to_the_loop_after_a_back_off(
    sqlite_url: str,
) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await _big(db)
        await _send_off(db)
        first = await _runs_until_inline(db, 100)
        assert first >= 4  # a back-off: several cheap threaded runs before the loop again
        await _send_off(db)  # judged costly a second time: it waits longer to come back
        second = await _runs_until_inline(db, 200)
        assert second > first
        assert analyze(COSTLY_OR_CHEAP).inline_ok  # nothing written on the shared analysis


async def test_two_databases_do_not_share_what_they_learn(sqlite_url: str) -> None:
    other_url = sqlite_url.replace(".db", "-other.db")
    async with awaitdb.connect(sqlite_url) as db, awaitdb.connect(other_url) as other:
        for each in (db, other):
            await _big(each)
            await each.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        await _send_off(db)
        assert await _inline(other, COSTLY_OR_CHEAP, {"n": 3})  # the other file: still inline
        assert not await _inline(db, COSTLY_OR_CHEAP, {"n": 3})
        assert sorted(r["id"] for r in await db.fetch_all(WRITE_BEHIND_CTE)) == [1, 2]
        assert sorted(r["id"] for r in await other.fetch_all(WRITE_BEHIND_CTE)) == [1, 2]
        assert not analyze(WRITE_BEHIND_CTE).is_write  # learned per database, not here


def test_sync_face_learns_writes_per_database(sqlite_url: str) -> None:
    other_url = sqlite_url.replace(".db", "-other.db")
    with awaitdb.connect_sync(sqlite_url) as db, awaitdb.connect_sync(other_url) as other:
        for each in (db, other):
            each.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            assert sorted(r["id"] for r in each.fetch_all(WRITE_BEHIND_CTE)) == [1, 2]
            each.execute("DELETE FROM t")
            assert sorted(r["id"] for r in each.fetch_all(WRITE_BEHIND_CTE)) == [1, 2]
        assert not analyze(WRITE_BEHIND_CTE).is_write


async def test_concurrent_reads_wait_for_the_loop_not_for_a_thread(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        await db.execute_many(
            "INSERT INTO t (id, v) VALUES (:id, :v)", [{"id": i, "v": f"v{i}"} for i in range(100)]
        )
        before = db.stats().inline_reads

        async def reader(k: int) -> None:
            for i in range(60):
                row = await db.fetch_one("SELECT v FROM t WHERE id = :id", {"id": (k + i) % 100})
                assert row is not None and row["v"] == f"v{(k + i) % 100}"

        await asyncio.gather(*(reader(k) for k in range(50)))
        assert db.stats().inline_reads - before == 50 * 60  # every read ran on the loop


async def test_a_busy_neighbour_thread_teaches_nothing(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        await db.execute("INSERT INTO t (id) VALUES (1)")
        stop = threading.Event()

        def busy() -> None:  # a CPU-bound library thread: it holds the GIL whenever it can
            while not stop.is_set():
                sum(i * i for i in range(1000))

        thread = threading.Thread(target=busy)
        thread.start()
        try:
            for _ in range(300):
                assert await db.fetch_val("SELECT id FROM t WHERE id = 1") == 1
        finally:
            stop.set()
            thread.join()
        for _ in range(3):  # a suspicion is settled by one measured run
            await db.fetch_val("SELECT id FROM t WHERE id = 1")
        before = db.stats().inline_reads
        for _ in range(20):
            assert await db.fetch_val("SELECT id FROM t WHERE id = 1") == 1
        assert db.stats().inline_reads - before == 20


async def test_cancelled_waiting_reads_leave_the_others_and_close_alone(sqlite_url: str) -> None:
    db = await awaitdb.connect(sqlite_url)
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    await db.execute("INSERT INTO t (id) VALUES (1)")
    done: list[int] = []

    async def reader(k: int) -> None:
        for _ in range(200):
            assert await db.fetch_val("SELECT id FROM t") == 1
        done.append(k)

    tasks = [asyncio.create_task(reader(k)) for k in range(40)]
    for _ in range(5):
        await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
    assert set(done) >= set(range(1, 40, 2))  # the others all finished
    assert any(isinstance(r, asyncio.CancelledError) for r in results)
    await db.close()
    assert db.stats().pool_in_use == 0


async def test_work_sqlite_cannot_interrupt_leaves_the_loop_once_measured(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await db.execute("CREATE TABLE big (x INTEGER, pad TEXT)")
        await db.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
            "INSERT INTO big SELECT x, 'abcdefghij' FROM c"
        )
        # count(*) of a table is one VM step: the progress handler never runs. A long run makes
        # the statement a suspect, the next run's own CPU time convicts it, then threads run it.
        where = [await _inline(db, "SELECT count(*) FROM big", {}) for _ in range(6)]
        assert sum(where[:2]) >= 1 and not any(where[2:])


def _replace_file(path: str) -> None:
    other = path + ".other"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    os.replace(other, path)


async def test_a_learned_write_is_refused_once_the_file_is_replaced(sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    async with awaitdb.connect(sqlite_url) as db:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        assert len(await db.fetch_all(WRITE_BEHIND_CTE)) == 2  # learned: it writes
        await db.execute("DELETE FROM t")
        _replace_file(path)
        with pytest.raises(awaitdb.OperationalError, match="deleted or replaced"):
            await db.fetch_all(WRITE_BEHIND_CTE)


def test_a_learned_write_is_refused_once_the_file_is_replaced_sync(sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    with awaitdb.connect_sync(sqlite_url) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        assert len(db.fetch_all(WRITE_BEHIND_CTE)) == 2  # learned: it writes
        db.execute("DELETE FROM t")
        _replace_file(path)
        with pytest.raises(awaitdb.OperationalError, match="deleted or replaced"):
            db.fetch_all(WRITE_BEHIND_CTE)


async def test_iterate_moves_a_write_a_reader_refused_to_the_writer(
    sqlite_url: str, _misread_write: SqlInfo
) -> None:
    other_url = sqlite_url.replace(".db", "-other.db")
    async with awaitdb.connect(sqlite_url) as db, awaitdb.connect(other_url) as other:
        for each in (db, other):
            await each.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        assert not db._backend.writes(_misread_write)
        # A reader refuses it: nothing ran, the stream starts again on the writer.
        assert sorted([r["id"] async for r in db.iterate(WRITE_BEHIND_CTE)]) == [1, 2]
        assert db._backend.writes(_misread_write)  # learned, by this database only
        assert not other._backend.writes(_misread_write)
        await db.execute("DELETE FROM t")
        assert sorted([r["id"] async for r in db.iterate(WRITE_BEHIND_CTE)]) == [1, 2]
        assert await db.fetch_val("SELECT count(*) FROM t") == 2
        assert db.stats().pool_in_use == 0


def test_iterate_moves_a_write_a_reader_refused_to_the_writer_sync(
    sqlite_url: str, _misread_write: SqlInfo
) -> None:
    other_url = sqlite_url.replace(".db", "-other.db")
    with awaitdb.connect_sync(sqlite_url) as db, awaitdb.connect_sync(other_url) as other:
        for each in (db, other):
            each.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        assert not db._backend.writes(_misread_write)
        assert sorted([r["id"] for r in db.iterate(WRITE_BEHIND_CTE)]) == [1, 2]
        assert db._backend.writes(_misread_write)
        assert not other._backend.writes(_misread_write)
        db.execute("DELETE FROM t")
        assert sorted([r["id"] for r in db.iterate(WRITE_BEHIND_CTE)]) == [1, 2]
        assert db.fetch_val("SELECT count(*) FROM t") == 2
        assert db.stats().pool_in_use == 0
