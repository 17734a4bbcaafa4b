"""Sync code beside an async application on one database: ``db.run_sync`` and ``db.sync_view``.

The sync caller uses the async database's pool and writer: its writes interleave with async
writes without "database is locked" and without a second writer, and its transactions are
real transactions of the async database.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import pytest

import awaitdb


def _writers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "awaitdb-writer")


@dataclass
class Row:
    id: int
    who: str


def legacy_writes(db: Any, n: int) -> int:
    """Legacy sync code: plain calls and transactions, as it was written for connect_sync."""
    for i in range(n):
        if i % 5 == 0:
            with db.transaction() as tx:
                tx.execute("INSERT INTO log (who, i) VALUES ('sync-tx', :i)", {"i": i})
                tx.execute("INSERT INTO log (who, i) VALUES ('sync-tx', :i)", {"i": -i})
        else:
            db.execute("INSERT INTO log (who, i) VALUES ('sync', :i)", {"i": i})
    return int(db.fetch_val("SELECT count(*) FROM log WHERE who LIKE 'sync%'"))


async def test_sync_and_async_writes_interleave_on_one_writer(aconnect: Any) -> None:
    db = await aconnect()
    await db.execute("CREATE TABLE log (who TEXT NOT NULL, i INTEGER)")
    writers = _writers()

    async def async_writes() -> None:
        for i in range(100):
            await db.execute("INSERT INTO log (who, i) VALUES ('async', :i)", {"i": i})
            if i % 10 == 0:
                await asyncio.sleep(0)

    sync_count, _ = await asyncio.gather(db.run_sync(legacy_writes, 100), async_writes())
    assert sync_count == 80 + 2 * 20
    assert await db.fetch_val("SELECT count(*) FROM log WHERE who = 'async'") == 100
    assert _writers() == writers  # no second writer was opened
    assert db.stats().queries >= 100 + 120  # the view's statements ran through this database
    rows = await db.run_sync(lambda v: v.fetch_all("SELECT i AS id, who FROM log LIMIT 2", as_=Row))
    assert [type(r) for r in rows] == [Row, Row]
    streamed = await db.run_sync(
        lambda v: [
            r["i"]
            for r in v.iterate("SELECT i FROM log WHERE who = 'async' ORDER BY i", batch_size=7)
        ]
    )
    assert streamed == list(range(100))


async def test_view_transactions_are_real_transactions(aconnect: Any) -> None:
    db = await aconnect()
    await db.execute("CREATE TABLE t (x INTEGER)")

    def fails(view: Any) -> None:
        with view.transaction() as tx:
            tx.execute("INSERT INTO t (x) VALUES (1)")
            with tx.transaction():  # a savepoint
                tx.execute("INSERT INTO t (x) VALUES (2)")
            raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        await db.run_sync(fails)
    assert await db.fetch_val("SELECT count(*) FROM t") == 0  # rolled back

    inside = threading.Event()
    release = threading.Event()

    def holds(view: Any) -> int:
        with view.transaction() as tx:
            tx.execute("INSERT INTO t (x) VALUES (10)")
            inside.set()
            release.wait(5)
            return int(tx.fetch_val("SELECT count(*) FROM t"))

    held = asyncio.ensure_future(db.run_sync(holds))
    while not inside.is_set():
        await asyncio.sleep(0.005)
    # not committed yet: an async reader does not see the row
    assert await db.fetch_val("SELECT count(*) FROM t") == 0
    release.set()
    assert await held == 1
    assert await db.fetch_val("SELECT count(*) FROM t") == 1

    # inside an async transaction, run_sync joins it
    async with db.transaction():
        await db.execute("INSERT INTO t (x) VALUES (20)")
        seen = await db.run_sync(lambda v: v.fetch_val("SELECT count(*) FROM t WHERE x = 20"))
        assert seen == 1
        await db.run_sync(lambda v: v.execute("INSERT INTO t (x) VALUES (21)"))
        with pytest.raises(ValueError):
            await db.run_sync(fails)  # its block is a savepoint of this transaction
    assert await db.fetch_val("SELECT count(*) FROM t WHERE x >= 20") == 2
    assert await db.fetch_val("SELECT count(*) FROM t WHERE x < 10") == 0


async def test_sync_view_from_a_plain_thread_and_misuse(aconnect: Any) -> None:
    db = await aconnect()
    await db.execute("CREATE TABLE t (x INTEGER)")
    view = db.sync_view()
    with pytest.raises(awaitdb.InterfaceError, match="event loop's thread"):
        view.fetch_val("SELECT 1")
    results: list[Any] = []

    def worker() -> None:
        results.append(view.run_in_transaction(lambda tx: tx.execute("INSERT INTO t VALUES (1)")))

    thread = threading.Thread(target=worker)
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.005)
    assert results == [1]
    assert await db.fetch_val("SELECT count(*) FROM t") == 1

    def pinned(v: Any) -> int:
        with v.connection() as conn:
            conn.execute("INSERT INTO t VALUES (2)")
            return int(conn.fetch_val("SELECT count(*) FROM t"))

    assert await db.run_sync(pinned) == 2
    assert (await db.run_sync(lambda v: v.stats())).queries == db.stats().queries


def _in_thread(fn: Any) -> list[Any]:
    """Run ``fn`` in a thread that must finish within 10 s (a hang fails the test)."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the SyncView call hung"
    return out


def test_view_after_its_loop_stopped_or_closed_raises(db_url: str) -> None:
    # review of issue 13: a view used after its loop stopped blocked forever; after the loop
    # closed, raw RuntimeError / concurrent.futures.CancelledError escaped.
    loop = asyncio.new_event_loop()
    try:

        async def start() -> tuple[awaitdb.Database, awaitdb.SyncView]:
            db = await awaitdb.connect(db_url)
            return db, db.sync_view()

        db, view = loop.run_until_complete(start())
        [stopped] = _in_thread(lambda: view.fetch_val("SELECT 1"))  # the loop is not running
        assert isinstance(stopped, awaitdb.InterfaceError), repr(stopped)
        assert "event loop" in str(stopped)
        loop.run_until_complete(db.close())
    finally:
        loop.close()
    [closed] = _in_thread(lambda: view.fetch_val("SELECT 1"))
    assert isinstance(closed, awaitdb.InterfaceError), repr(closed)


@pytest.mark.parametrize("loop_closed", [False, True])
def test_view_transaction_outliving_its_loop_raises(db_url: str, loop_closed: bool) -> None:
    errors: list[BaseException] = []
    entered, leave = threading.Event(), threading.Event()

    def legacy(view: Any) -> None:
        try:
            with view.transaction() as tx:
                tx.fetch_val("SELECT 1")
                entered.set()
                leave.wait(10)  # the application's loop stops meanwhile
        except BaseException as exc:
            errors.append(exc)

    async def main() -> tuple[awaitdb.Database, threading.Thread]:
        db = await awaitdb.connect(db_url)
        thread = threading.Thread(target=legacy, args=(db.sync_view(),), daemon=True)
        thread.start()
        while not entered.is_set():
            await asyncio.sleep(0.01)
        return db, thread

    loop = asyncio.new_event_loop()
    try:
        db, thread = loop.run_until_complete(main())
        if loop_closed:  # what asyncio.run does on its way out, the database closed in time
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(db.close())
            loop.close()
        leave.set()
        thread.join(10)
        assert not thread.is_alive(), "the SyncView transaction hung"
        assert len(errors) == 1 and isinstance(errors[0], awaitdb.InterfaceError), repr(errors)
    finally:
        if not loop.is_closed():
            loop.run_until_complete(db.close())
            loop.close()


async def test_sync_view_off_the_loop_raises(aconnect: Any) -> None:
    db = await aconnect()
    with pytest.raises(awaitdb.InterfaceError, match="sync_view"):
        await asyncio.to_thread(db.sync_view)
