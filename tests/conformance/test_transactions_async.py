"""Conformance: transactions, savepoints, on_commit, retries, pinned connections, the pool.

Written once against the async face; tools/async_to_sync.py generates the sync twin.
"""

from __future__ import annotations

from typing import Any

import pytest

import awaitdb

from .helpers_async import settled_in_use


async def _table(adb: awaitdb.Database) -> None:
    await adb.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")


async def _ids(adb: awaitdb.Database) -> list[int]:
    return [r["id"] for r in await adb.fetch_all("SELECT id FROM t ORDER BY id")]


async def test_commit_and_rollback(adb: awaitdb.Database) -> None:
    await _table(adb)
    async with adb.transaction() as tx:
        await tx.execute("INSERT INTO t (id) VALUES (1)")
        await adb.execute("INSERT INTO t (id) VALUES (2)")  # same connection via the context
        assert await adb.fetch_val("SELECT count(*) FROM t") == 2  # reads its own writes
    assert tx.state is awaitdb.TransactionState.COMMITTED
    with pytest.raises(RuntimeError):
        async with adb.transaction() as tx2:
            await adb.execute("INSERT INTO t (id) VALUES (3)")
            raise RuntimeError("boom")
    assert tx2.state is awaitdb.TransactionState.ROLLED_BACK
    assert await _ids(adb) == [1, 2]


async def test_nested_blocks_are_savepoints(adb: awaitdb.Database) -> None:
    await _table(adb)
    async with adb.transaction():
        await adb.execute("INSERT INTO t (id) VALUES (1)")
        with pytest.raises(ValueError):
            async with adb.transaction():
                await adb.execute("INSERT INTO t (id) VALUES (2)")
                async with adb.transaction():
                    await adb.execute("INSERT INTO t (id) VALUES (3)")
                raise ValueError("only the savepoint rolls back")
        async with adb.transaction():
            await adb.execute("INSERT INTO t (id) VALUES (4)")
        assert await _ids(adb) == [1, 4]
    assert await _ids(adb) == [1, 4]


async def test_error_inside_savepoint_keeps_outer_work(adb: awaitdb.Database) -> None:
    await _table(adb)
    async with adb.transaction():
        await adb.execute("INSERT INTO t (id) VALUES (1)")
        with pytest.raises(awaitdb.UniqueViolation):
            async with adb.transaction():
                await adb.execute("INSERT INTO t (id) VALUES (1)")
        await adb.execute("INSERT INTO t (id) VALUES (2)")
    assert await _ids(adb) == [1, 2]


async def test_execute_many_inside_a_transaction_is_atomic(adb: awaitdb.Database) -> None:
    """One failing row: none of the call's rows is applied. SQLite undoes the call alone (a
    savepoint) and the transaction goes on; PostgreSQL aborts the transaction (documented)."""
    await _table(adb)
    await adb.execute("INSERT INTO t (id) VALUES (1)")
    rows = [{"id": 10}, {"id": 11}, {"id": 1}]  # the third repeats a key
    aborted = False
    try:
        async with adb.transaction():
            await adb.execute("INSERT INTO t (id) VALUES (5)")
            with pytest.raises(awaitdb.UniqueViolation):
                await adb.execute_many("INSERT INTO t (id) VALUES (:id)", rows)
    except awaitdb.TransactionAborted:
        aborted = True
    assert await _ids(adb) == ([1] if aborted else [1, 5])
    assert aborted == (adb.backend != "sqlite")


async def test_on_commit_runs_after_commit_and_is_dropped_on_rollback(
    adb: awaitdb.Database,
) -> None:
    await _table(adb)
    calls: list[str] = []
    async with adb.transaction() as tx:
        tx.on_commit(lambda: calls.append("outer"))
        async with adb.transaction() as inner:
            inner.on_commit(lambda: calls.append("inner-kept"))
        with pytest.raises(KeyError):
            async with adb.transaction() as dropped:
                dropped.on_commit(lambda: calls.append("inner-dropped"))
                raise KeyError("x")
        assert calls == []  # nothing runs before the outermost COMMIT
    assert calls == ["outer", "inner-kept"]
    with pytest.raises(RuntimeError):
        async with adb.transaction() as tx:
            tx.on_commit(lambda: calls.append("never"))
            raise RuntimeError
    assert "never" not in calls


async def test_failing_on_commit_callback_does_not_undo_the_commit(
    adb: awaitdb.Database, caplog: pytest.LogCaptureFixture
) -> None:
    await _table(adb)
    async with adb.transaction() as tx:
        await adb.execute("INSERT INTO t (id) VALUES (1)")
        tx.on_commit(lambda: 1 / 0)
    assert await _ids(adb) == [1]
    assert any("on_commit callback" in r.message for r in caplog.records)


async def test_on_rollback_runs_for_rolled_back_blocks_and_savepoints(
    adb: awaitdb.Database,
) -> None:
    await _table(adb)
    calls: list[str] = []
    async with adb.transaction() as tx:
        tx.on_rollback(lambda: calls.append("outer-rb"))
        async with adb.transaction() as kept:
            kept.on_rollback(lambda: calls.append("kept-rb"))  # handed up: outer commits
        with pytest.raises(KeyError):
            async with adb.transaction() as sp:
                sp.on_commit(lambda: calls.append("sp-commit"))
                sp.on_rollback(lambda: calls.append("sp-rb"))
                async with adb.transaction() as deeper:
                    deeper.on_commit(lambda: calls.append("deeper-commit"))
                    deeper.on_rollback(lambda: calls.append("deeper-rb"))
                raise KeyError("x")
        assert calls == ["sp-rb", "deeper-rb"]  # at once, when the savepoint rolls back
    assert calls == ["sp-rb", "deeper-rb"]  # the commit drops rollback hooks
    calls.clear()
    with pytest.raises(RuntimeError):
        async with adb.transaction() as tx:
            tx.on_commit(lambda: calls.append("commit"))
            tx.on_rollback(lambda: calls.append("outer-rb"))
            async with adb.transaction() as inner:
                inner.on_rollback(lambda: calls.append("inner-rb"))
            raise RuntimeError
    assert calls == ["outer-rb", "inner-rb"]
    with pytest.raises(awaitdb.InterfaceError):
        tx.on_rollback(lambda: None)


async def test_on_rollback_runs_when_the_block_fails_to_commit(
    adb: awaitdb.Database, dialect: Any
) -> None:
    await _table(adb)
    calls: list[str] = []
    with pytest.raises(awaitdb.QueryTimeout):
        async with adb.transaction(timeout=0.3) as tx:
            tx.on_commit(lambda: calls.append("commit"))
            tx.on_rollback(lambda: calls.append("rollback"))
            await adb.execute("INSERT INTO t (id) VALUES (1)")
            await adb.fetch_val(dialect.slow_sql)
    assert calls == ["rollback"]


async def test_hooks_may_use_the_database_and_failures_are_logged(
    adb: awaitdb.Database, caplog: pytest.LogCaptureFixture
) -> None:
    await _table(adb)
    with pytest.raises(ValueError):
        async with adb.transaction():
            async with adb.transaction() as sp:
                sp.on_rollback(lambda: 1 / 0)
                sp.on_rollback(lambda: adb.execute("INSERT INTO t (id) VALUES (5)"))
                raise ValueError
            raise AssertionError("unreachable")  # pragma: no cover
    assert any("on_rollback callback" in r.message for r in caplog.records)
    assert await _ids(adb) == []  # the hook wrote inside the outer block, which rolled back


async def test_current_transaction_is_the_innermost_block_of_this_task(
    adb: awaitdb.Database,
) -> None:
    await _table(adb)
    assert adb.current_transaction() is None
    async with adb.transaction() as tx:
        assert adb.current_transaction() is tx
        async with adb.transaction() as sp:
            assert adb.current_transaction() is sp
        assert adb.current_transaction() is tx
        async with adb.connection():
            assert adb.current_transaction() is tx  # a pinned block inside joins the transaction
    assert adb.current_transaction() is None
    async with adb.connection():
        assert adb.current_transaction() is None


async def test_readonly_transaction(adb: awaitdb.Database) -> None:
    await _table(adb)
    await adb.execute("INSERT INTO t (id) VALUES (1)")
    async with adb.transaction(readonly=True) as tx:
        assert await tx.fetch_val("SELECT count(*) FROM t") == 1
        with pytest.raises(awaitdb.DatabaseError):
            async with adb.transaction():  # a savepoint: the failure stays inside it
                await tx.execute("INSERT INTO t (id) VALUES (2)")
        assert await tx.fetch_val("SELECT count(*) FROM t") == 1
    assert await _ids(adb) == [1]


async def test_isolation_levels(adb: awaitdb.Database) -> None:
    await _table(adb)
    levels = ("read_committed", "repeatable_read", "serializable", "SERIALIZABLE")
    for i, level in enumerate(levels):
        async with adb.transaction(isolation=level):
            await adb.execute("INSERT INTO t (id, v) VALUES (:i, :v)", {"i": i, "v": level})
    assert await adb.fetch_val("SELECT count(*) FROM t") == 4
    with pytest.raises(awaitdb.InterfaceError, match="isolation level 'chaos'"):
        adb.transaction(isolation="chaos")
    async with adb.transaction():
        with pytest.raises(awaitdb.InterfaceError, match="outermost"):
            async with adb.transaction(isolation="serializable"):
                pass


async def test_transaction_timeout(adb: awaitdb.Database, dialect: Any) -> None:
    await _table(adb)
    with pytest.raises(awaitdb.QueryTimeout):
        async with adb.transaction(timeout=0.3):
            await adb.execute("INSERT INTO t (id) VALUES (1)")
            await adb.fetch_val(dialect.slow_sql)
    assert await _ids(adb) == []
    assert await settled_in_use(adb) == 0


async def test_run_in_transaction_retries_transient_errors(adb: awaitdb.Database) -> None:
    await _table(adb)
    attempts: list[int] = []

    async def work(tx: awaitdb.Transaction) -> str:
        attempts.append(1)
        await tx.execute("INSERT INTO t (id) VALUES (:id)", {"id": len(attempts)})
        if len(attempts) < 3:
            raise awaitdb.SerializationFailure("conflict", sqlstate="40001")
        return "done"

    assert await adb.run_in_transaction(work, retries=5, backoff=0.001) == "done"
    assert len(attempts) == 3
    assert await _ids(adb) == [3]  # the failed attempts were rolled back

    async def always(tx: awaitdb.Transaction) -> None:
        raise awaitdb.DatabaseBusy("busy")

    with pytest.raises(awaitdb.DatabaseBusy):
        await adb.run_in_transaction(always, retries=2, backoff=0.001)

    async def fatal(tx: awaitdb.Transaction) -> None:
        attempts.append(1)
        raise awaitdb.UniqueViolation("not retryable")

    before = len(attempts)
    with pytest.raises(awaitdb.UniqueViolation):
        await adb.run_in_transaction(fatal, retries=5, backoff=0.001)
    assert len(attempts) == before + 1


async def test_transaction_objects_are_single_use(adb: awaitdb.Database) -> None:
    tx = adb.transaction()
    async with tx:
        pass
    with pytest.raises(awaitdb.InterfaceError, match="only once"):
        async with tx:
            pass
    with pytest.raises(awaitdb.InterfaceError, match="not active"):
        await tx.execute("SELECT 1")
    with pytest.raises(awaitdb.InterfaceError):
        tx.on_commit(lambda: None)


async def test_transaction_control_statements_are_refused(adb: awaitdb.Database) -> None:
    with pytest.raises(awaitdb.InterfaceError, match="transaction"):
        await adb.execute("BEGIN")
    async with adb.transaction():
        with pytest.raises(awaitdb.InterfaceError, match="nest"):
            await adb.execute("COMMIT")


async def test_pinned_connection(adb: awaitdb.Database) -> None:
    await _table(adb)
    async with adb.connection() as conn:
        await conn.execute("INSERT INTO t (id) VALUES (1)")
        await adb.execute("INSERT INTO t (id) VALUES (2)")
        async with adb.transaction():
            await adb.execute("INSERT INTO t (id) VALUES (3)")
        with pytest.raises(RuntimeError):
            async with adb.transaction():
                await adb.execute("INSERT INTO t (id) VALUES (4)")
                raise RuntimeError
    assert await _ids(adb) == [1, 2, 3]
    assert await settled_in_use(adb) == 0


async def test_pinned_connection_left_in_a_transaction_is_rolled_back(
    adb: awaitdb.Database,
) -> None:
    await _table(adb)
    async with adb.connection() as conn:
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO t (id) VALUES (1)")
    assert await _ids(adb) == []
    await adb.execute("INSERT INTO t (id) VALUES (2)")
    assert await _ids(adb) == [2]
