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
