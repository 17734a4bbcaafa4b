"""Jobs review fixes (issue 10): bounded shutdowns, kept leases, nothing left claimed, clear errors.

Every test is bounded (``wait_for``/``until``) and asserts outcomes, never durations.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import pg_url_or_skip, reset_pg_schema, with_app_name
from test_jobs import _true, status_of, until

import awaitdb
from awaitdb import DataError, InterfaceError, jobs
from awaitdb._jobs.queue import Queue


async def _count_running(db: awaitdb.Database) -> int:
    return int(await db.fetch_val("SELECT count(*) FROM awaitdb_jobs WHERE status = 'running'"))


# -- 1. a task that ignores cancellation cannot hang shutdown ------------------------------------


async def test_a_task_ignoring_cancellation_cannot_hang_shutdown(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)
    started = asyncio.Event()
    quit_now = asyncio.Event()

    @queue.task(name="stubborn")
    async def stubborn() -> None:
        started.set()
        for _ in range(400):  # bounded: the test lets it go at the end
            if quit_now.is_set():
                return
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                pass  # ignores cancellation on purpose

    job_id = await stubborn.enqueue()
    worker = jobs.Worker(queue, grace=0.2, lease=3)
    runner = asyncio.ensure_future(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 20)
        worker.stop()
        await asyncio.wait_for(asyncio.shield(runner), 15)  # returns: not a hang
        info = await queue.get(job_id)
        assert info is not None and info.status == "queued" and info.attempts == 0
        assert worker.counts["released"] == 1
    finally:
        quit_now.set()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await asyncio.sleep(0.1)  # the abandoned task ends


async def test_a_second_signal_skips_the_grace_time(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)
    started = asyncio.Event()

    @queue.task(name="long")
    async def long() -> None:
        started.set()
        await asyncio.sleep(60)

    job_id = await long.enqueue()
    worker = jobs.Worker(queue, grace=120)
    runner = asyncio.ensure_future(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 20)
        worker._on_signal()  # SIGTERM: graceful, would wait up to 120 s
        await asyncio.sleep(0.1)
        assert not runner.done()
        worker._on_signal()  # the second signal forces the exit
        await asyncio.wait_for(asyncio.shield(runner), 15)
        info = await queue.get(job_id)
        assert info is not None and info.status == "queued" and info.attempts == 0
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


# -- 2. a live worker keeps its leases with transactional tasks filling the pool ----------------


async def test_transactional_tasks_filling_the_pool_keep_their_leases() -> None:
    url = pg_url_or_skip()
    reset_pg_schema(url)
    sep = "&" if "?" in url else "?"
    small = await awaitdb.connect(url + sep + "max_size=2")
    other = await awaitdb.connect(url)
    try:
        await small.execute("CREATE TABLE effects (i INTEGER)")

        def define(db: awaitdb.Database) -> tuple[Queue, Any]:
            queue = jobs.Queue(db)

            @queue.task(name="slowtx", transactional=True, retries=1)
            async def slowtx(tx: Any, i: int) -> None:
                await tx.execute("INSERT INTO effects VALUES (:i)", {"i": i})
                await asyncio.sleep(1.5)

            return queue, slowtx

        q1, task = define(small)
        q2, _ = define(other)
        ids = [await task.enqueue(i=i) for i in range(2)]
        async with jobs.Worker(q1, concurrency=2, lease=0.9) as first:
            await until(lambda: _true(first.running == 2))
            async with jobs.Worker(q2, concurrency=1, lease=0.9):  # reaps expired leases
                for job_id in ids:
                    await status_of(q1, job_id, "done")
        for job_id in ids:
            info = await q1.get(job_id)
            assert info is not None and info.attempts == 1 and info.error is None
        assert await small.fetch_val("SELECT count(*) FROM effects") == 2  # each ran once
    finally:
        await small.close()
        await other.close()


# -- 3. cancelling run() during a claim leaves nothing claimed ----------------------------------


async def test_cancelling_run_during_a_claim_releases_what_it_claimed(
    adb: awaitdb.Database,
) -> None:
    queue = jobs.Queue(adb)
    ran: list[int] = []

    @queue.task(name="noop")
    async def noop(i: int) -> None:
        ran.append(i)

    await noop.enqueue_many([{"i": i} for i in range(5)])
    entered, gate = asyncio.Event(), asyncio.Event()

    class SlowClaim(jobs.Worker):
        async def _claim(self, queue: Queue, n: int) -> list[Any]:
            rows = await super()._claim(queue, n)
            entered.set()
            await gate.wait()  # the rows are claimed: cancellation lands here
            return rows

    worker = SlowClaim(queue, concurrency=5)
    runner = asyncio.ensure_future(worker.run())
    await asyncio.wait_for(entered.wait(), 20)
    runner.cancel()
    await asyncio.sleep(0.05)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, 20)
    assert ran == []
    assert await _count_running(adb) == 0
    rows = await adb.fetch_all("SELECT status, attempts FROM awaitdb_jobs")
    assert {(r[0], r[1]) for r in rows} == {("queued", 0)}  # the attempt did not count


# -- 4. shutdown while the done marks cannot be written ----------------------------------------


async def test_shutdown_gives_up_done_marks_it_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "down.db"
    db = await awaitdb.connect(f"sqlite:///{path}?busy_timeout=0.2")
    blocker: sqlite3.Connection | None = None
    try:
        queue = jobs.Queue(db)
        gate = asyncio.Event()

        @queue.task(name="g")
        async def g() -> None:
            await gate.wait()

        job_id = await g.enqueue()
        worker = jobs.Worker(queue, grace=0.3, lease=30)
        runner = asyncio.ensure_future(worker.run())
        try:
            await until(lambda: _true(worker.running == 1))
            blocker = sqlite3.connect(path, isolation_level=None, timeout=0.1)
            blocker.execute("BEGIN IMMEDIATE")  # the file's one writer: done marks cannot land
            gate.set()
            await until(lambda: _true(worker.running == 0))
            worker.stop()
            await asyncio.wait_for(asyncio.shield(runner), 15)  # gives up, returns
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        blocker.rollback()
        info = await queue.get(job_id)
        assert info is not None and info.status == "running"  # re-runs after its lease
        assert worker.counts["done"] == 0
    finally:
        if blocker is not None:
            blocker.close()
        await db.close()


async def test_shutdown_gives_up_when_postgresql_is_unreachable() -> None:
    url = pg_url_or_skip()
    reset_pg_schema(url)
    parts = urlsplit(url)
    dbname = parts.path.lstrip("/")
    admin = await awaitdb.connect(urlunsplit(parts._replace(path="/postgres")))
    wdb = await awaitdb.connect(with_app_name(url, "aw-unreachable"))
    locked = False
    try:
        queue = jobs.Queue(wdb)
        gate = asyncio.Event()

        @queue.task(name="g")
        async def g() -> None:
            await gate.wait()

        job_id = await g.enqueue()
        worker = jobs.Worker(queue, grace=0.5, lease=30)
        runner = asyncio.ensure_future(worker.run())
        try:
            await until(lambda: _true(worker.running == 1))
            await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            locked = True
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :d AND application_name = 'aw-unreachable'",
                {"d": dbname},
            )
            gate.set()
            await until(lambda: _true(worker.running == 0))
            worker.stop()
            await asyncio.wait_for(asyncio.shield(runner), 20)  # gives up, returns
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        assert worker.counts["done"] == 0
    finally:
        if locked:
            await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        await wdb.close(timeout=1)
        await admin.close()
    check = await awaitdb.connect(url)
    try:
        info = await jobs.Queue(check).get(job_id)
        assert info is not None and info.status == "running"  # re-runs after its lease
    finally:
        await check.close()


# -- 5. cancelling a running transactional job -------------------------------------------------


async def test_cancel_a_running_transactional_job(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)
    await adb.execute("CREATE TABLE effects (i INTEGER)")
    started = asyncio.Event()

    @queue.task(name="tx", transactional=True, retries=0)
    async def tx(t: Any, s: float) -> None:
        await t.execute("INSERT INTO effects VALUES (1)")
        started.set()
        await asyncio.sleep(s)

    job_id = await tx.enqueue(s=30)
    async with jobs.Worker(queue, lease=10) as worker:
        await asyncio.wait_for(started.wait(), 20)
        assert await asyncio.wait_for(queue.cancel(job_id), 20) is True
        await until(lambda: _true(worker.running == 0))
    info = await queue.get(job_id)
    assert info is not None and info.status == "cancelled"
    assert await adb.fetch_val("SELECT count(*) FROM effects") == 0  # rolled back


async def test_cancel_behind_another_connections_write_lock_is_explained(tmp_path: Path) -> None:
    """SQLite: another process's transactional job holds the one writer; cancel says so."""
    path = tmp_path / "locked.db"
    db = await awaitdb.connect(f"sqlite:///{path}?busy_timeout=0.2")
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    try:
        queue = jobs.Queue(db)
        job_id = await queue.enqueue(queue.task(name="t")(_noop))
        blocker.execute("BEGIN IMMEDIATE")  # like a running transactional job elsewhere
        with pytest.raises(awaitdb.DatabaseBusy, match=f"job {job_id}.*transactional"):
            await queue.cancel(job_id)
        fresh = await awaitdb.connect(f"sqlite:///{path}?busy_timeout=0.2")
        try:  # a new process's first use of the queue reads the schema version: no write
            other = jobs.Queue(fresh)
            assert await other.get(job_id) is not None
            with pytest.raises(awaitdb.DatabaseBusy, match=f"job {job_id}.*transactional"):
                await other.cancel(job_id)
        finally:
            await fresh.close()
        blocker.rollback()
        assert await queue.cancel(job_id) is True
    finally:
        blocker.close()
        await db.close()


def test_cancel_behind_another_connections_write_lock_is_explained_sync(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    db = awaitdb.connect_sync(f"sqlite:///{path}?busy_timeout=0.2")
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    try:
        queue = jobs.SyncQueue(db)
        job_id = queue.enqueue("t")
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(awaitdb.DatabaseBusy, match=f"job {job_id}.*transactional"):
            queue.cancel(job_id)
        fresh = awaitdb.connect_sync(f"sqlite:///{path}?busy_timeout=0.2")
        try:
            other = jobs.SyncQueue(fresh)
            assert other.get(job_id) is not None
            with pytest.raises(awaitdb.DatabaseBusy, match=f"job {job_id}.*transactional"):
                other.cancel(job_id)
        finally:
            fresh.close()
        blocker.rollback()
        assert queue.cancel(job_id) is True
    finally:
        blocker.close()
        db.close()


async def _noop() -> None:
    pass


# -- 6. / 8. bad input gets a clear error naming the argument ----------------------------------


async def test_task_and_worker_arguments_are_checked(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)

    async def fn() -> None:
        pass

    for kwargs, word in (
        ({"timeout": "5"}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"backoff": "1"}, "backoff"),
        ({"max_backoff": "9"}, "backoff"),
        ({"backoff": float("nan")}, "backoff"),
        ({"name": 5}, "name"),
        ({"name": ""}, "name"),
    ):
        with pytest.raises(InterfaceError, match=word):
            queue.task(**kwargs)(fn)
    assert queue.tasks == {}
    for kwargs, word in (
        ({"lease": float("nan")}, "lease"),
        ({"lease": float("inf")}, "lease"),
        ({"poll": float("nan")}, "poll"),
        ({"grace": float("nan")}, "grace"),
        ({"batch": "x"}, "batch"),
        ({"batch": 0}, "batch"),
        ({"batch": 2.5}, "batch"),
        ({"batch": True}, "batch"),
        ({"name": 5}, "name"),
        ({"name": ""}, "name"),
    ):
        with pytest.raises(InterfaceError, match=word):
            jobs.Worker(queue, **kwargs)


async def test_a_lone_surrogate_argument_is_a_data_error(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)

    @queue.task(name="take")
    async def take(text: str) -> None:
        pass

    with pytest.raises(DataError, match="'text'"):
        await take.enqueue(text="a\ud800b")
    with pytest.raises(DataError, match="'text'"):
        await take.enqueue_many([{"text": "fine"}, {"text": "\udfff"}])
    assert (await queue.stats()).by_status["queued"] == 0


def test_a_lone_surrogate_argument_is_a_data_error_sync(sdb: awaitdb.SyncDatabase) -> None:
    queue = jobs.SyncQueue(sdb)
    with pytest.raises(DataError, match="'text'"):
        queue.enqueue("take", text="a\ud800b")


# -- 7. the worker command with a module that fails on import ----------------------------------


@pytest.mark.parametrize(
    ("source", "word"),
    [("raise RuntimeError('broken at import')\n", "broken at import"), ("def (:\n", "Syntax")],
    ids=["RuntimeError", "SyntaxError"],
)
def test_worker_command_reports_a_module_failing_on_import(
    tmp_path: Path, source: str, word: str
) -> None:
    (tmp_path / "badmod.py").write_text(source)
    proc = subprocess.run(
        [sys.executable, "-m", "awaitdb.cli", "worker", "badmod:queue", "--url",
         f"sqlite:///{tmp_path / 'x.db'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert word in proc.stderr and "Traceback" not in proc.stderr


# -- 9. retry inside the caller's transaction keeps it usable ----------------------------------


async def test_retry_with_a_held_key_keeps_the_callers_transaction(
    adb: awaitdb.Database,
) -> None:
    queue = jobs.Queue(adb)

    @queue.task(name="k")
    async def k() -> None:
        pass

    old = await k.enqueue(key="same")
    assert await queue.cancel(old)
    await k.enqueue(key="same")  # a live job holds the key now
    await adb.execute("CREATE TABLE notes (n INTEGER)")
    async with adb.transaction():
        await adb.execute("INSERT INTO notes VALUES (1)")
        with pytest.raises(InterfaceError, match="key"):
            await queue.retry(old)
        await adb.execute("INSERT INTO notes VALUES (2)")  # the transaction is still usable
    assert await adb.fetch_val("SELECT count(*) FROM notes") == 2


def test_retry_with_a_held_key_keeps_the_callers_transaction_sync(
    sdb: awaitdb.SyncDatabase,
) -> None:
    queue = jobs.SyncQueue(sdb)
    old = queue.enqueue("k", key="same")
    assert queue.cancel(old)
    queue.enqueue("k", key="same")
    sdb.execute("CREATE TABLE notes (n INTEGER)")
    with sdb.transaction():
        sdb.execute("INSERT INTO notes VALUES (1)")
        with pytest.raises(InterfaceError, match="key"):
            queue.retry(old)
        sdb.execute("INSERT INTO notes VALUES (2)")
    assert sdb.fetch_val("SELECT count(*) FROM notes") == 2


STUBBORN_APP = """
import asyncio
from awaitdb import jobs

def make(db):
    queue = jobs.Queue(db)

    @queue.task(name="stubborn")
    async def stubborn() -> None:
        for _ in range(1200):  # 2 minutes at most
            try:
                await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                pass

    @queue.task(name="sleepy")
    async def sleepy() -> None:
        await asyncio.sleep(120)

    return queue
"""


@pytest.mark.parametrize(
    ("task", "grace", "signals"),
    [("stubborn", "0.3", 1), ("sleepy", "120", 2)],
    ids=["ignores-cancellation", "second-signal"],
)
def test_worker_command_stops_on_signals(
    tmp_path: Path, task: str, grace: str, signals: int
) -> None:
    (tmp_path / "stub_app.py").write_text(STUBBORN_APP)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    db = awaitdb.connect_sync(url)
    proc: subprocess.Popen[str] | None = None
    try:
        queue = jobs.SyncQueue(db)
        job_id = queue.enqueue(task)
        proc = subprocess.Popen(
            [sys.executable, "-m", "awaitdb.cli", "worker", "stub_app:make", "--url", url,
             "--grace", grace],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while (info := queue.get(job_id)) is None or info.status != "running":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        for _ in range(signals):
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
        _, stderr = proc.communicate(timeout=30)  # exits: no hang
        assert proc.returncode == 0, stderr
        info = queue.get(job_id)
        assert info is not None and info.status == "queued" and info.attempts == 0, stderr
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
        db.close()
