"""SQLite async backend: concurrency, group commit, cancellation, processes, shutdown.

These need concurrent tasks or OS processes, so they have no generated sync twin.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import SQLITE, cancellation_storm

import awaitdb
from awaitdb._sql import analyze

ROOT = Path(__file__).resolve().parent.parent


async def _table(db: awaitdb.Database) -> None:
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")


def _no_write_lock_held(path: str) -> None:
    """An outside connection can take the write lock at once: no transaction was left open."""
    conn = sqlite3.connect(path, timeout=0.5, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def test_tasks_inside_a_transaction_share_it(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await _table(db)
        async with db.transaction():
            await asyncio.gather(
                *(db.execute("INSERT INTO t (id) VALUES (:i)", {"i": i}) for i in range(50))
            )

            async def child(i: int) -> None:
                try:
                    async with db.transaction():
                        await db.execute("INSERT INTO t (id) VALUES (:i)", {"i": 100 + i})
                        await asyncio.sleep(0)
                        await db.execute("UPDATE t SET v = 'x' WHERE id = :i", {"i": 100 + i})
                        if i % 2:
                            raise ValueError("roll back this child only")
                except ValueError:
                    pass

            async with asyncio.TaskGroup() as group:
                for i in range(10):
                    group.create_task(child(i))
            assert await db.fetch_val("SELECT count(*) FROM t") == 55
        assert await db.fetch_val("SELECT count(*) FROM t") == 55
        assert await db.fetch_val("SELECT count(*) FROM t WHERE v = 'x'") == 5


async def test_writes_outside_wait_for_the_transaction(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await _table(db)
        entered = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with db.transaction():
                await db.execute("INSERT INTO t (id) VALUES (1)")
                entered.set()
                await release.wait()

        task = asyncio.create_task(holder())
        await entered.wait()
        outside = asyncio.create_task(db.execute("INSERT INTO t (id) VALUES (2)"))
        await asyncio.sleep(0.05)
        assert not outside.done()  # waits for the transaction, never joins it
        assert await db.fetch_val("SELECT count(*) FROM t") == 0  # readers see committed data
        release.set()
        await task
        assert await outside == 1
        assert await db.fetch_val("SELECT count(*) FROM t") == 2


async def test_group_commit_isolates_a_failing_statement(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await _table(db)
        await db.execute("INSERT INTO t (id) VALUES (7)")
        sql = "INSERT INTO t (id) VALUES (:i)"
        results = await asyncio.gather(
            *(db.execute(sql, {"i": i}) for i in range(1, 41)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1 and isinstance(failures[0], awaitdb.UniqueViolation)
        assert await db.fetch_val("SELECT count(*) FROM t") == 40
        assert db.stats().group_commits >= 1


async def test_group_commit_survives_a_statement_that_rolls_back_everything(
    sqlite_url: str,
) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        await db.execute("INSERT INTO t (id) VALUES (5)")
        sql = "INSERT INTO t (id) VALUES (:i)"
        bad = "INSERT OR ROLLBACK INTO t (id) VALUES (5)"  # SQLite rolls back the transaction
        calls = [db.execute(sql, {"i": i}) for i in range(10, 30)]
        calls.insert(7, db.execute(bad))
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[7], awaitdb.UniqueViolation)
        assert all(r == 1 for i, r in enumerate(results) if i != 7)
        assert await db.fetch_val("SELECT count(*) FROM t") == 21


async def test_memory_database_is_one_shared_database() -> None:
    async with awaitdb.connect("sqlite:///:memory:") as db:
        await _table(db)
        await asyncio.gather(
            *(db.execute("INSERT INTO t (id) VALUES (:i)", {"i": i}) for i in range(20))
        )
        async with db.transaction(readonly=True):
            assert await db.fetch_val("SELECT count(*) FROM t") == 20
        assert [r["id"] async for r in db.iterate("SELECT id FROM t ORDER BY id")] == list(
            range(20)
        )


async def test_default_url_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AWAITDB_URL", raising=False)
    async with awaitdb.connect() as db:
        assert await db.fetch_val("SELECT 1") == 1
    assert (tmp_path / "awaitdb.sqlite3").exists()
    monkeypatch.setenv("AWAITDB_URL", f"sqlite:///{tmp_path / 'env.db'}?readers=2")
    db = await awaitdb.connect()
    try:
        assert db.stats().pool_size == 3  # the writer and two readers
    finally:
        await db.close()
    assert (tmp_path / "env.db").exists()


async def test_write_hidden_behind_a_cte_is_sent_to_the_writer(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await _table(db)
        sql = "WITH x(i) AS (VALUES (1), (2)) INSERT INTO t (id) SELECT i FROM x RETURNING id"
        rows = await db.fetch_all(sql)
        assert sorted(r["id"] for r in rows) == [1, 2]
        assert await db.fetch_val("SELECT count(*) FROM t") == 2


async def test_slow_read_leaves_the_loop_for_a_thread(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await db.execute("CREATE TABLE big (x INTEGER)")
        await db.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) "
            "INSERT INTO big SELECT x FROM c"
        )
        sql = "SELECT sum(x) FROM big WHERE x % 3 = 0"
        inline = db.stats().inline_reads
        assert await db.fetch_val(sql) == sum(range(3, 300001, 3))
        assert await db.fetch_val(sql) == sum(range(3, 300001, 3))
        assert db.stats().inline_reads == inline  # too costly for the loop: threads ran both
        assert analyze(sql).inline_ok  # learned by this database, not written on the analysis


async def test_cancelled_write_inside_a_transaction_tells_the_owner(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await _table(db)
        slow_insert = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000000) "
            "INSERT INTO t (v) SELECT 'x' FROM c"
        )
        with pytest.raises(awaitdb.TransactionAborted):
            async with db.transaction():
                await db.execute("INSERT INTO t (id) VALUES (1)")
                with pytest.raises(awaitdb.QueryTimeout):
                    await db.execute(slow_insert, timeout=0.2)
                await db.execute("INSERT INTO t (id) VALUES (2)")  # refused: tx is gone
        assert await db.fetch_val("SELECT count(*) FROM t") == 0
        assert db.stats().pool_in_use == 0
        await db.execute("INSERT INTO t (id) VALUES (3)")
    _no_write_lock_held(sqlite_url.removeprefix("sqlite:///"))


async def test_pool_overloaded_and_pool_timeout(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url, max_waiting=2, acquire_timeout=5) as db:
        await _table(db)
        release = asyncio.Event()

        async def hold() -> None:
            async with db.transaction():
                await release.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.01)
        waiters = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(awaitdb.PoolOverloaded, match="max_waiting=2"):
            async with db.transaction():
                pass
        assert db.stats().pool_waiting == 2
        release.set()
        await asyncio.gather(holder, *waiters)
    async with awaitdb.connect(sqlite_url, acquire_timeout=0.1) as db:
        release = asyncio.Event()
        holder = asyncio.create_task(hold_on(db, release))
        await asyncio.sleep(0.01)
        with pytest.raises(awaitdb.PoolTimeout, match="in_use=1"):
            async with db.transaction():
                pass
        release.set()
        await holder
        assert db.stats().acquire_timeouts == 1


async def hold_on(db: awaitdb.Database, release: asyncio.Event) -> None:
    async with db.transaction():
        await release.wait()


async def test_fifo_waiters(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        order: list[int] = []

        async def work(i: int) -> None:
            async with db.transaction():
                order.append(i)
                await asyncio.sleep(0.001)

        tasks = []
        for i in range(20):
            tasks.append(asyncio.create_task(work(i)))
            await asyncio.sleep(0)  # queue them in a known order
        await asyncio.gather(*tasks)
        assert order == list(range(20))


@pytest.mark.slow
async def test_random_cancellations_leak_nothing(sqlite_url: str) -> None:
    rng = random.Random(20261122)
    async with awaitdb.connect(sqlite_url) as db:
        await _table(db)
        await db.execute("CREATE TABLE big (x INTEGER)")
        await db.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) "
            "INSERT INTO big SELECT x FROM c"
        )
        counter = iter(range(10**9))

        async def op(kind: int) -> None:
            if kind == 0:
                await db.fetch_all("SELECT x FROM big WHERE x % 7 = :m", {"m": rng.randrange(7)})
            elif kind == 1:
                await db.execute("INSERT INTO t (id) VALUES (:i)", {"i": next(counter)})
            elif kind == 2:
                async with db.transaction():
                    await db.execute("INSERT INTO t (id) VALUES (:i)", {"i": next(counter)})
                    await db.fetch_val("SELECT count(*) FROM big")
                    async with db.transaction():
                        await db.execute("INSERT INTO t (id) VALUES (:i)", {"i": next(counter)})
            elif kind == 3:
                async for rec in db.iterate("SELECT x FROM big", batch_size=100):
                    if rec["x"] > 500:
                        break
            elif kind == 4:
                async with db.transaction(readonly=True):
                    await db.fetch_val("SELECT sum(x) FROM big")
            else:
                await db.fetch_val("SELECT sum(x) FROM big", timeout=0.0005)

        assert await cancellation_storm(op, 6, seed=20261122) >= 2000
        await asyncio.sleep(0.05)
        stats = db.stats()
        assert stats.pool_in_use == 0 and stats.pool_waiting == 0
        assert stats.pool_idle == stats.pool_size
        _no_write_lock_held(sqlite_url.removeprefix("sqlite:///"))
        async with db.transaction():  # the writer is usable and not inside a transaction
            await db.execute("INSERT INTO t (id) VALUES (-1)")
        assert await db.fetch_val("SELECT count(*) FROM t WHERE id = -1") == 1


async def test_close_on_a_busy_pool(sqlite_url: str) -> None:
    db = await awaitdb.connect(sqlite_url)
    await _table(db)

    async def busy(i: int) -> None:
        for j in range(50):
            await db.execute("INSERT INTO t (id) VALUES (:i)", {"i": i * 1000 + j})

    async def in_tx() -> None:
        async with db.transaction():
            await db.execute("INSERT INTO t (id) VALUES (-5)")
            await asyncio.sleep(0.05)
            await db.execute("INSERT INTO t (id) VALUES (-6)")

    tasks = [asyncio.create_task(busy(i)) for i in range(10)]
    tasks.append(asyncio.create_task(in_tx()))
    slow = asyncio.create_task(db.fetch_val(SQLITE.slow_sql))
    await asyncio.sleep(0.01)
    await db.close(timeout=0.5)
    results = await asyncio.gather(*tasks, slow, return_exceptions=True)
    for result in results:
        assert result is None or isinstance(result, awaitdb.InterfaceError | awaitdb.QueryTimeout)
    assert isinstance(results[-1], awaitdb.InterfaceError | awaitdb.QueryTimeout)
    assert not [t for t in __import__("threading").enumerate() if t.name.startswith("awaitdb-")]
    path = sqlite_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:  # the transaction that was running finished whole (committed before close)
        ids = {r[0] for r in conn.execute("SELECT id FROM t WHERE id < 0")}
        assert ids in ({-5, -6}, set())
    finally:
        conn.close()


def _run_script(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_a_process_that_never_closes_exits(tmp_path: Path) -> None:
    code = """
        import asyncio, sys, awaitdb
        async def main():
            db = await awaitdb.connect(sys.argv[1])
            await db.execute("CREATE TABLE t (x INTEGER)")
            await asyncio.gather(*(db.execute("INSERT INTO t VALUES (1)") for _ in range(100)))
            print(await db.fetch_val("SELECT count(*) FROM t"))
            # no close()
        asyncio.run(main())
        sdb = awaitdb.connect_sync(sys.argv[1])
        sdb.execute("INSERT INTO t VALUES (2)")
        # no close() either
    """
    result = _run_script(code, f"sqlite:///{tmp_path / 'forgot.db'}", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "100"


@pytest.mark.slow
def test_two_processes_write_the_same_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    setup = awaitdb.connect_sync(url)
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT, n INTEGER)")
    setup.close()
    code = """
        import asyncio, sys, awaitdb
        async def main(url, who):
            async with awaitdb.connect(url) as db:
                ins = "INSERT INTO t (who, n) VALUES (:w, :n)"
                async def writer(k):
                    for n in range(40):
                        if n % 10 == 0:
                            async with db.transaction():
                                await db.execute(ins, {"w": who, "n": n})
                                await db.execute(ins, {"w": who, "n": -1})
                        else:
                            await db.execute(ins, {"w": who, "n": n})
                        await db.fetch_val("SELECT count(*) FROM t WHERE who = :w", {"w": who})
                await asyncio.gather(*(writer(k) for k in range(10)))
        asyncio.run(main(sys.argv[1], sys.argv[2]))
        print("ok")
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
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
        assert "locked" not in err and out.strip() == "ok"
    check = awaitdb.connect_sync(url)
    try:
        assert check.fetch_val("SELECT count(*) FROM t") == 2 * 10 * 44
    finally:
        check.close()


async def test_group_commit_keeps_execute_many_atomic(sqlite_url: str) -> None:
    async with awaitdb.connect(sqlite_url) as db:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        sql = "INSERT INTO t (id) VALUES (:i)"
        calls = [db.execute(sql, {"i": i}) for i in range(100, 130)]
        calls.insert(5, db.execute_many(sql, [{"i": 1}, {"i": 2}, {"i": 1}]))
        calls.insert(9, db.execute_many(sql, [{"i": 3}, {"i": 4}]))
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[5], awaitdb.UniqueViolation)
        assert results[9] == 2
        ids = {r["id"] for r in await db.fetch_all("SELECT id FROM t")}
        assert ids == set(range(100, 130)) | {3, 4}
