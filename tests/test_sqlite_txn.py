"""SQLite write transactions in few hops: on the loop when the writer is free, on its thread
when a lock, a slow statement or other writes say so, with every guarantee kept.

Which thread ran a statement is told by a SQL function ``whoami()`` (the running thread's id)
installed on every connection by an ``on_connect`` hook. No assertion times anything.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import awaitdb

SLOW_INSERT = (
    "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < :n) "
    "INSERT INTO t (v, who) SELECT 'bulk', whoami() FROM r"
)

BUSY_INSERT = (
    "INSERT INTO t (v) WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r "
    "WHERE x < 300000) SELECT 'bulk' FROM r"
)


def _whoami(conn: Any) -> None:
    conn.create_function("whoami", 0, threading.get_ident)


async def _open(url: str, **options: Any) -> awaitdb.Database:
    db = await awaitdb.connect(url, on_connect=_whoami, **options)
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, who INTEGER)")
    return db


async def _insert(db: awaitdb.Database, v: str) -> None:
    await db.execute("INSERT INTO t (v, who) VALUES (:v, whoami())", {"v": v})


async def test_a_short_transaction_runs_on_the_loop_thread(sqlite_url: str) -> None:
    """The first statement and a later read seen cheap run on the loop; a later write always
    on the thread (SQLite rolls back the whole transaction when it interrupts a write)."""
    db = await _open(sqlite_url)
    try:
        reads = []
        for i in range(3):
            async with db.transaction():
                await _insert(db, f"a{i}")
                reads.append(await db.fetch_val("SELECT whoami()"))  # on the loop once cheap
                await _insert(db, f"b{i}")
        rows = await db.fetch_all("SELECT v, who FROM t ORDER BY id")
    finally:
        await db.close()
    loop_thread = threading.get_ident()
    assert [r["v"] for r in rows] == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert {r["who"] for r in rows if r["v"][0] == "a"} == {loop_thread}
    assert loop_thread not in {r["who"] for r in rows if r["v"][0] == "b"}
    assert reads[1:] == [loop_thread, loop_thread]


RECURSIVE_INSERT = (
    "INSERT INTO t (v, who) WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r "
    "WHERE x < :n) SELECT 'many', whoami() FROM r"
)


async def test_a_later_write_honours_its_timeout_and_loses_nothing(sqlite_url: str) -> None:
    """A later write seen cheap may be huge with other parameters: it runs on the thread,
    which honours its timeout=; the transaction fails whole (issue 9 review, p16)."""
    db = await _open(sqlite_url)
    try:
        for _ in range(3):  # seen cheap, on the loop and on the thread
            async with db.transaction():
                await _insert(db, "first")
                await db.execute(RECURSIVE_INSERT, {"n": 1}, timeout=10)
        with pytest.raises(awaitdb.QueryTimeout):
            async with db.transaction():
                await _insert(db, "lost")
                await db.execute(RECURSIVE_INSERT, {"n": 10**12}, timeout=0.05)
        with pytest.raises(awaitdb.QueryTimeout):  # a first statement honours it too
            async with db.transaction():
                await db.execute(RECURSIVE_INSERT, {"n": 10**12}, timeout=0.05)
        counts = {
            r["v"]: r["n"] for r in await db.fetch_all("SELECT v, count(*) AS n FROM t GROUP BY v")
        }
        whos = await db.fetch_all("SELECT DISTINCT who FROM t WHERE v = 'many'")
    finally:
        await db.close()
    assert counts == {"first": 3, "many": 3}
    assert threading.get_ident() not in {r["who"] for r in whos}


async def test_a_later_read_aborted_on_the_loop_keeps_the_transaction(sqlite_url: str) -> None:
    """A later read over the loop's CPU limit is aborted (a read abort keeps the transaction)
    and the thread runs it, in the same transaction."""
    db = await _open(sqlite_url)
    sql = (
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < :n) "
        "SELECT sum(x) AS s, whoami() AS who FROM r"
    )
    try:
        seen = []
        for n in (1, 1, 2_000_000):
            async with db.transaction():
                await _insert(db, f"n{n}")
                seen.append(await db.fetch_one(sql, {"n": n}))
        count = await db.fetch_val("SELECT count(*) FROM t")
    finally:
        await db.close()
    loop_thread = threading.get_ident()
    assert seen[1]["who"] == loop_thread
    assert seen[2]["s"] == 2_000_000 * 2_000_001 // 2
    assert seen[2]["who"] != loop_thread
    assert count == 3


async def test_a_write_behind_with_never_runs_later_on_the_loop(sqlite_url: str) -> None:
    """``WITH ... INSERT`` reads as a read: on the loop it runs with query_only on, is refused
    before it writes, and goes to the thread from then on."""
    db = await _open(sqlite_url)
    sql = "WITH r(x) AS (SELECT 1) INSERT INTO t (v, who) SELECT 'with', whoami() FROM r"
    try:
        for _ in range(4):
            async with db.transaction():
                await _insert(db, "first")
                await db.execute(sql)
        whos = await db.fetch_all("SELECT who FROM t WHERE v = 'with'")
        firsts = await db.fetch_val("SELECT count(*) FROM t WHERE v = 'first'")
        await db.execute("INSERT INTO t (v) VALUES ('after')")  # query_only is off again
    finally:
        await db.close()
    assert len(whos) == 4 and firsts == 4
    assert threading.get_ident() not in {r["who"] for r in whos}


async def test_a_first_statement_sqlite_cannot_interrupt_goes_to_the_thread(
    sqlite_url: str,
) -> None:
    """``count(*)`` of a big table never reaches the progress handler: a long run makes it a
    suspect, its next run's CPU time sends it to the thread (issue 9 review, p17)."""
    db = await _open(sqlite_url)
    try:
        await db.execute("CREATE TABLE big (x INTEGER)")
        await db.execute(
            "INSERT INTO big WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r "
            "WHERE x < 400000) SELECT x FROM r"
        )
        whos = []
        for _ in range(4):
            async with db.transaction():
                assert await db.fetch_val("SELECT count(*) FROM big") == 400_000
                whos.append(await db.fetch_val("SELECT whoami()"))
    finally:
        await db.close()
    assert whos[-1] != threading.get_ident()  # the transaction began on the thread


async def test_the_option_keeps_transactions_on_the_writer_thread(sqlite_url: str) -> None:
    db = await _open(sqlite_url, inline_transactions=False)
    try:
        async with db.transaction():
            await _insert(db, "x")
        who = await db.fetch_val("SELECT who FROM t")
    finally:
        await db.close()
    assert who != threading.get_ident()


async def test_a_lock_held_elsewhere_is_waited_for_on_the_thread(sqlite_url: str) -> None:
    """The loop never waits for a lock: the writer thread does, and the loop keeps turning."""
    db = await _open(sqlite_url, busy_timeout=10)
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    turns = 0
    try:
        other.execute("BEGIN IMMEDIATE")

        async def body() -> None:
            async with db.transaction():
                await _insert(db, "waited")

        task = asyncio.create_task(body())
        while turns < 50:  # the loop turns while the transaction waits for the lock
            await asyncio.sleep(0.001)
            turns += 1
        assert not task.done()
        other.execute("ROLLBACK")
        await task
        who = await db.fetch_val("SELECT who FROM t WHERE v = 'waited'")
        async with db.transaction():  # the lock is free again: back on the loop
            await _insert(db, "after")
        after = await db.fetch_val("SELECT who FROM t WHERE v = 'after'")
    finally:
        other.close()
        await db.close()
    assert who != threading.get_ident()
    assert after == threading.get_ident()


async def test_a_slow_first_statement_is_aborted_and_run_on_the_thread(sqlite_url: str) -> None:
    db = await _open(sqlite_url)
    try:
        async with db.transaction():
            await db.execute(SLOW_INSERT, {"n": 200_000})
            await _insert(db, "after the bulk")
        whos = await db.fetch_all("SELECT DISTINCT who FROM t WHERE v = 'bulk'")
        count = await db.fetch_val("SELECT count(*) FROM t")
    finally:
        await db.close()
    assert count == 200_001  # aborted on the loop, run once on the thread: nothing twice
    assert [r["who"] for r in whos] != [threading.get_ident()]


async def test_writes_submitted_meanwhile_wait_for_the_loop_transaction(sqlite_url: str) -> None:
    db = await _open(sqlite_url)
    try:
        inside = asyncio.Event()
        go_on = asyncio.Event()

        async def transaction(fail: bool) -> None:
            async with db.transaction():
                await _insert(db, "tx")
                inside.set()
                await go_on.wait()
                if fail:
                    raise ValueError("roll back")

        for fail in (False, True):
            inside.clear()
            go_on.clear()
            task = asyncio.create_task(transaction(fail))
            await inside.wait()
            outside = asyncio.create_task(_insert(db, "outside"))
            for _ in range(20):
                await asyncio.sleep(0)
            assert not outside.done()  # held until the transaction ends, as on the thread
            go_on.set()
            try:
                await task
            except ValueError:
                pass
            await outside
        values = [r["v"] for r in await db.fetch_all("SELECT v FROM t ORDER BY id")]
    finally:
        await db.close()
    assert values == ["tx", "outside", "outside"]


async def test_a_cancelled_loop_transaction_rolls_back_and_leaks_nothing(sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    db = await _open(sqlite_url)
    try:
        started = asyncio.Event()

        async def body() -> None:
            async with db.transaction():
                await _insert(db, "cancelled")
                started.set()
                await asyncio.sleep(3600)

        task = asyncio.create_task(body())
        await started.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        # Nothing left open: another connection takes the write lock at once.
        conn = sqlite3.connect(path, timeout=0.5, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        conn.close()
        async with db.transaction():
            await _insert(db, "kept")
        values = [r["v"] for r in await db.fetch_all("SELECT v FROM t")]
        stats = db.stats()
    finally:
        await db.close()
    assert values == ["kept"]
    assert stats.pool_in_use == 0


async def test_commits_on_the_loop_are_checkpointed_by_the_thread(sqlite_url: str) -> None:
    """wal_autocheckpoint is off on the loop; the writer thread checkpoints instead, so the
    write-ahead log does not grow without bound."""
    path = sqlite_url.removeprefix("sqlite:///")
    db = await _open(sqlite_url)
    try:
        for i in range(1500):
            async with db.transaction():
                await _insert(db, str(i))
        await db.execute("INSERT INTO t (v) VALUES ('autocommit')")  # through the thread
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            busy, log_frames, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
        count = await db.fetch_val("SELECT count(*) FROM t")
    finally:
        await db.close()
    assert count == 1501
    assert busy == 0
    assert log_frames < 1500  # every commit wrote a frame: the log was restarted on the way


async def test_deferred_begin_costs_nothing_when_nothing_runs(sqlite_url: str) -> None:
    """BEGIN travels with the first statement: an empty transaction takes no lock."""
    path = sqlite_url.removeprefix("sqlite:///")
    db = await _open(sqlite_url)
    committed: list[str] = []
    try:
        async with db.transaction() as tx:
            tx.on_commit(lambda: committed.append("yes"))
            conn = sqlite3.connect(path, timeout=0, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")  # not blocked: our BEGIN was not sent yet
            conn.execute("ROLLBACK")
            conn.close()
        assert tx.state.value == "committed"
    finally:
        await db.close()
    assert committed == ["yes"]


async def test_a_deleted_file_refuses_the_commit_on_the_loop(tmp_path: Any) -> None:
    path = tmp_path / "gone.db"
    db = await _open(f"sqlite:///{path}")
    try:
        async with db.transaction():
            await _insert(db, "before")
        failed = None
        try:
            async with db.transaction():
                await _insert(db, "lost")
                path.unlink()
        except awaitdb.Error as exc:
            failed = exc
    finally:
        await db.close()
    assert failed is not None and failed.sqlstate == "58P01"


async def test_two_databases_learn_apart(tmp_path: Any) -> None:
    """What one database learns about a statement (slow: kept on the thread) is its own."""
    one = await _open(f"sqlite:///{tmp_path / 'one.db'}")
    two = await _open(f"sqlite:///{tmp_path / 'two.db'}")
    try:
        async with one.transaction():
            await one.execute(
                SLOW_INSERT, {"n": 200_000}
            )  # aborted on the loop: kept on the thread here
        async with two.transaction():
            await two.execute("INSERT INTO t (v, who) VALUES ('x', whoami())")
        async with one.transaction():
            await one.execute(SLOW_INSERT, {"n": 2})
        async with two.transaction():
            await two.execute(SLOW_INSERT, {"n": 2})
        ones = await one.fetch_all("SELECT DISTINCT who FROM t WHERE id > 200000")
        twos = await two.fetch_all("SELECT DISTINCT who FROM t WHERE v = 'bulk'")
    finally:
        await one.close()
        await two.close()
    assert [r["who"] for r in ones] != [threading.get_ident()]
    assert [r["who"] for r in twos] == [threading.get_ident()]


async def test_a_connection_that_syncs_on_commit_keeps_transactions_off_the_loop(
    sqlite_url: str,
) -> None:
    """synchronous=FULL set by on_connect: a commit syncs the disk, so never on the loop."""

    def hook(conn: Any) -> None:
        _whoami(conn)
        conn.execute("PRAGMA synchronous=FULL")

    db = await awaitdb.connect(sqlite_url, on_connect=hook)
    try:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, who INTEGER)")
        for i in range(2):
            async with db.transaction():
                await _insert(db, str(i))
        whos = {r["who"] for r in await db.fetch_all("SELECT who FROM t")}
    finally:
        await db.close()
    assert threading.get_ident() not in whos


async def test_memory_database_transactions_on_the_loop_keep_guarantees() -> None:
    async with awaitdb.connect("sqlite:///:memory:", on_connect=_whoami) as db:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, who INTEGER)")
        async with db.transaction():
            await _insert(db, "kept")
            try:
                async with db.transaction():  # a savepoint, rolled back alone
                    await _insert(db, "dropped")
                    raise ValueError("inner")
            except ValueError:
                pass
        try:
            async with db.transaction():
                await _insert(db, "rolled back")
                raise ValueError("outer")
        except ValueError:
            pass
        rows = await db.fetch_all("SELECT v, who FROM t")
    assert [r["v"] for r in rows] == ["kept"]
    assert rows[0]["who"] == threading.get_ident()


async def test_a_first_statement_cancelled_before_it_ran_keeps_the_begin(sqlite_url: str) -> None:
    """Its BEGIN rode with it: the next statement carries it, so nothing runs in autocommit."""
    db = await _open(sqlite_url)
    try:
        busy = asyncio.create_task(db.execute(BUSY_INSERT))  # the writer thread is busy
        await asyncio.sleep(0)
        assert db._backend._writer.pending  # type: ignore[attr-defined]
        try:
            async with db.transaction():
                try:
                    await asyncio.wait_for(_insert(db, "cancelled"), 0.001)
                except TimeoutError:
                    pass
                await _insert(db, "inside")
                raise ValueError("roll back")
        except ValueError:
            pass
        await busy
        values = [r["v"] for r in await db.fetch_all("SELECT v FROM t WHERE v != 'bulk'")]
    finally:
        await db.close()
    assert values == []


def test_two_processes_in_loop_transactions_on_one_file(tmp_path: Any) -> None:
    """Each process's loop meets the other's lock (busy BEGIN): it hands the transaction to its
    writer thread, which waits; every transaction lands exactly once."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    setup = awaitdb.connect_sync(url)
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, n INTEGER)")
    setup.close()
    code = """
        import asyncio, sys, awaitdb
        async def main(url, who):
            async with awaitdb.connect(url) as db:
                async def writer(k):
                    for n in range(30):
                        async with db.transaction():
                            await db.execute(
                                "INSERT INTO t (who, n) VALUES (:w, :n)", {"w": who, "n": n}
                            )
                await asyncio.gather(*(writer(k) for k in range(20)))
        asyncio.run(main(sys.argv[1], sys.argv[2]))
        print("ok")
    """
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), url, who],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for who in ("a", "b")
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    check = awaitdb.connect_sync(url)
    try:
        assert check.fetch_val("SELECT count(*) FROM t") == 2 * 20 * 30
    finally:
        check.close()


@pytest.mark.parametrize("inline", [True, False])
async def test_execute_many_first_or_later_in_a_transaction_is_atomic(
    sqlite_url: str, inline: bool
) -> None:
    """A failing row undoes the whole call and nothing else, whichever statement it is."""
    db = await _open(sqlite_url, inline_transactions=inline)
    sql = "INSERT INTO t (id, v) VALUES (:id, 'many')"
    try:
        await db.execute("INSERT INTO t (id) VALUES (1)")
        async with db.transaction():
            with pytest.raises(awaitdb.UniqueViolation):
                await db.execute_many(sql, [{"id": 10}, {"id": 1}])  # the first statement
            await _insert(db, "kept")
            with pytest.raises(awaitdb.UniqueViolation):
                await db.execute_many(sql, [{"id": 11}, {"id": 12}, {"id": 1}])
            await db.execute_many(sql, [{"id": 13}])
        ids = [r["id"] for r in await db.fetch_all("SELECT id FROM t ORDER BY id")]
    finally:
        await db.close()
    assert ids == [1, 2, 13]
