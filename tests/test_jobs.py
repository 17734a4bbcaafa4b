"""Durable jobs (awaitdb.jobs) on both backends, on real databases: enqueue, claim, outcomes."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import awaitdb
from awaitdb import DataError, InterfaceError, jobs
from awaitdb._jobs.queue import Periodic
from awaitdb._jobs.worker import fire_periodic


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Wait (bounded) until ``check()`` is true; fail the test otherwise."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def settled(queue: jobs.Queue) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        stats = await queue.stats()
        return stats.by_status["queued"] == 0 and stats.by_status["running"] == 0

    return check


async def status_of(queue: jobs.Queue, job_id: int, wanted: str) -> None:
    async def check() -> bool:
        info = await queue.get(job_id)
        return info is not None and info.status == wanted

    await until(check)


async def test_transactional_enqueue_rolls_back_or_commits(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)

    @queue.task
    async def work(n: int) -> None:
        pass

    await adb.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    with pytest.raises(RuntimeError):
        async with adb.transaction():
            await adb.execute("INSERT INTO orders VALUES (1)")
            await work.enqueue(n=1)
            raise RuntimeError("roll back")
    assert (await queue.stats()).by_status["queued"] == 0
    async with adb.transaction():
        await adb.execute("INSERT INTO orders VALUES (1)")
        job_id = await work.enqueue(n=1)
    assert (await queue.stats()).by_status["queued"] == 1
    info = await queue.get(job_id)
    assert info is not None and info.status == "queued" and info.args == {"n": 1}


async def test_jobs_run_and_results_are_kept(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb, "q1")
    threads: list[int] = []

    @queue.task
    async def double(n: int) -> int:
        return n * 2

    @queue.task
    def blocking(n: int) -> int:
        threads.append(threading.get_ident())
        return n + 1

    ids = [await double.enqueue(n=i) for i in range(20)]
    ids += await blocking.enqueue_many([{"n": i} for i in range(30)])
    assert len(ids) == 50 and len(set(ids)) == 50
    async with jobs.Worker(queue, concurrency=4) as worker:
        await until(settled(queue))
    assert worker.counts["done"] == 50
    first = await queue.get(ids[3])
    assert first is not None and first.status == "done" and first.result == 6
    assert first.attempts == 1 and first.finished_at is not None
    last = await queue.get(ids[-1])
    assert last is not None and last.result == 30
    assert threads and threading.get_ident() not in threads  # plain def ran off the loop


async def test_priorities_then_run_at_order(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)
    order: list[str] = []

    @queue.task
    async def note(name: str) -> None:
        order.append(name)

    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
    await note.enqueue(name="low-late", priority=0)
    await note.enqueue(name="low-early", priority=0, run_at=past)
    await note.enqueue(name="high", priority=5)
    await note.enqueue(name="future", run_at=past + dt.timedelta(hours=1))
    async with jobs.Worker(queue, concurrency=1):
        await until(lambda: _true(len(order) == 3))
        await asyncio.sleep(0.1)
    assert order == ["high", "low-early", "low-late"]


async def _true(value: bool) -> bool:
    return value


async def test_delay_makes_a_scheduled_job(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)
    ran: list[float] = []

    @queue.task
    async def later() -> None:
        ran.append(time.time())

    start = time.time()
    job_id = await later.enqueue(delay=0.3)
    info = await queue.get(job_id)
    assert info is not None and info.status == "scheduled"
    async with jobs.Worker(queue):
        await status_of(queue, job_id, "done")
    assert ran and ran[0] >= start + 0.3


async def test_dedup_key_under_concurrent_enqueue(
    adb: awaitdb.Database, aconnect: Callable[..., Any]
) -> None:
    other = await aconnect()
    queues = [jobs.Queue(adb), jobs.Queue(other)]
    tasks = []
    for q in queues:

        @q.task(name="mail")
        async def mail(to: str) -> None:
            pass

        tasks.append(mail)
    await queues[0].ready()
    ids = await asyncio.gather(*(tasks[i % 2].enqueue(to="x", key="mail-x") for i in range(40)))
    assert len(set(ids)) == 1
    stats = await queues[0].stats()
    assert stats.by_status["queued"] == 1
    # Once the job has ended, the key is free again.
    assert await queues[0].cancel(ids[0])
    again = await tasks[0].enqueue(to="x", key="mail-x")
    assert again != ids[0]


async def test_failures_retry_with_backoff_then_fail_with_traceback(
    adb: awaitdb.Database,
) -> None:
    queue = jobs.Queue(adb)
    calls: list[float] = []

    @queue.task(retries=2, backoff=0.05, max_backoff=0.1)
    async def broken() -> None:
        calls.append(time.monotonic())
        raise ValueError("broken on purpose")

    job_id = await broken.enqueue()
    async with jobs.Worker(queue) as worker:
        await status_of(queue, job_id, "failed")
    info = await queue.get(job_id)
    assert info is not None
    assert len(calls) == 3 and info.attempts == 3
    assert info.error == "ValueError: broken on purpose"
    assert info.traceback is not None and "broken on purpose" in info.traceback
    assert calls[1] - calls[0] >= 0.025  # backoff (with jitter: at least half the base)
    assert worker.counts["retried"] == 2 and worker.counts["failed"] == 1
    # retry() gives it its attempts back
    assert await queue.retry(job_id)
    info = await queue.get(job_id)
    assert info is not None and info.status == "queued" and info.attempts == 0
    assert not await queue.retry(job_id)  # not failed any more


async def test_timeout_counts_as_a_failed_attempt(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)

    @queue.task(retries=0, timeout=0.1)
    async def slow() -> None:
        await asyncio.sleep(30)

    job_id = await slow.enqueue()
    async with jobs.Worker(queue):
        await status_of(queue, job_id, "failed")
    info = await queue.get(job_id)
    assert info is not None and info.error == "timed out after 0.1s"


async def test_unknown_task_and_arguments_that_no_longer_fit(adb: awaitdb.Database) -> None:
    producer = jobs.Queue(adb)

    @producer.task(name="gone")
    async def gone() -> None:
        pass

    @producer.task(name="changed")
    async def changed_before(a: int) -> None:
        pass

    gone_id = await gone.enqueue()
    changed_id = await changed_before.enqueue(a=1)

    consumer = jobs.Queue(adb)  # the new code: "gone" removed, "changed" takes other arguments
    done: list[int] = []

    @consumer.task(name="changed")
    async def changed_after(b: int) -> None:
        pass

    @consumer.task(name="fine")
    async def fine(n: int) -> None:
        done.append(n)

    fine_id = await fine.enqueue(n=1)
    async with jobs.Worker(consumer):
        await status_of(consumer, fine_id, "done")
        await status_of(consumer, gone_id, "failed")
        await status_of(consumer, changed_id, "failed")
    gone_info = await consumer.get(gone_id)
    changed_info = await consumer.get(changed_id)
    assert gone_info is not None and "unknown task 'gone'" in (gone_info.error or "")
    assert gone_info.attempts == 1
    assert changed_info is not None and "no longer fit" in (changed_info.error or "")
    assert done == [1]


async def test_bad_input_is_refused_clearly(adb: awaitdb.Database) -> None:
    with pytest.raises(InterfaceError, match="queue name"):
        jobs.Queue(adb, "bad name!")
    queue = jobs.Queue(adb)

    @queue.task
    async def take(when: Any, n: int = 0) -> None:
        pass

    with pytest.raises(DataError, match="'when'"):
        await take.enqueue(when=object())
    with pytest.raises(DataError, match="'when'"):
        await take.enqueue(when=float("nan"))
    with pytest.raises(DataError, match="'when'"):
        await take.enqueue_many([{"when": 1}, {"when": {1, 2}}])
    with pytest.raises(InterfaceError, match="unexpected keyword"):
        await take.enqueue(when=1, nope=2)
    with pytest.raises(InterfaceError, match="aware"):
        await take.enqueue(when=1, run_at=dt.datetime(2030, 1, 1))
    with pytest.raises(InterfaceError, match="delay"):
        await take.enqueue(when=1, delay=-1)
    with pytest.raises(InterfaceError, match="cron"):
        queue.periodic("every day")
    with pytest.raises(InterfaceError, match="cron"):
        queue.periodic("61 * * * *")
    with pytest.raises(InterfaceError, match="transactional"):

        @queue.task(transactional=True)
        def sync_tx(tx: Any) -> None:
            pass

    with pytest.raises(InterfaceError, match="clash"):

        @queue.task
        async def clash(key: str) -> None:
            pass

    with pytest.raises(InterfaceError, match="already defined"):
        queue.task(name=take.name)(take.fn)
    with pytest.raises(InterfaceError):
        jobs.Worker(queue, concurrency=0)
    assert (await queue.stats()).by_status["queued"] == 0  # nothing half-stored


async def test_cancel_queued_and_running_jobs(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)
    started = asyncio.Event()
    stopped: list[bool] = []

    @queue.task
    async def long() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append(True)
            raise

    queued_id = await long.enqueue(delay=60)
    assert await queue.cancel(queued_id)
    assert not await queue.cancel(queued_id)
    info = await queue.get(queued_id)
    assert info is not None and info.status == "cancelled"

    running_id = await long.enqueue()
    async with jobs.Worker(queue, lease=30) as worker:
        await asyncio.wait_for(started.wait(), 20)
        assert await queue.cancel(running_id)
        await until(lambda: _true(worker.running == 0))
    assert stopped == [True]
    info = await queue.get(running_id)
    assert info is not None and info.status == "cancelled"


async def test_transactional_task_effects_commit_with_the_done_mark(
    adb: awaitdb.Database,
) -> None:
    queue = jobs.Queue(adb)
    await adb.execute("CREATE TABLE effects (n INTEGER)")
    fails = {"left": 1}

    @queue.task(transactional=True, retries=3, backoff=0.01, max_backoff=0.01)
    async def apply(tx: Any, n: int) -> int:
        await tx.execute("INSERT INTO effects VALUES (:n)", {"n": n})
        if fails["left"]:
            fails["left"] -= 1
            raise RuntimeError("after the write: must roll back")
        return n

    job_id = await apply.enqueue(n=7)
    async with jobs.Worker(queue):
        await status_of(queue, job_id, "done")
    assert await adb.fetch_val("SELECT count(*) FROM effects") == 1
    info = await queue.get(job_id)
    assert info is not None and info.attempts == 2 and info.result == 7


async def test_a_stale_worker_cannot_commit_transactional_effects(
    adb: awaitdb.Database,
) -> None:
    """The done mark checks the attempt: a worker whose lease was taken over rolls back."""
    queue = jobs.Queue(adb)
    await adb.execute("CREATE TABLE effects (n INTEGER)")
    job_id = await queue.enqueue(
        queue.task(name="t", transactional=True)(_effect), n=1
    )  # fmt: skip
    await adb.execute(
        "UPDATE awaitdb_jobs SET status = 'running', attempts = 2, worker = 'other' WHERE id = :id",
        {"id": job_id},
    )
    worker = jobs.Worker(queue)
    row = await adb.fetch_one(
        "SELECT id, task, args, 1 AS attempts, max_attempts, priority, run_at "
        "FROM awaitdb_jobs WHERE id = :id",
        {"id": job_id},
    )
    await worker._execute(queue, row)  # attempt 1, which is no longer the current one
    assert await adb.fetch_val("SELECT count(*) FROM effects") == 0


async def _effect(tx: Any, n: int) -> None:
    await tx.execute("INSERT INTO effects VALUES (:n)", {"n": n})


async def test_expired_lease_is_claimed_again_and_counted(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)
    ran: list[int] = []

    @queue.task(retries=3)
    async def work(n: int) -> None:
        ran.append(n)

    job_id = await work.enqueue(n=1)
    # A worker that died holding the job: running, its lease expired.
    await adb.execute(
        "UPDATE awaitdb_jobs SET status = 'running', attempts = 1, worker = 'dead', "
        "lease_until = :past WHERE id = :id",
        {"past": time.time() - 5, "id": job_id},
    )
    async with jobs.Worker(queue, lease=0.6):
        await status_of(queue, job_id, "done")
    info = await queue.get(job_id)
    assert info is not None and info.attempts == 2 and ran == [1]


async def test_shutdown_releases_unfinished_jobs(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)
    started = asyncio.Event()

    @queue.task
    async def long() -> None:
        started.set()
        await asyncio.sleep(30)

    job_id = await long.enqueue()
    worker = jobs.Worker(queue, grace=0.2)
    async with worker:
        await asyncio.wait_for(started.wait(), 20)
    assert worker.counts["released"] == 1
    info = await queue.get(job_id)
    assert info is not None and info.status == "queued" and info.attempts == 0


async def test_cancelling_run_shuts_down_gracefully(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)
    finished: list[bool] = []

    @queue.task
    async def short() -> None:
        await asyncio.sleep(0.2)
        finished.append(True)

    await short.enqueue()
    worker = jobs.Worker(queue, grace=5)
    runner = asyncio.ensure_future(worker.run())
    await until(lambda: _true(worker.running == 1))
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert finished == [True]  # the job in flight finished within the grace time
    assert worker.counts["done"] == 1


async def test_periodic_runs_once_per_slot_across_workers(
    adb: awaitdb.Database, aconnect: Callable[..., Any]
) -> None:
    dbs = [adb] + [await aconnect() for _ in range(3)]
    queues = [jobs.Queue(db) for db in dbs]
    periodics: list[Periodic] = []
    for q in queues:

        @q.periodic("*/5 * * * *", name="tick", args={"label": "x"})
        async def tick(label: str) -> None:
            pass

        periodics.append(q.periodic_tasks[0])
    await queues[0].ready()
    slot = periodics[0].schedule.next_slot(time.time())
    for _ in range(2):  # the same slot twice (a restart): still one job
        ids = await asyncio.gather(
            *(fire_periodic(q, p, slot) for q, p in zip(queues, periodics, strict=True))
        )
        assert sum(i is not None for i in ids) <= 1
    assert (await queues[0].stats()).by_status["queued"] == 1
    next_ids = await asyncio.gather(
        *(fire_periodic(q, p, slot + 300) for q, p in zip(queues, periodics, strict=True))
    )
    assert sum(i is not None for i in next_ids) == 1
    assert periodics[0].schedule.next_slot(slot) == slot + 300


async def test_stats_list_and_purge(adb: awaitdb.Database) -> None:
    queue = jobs.Queue(adb)

    @queue.task
    async def ok() -> None:
        pass

    await ok.enqueue_many([{} for _ in range(5)])
    await ok.enqueue(delay=3600)
    async with jobs.Worker(queue):
        await until(lambda: _done_count(queue, 5))
    stats = await queue.stats()
    assert stats.by_status["done"] == 5 and stats.by_status["scheduled"] == 1
    assert stats.by_task[ok.name] == {"done": 5, "scheduled": 1}
    assert stats.done_per_second > 0
    assert len(await queue.list()) == 6
    assert [j.status for j in await queue.list("scheduled")] == ["scheduled"]
    assert await queue.purge(older_than=3600) == 0
    assert await queue.purge(older_than=0) == 5
    assert len(await queue.list()) == 1


async def _done_count(queue: jobs.Queue, n: int) -> bool:
    return (await queue.stats()).by_status["done"] == n


async def test_install_works_inside_a_user_migration(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_jobs.py").write_text(
        "from awaitdb import jobs\n\nasync def up(tx):\n    await jobs.install(tx)\n"
    )
    db = await awaitdb.connect(db_url, migrations=str(folder))
    try:
        assert await db.fetch_val("SELECT max(version) FROM awaitdb_jobs_schema") == 1
        assert await jobs.install(db) == 0  # up to date
        queue = jobs.Queue(db)
        await queue.ready()
        assert await db.fetch_val("SELECT count(*) FROM awaitdb_migrations") == 1
    finally:
        await db.close()


def test_sync_queue_enqueue_status_and_control(sdb: awaitdb.SyncDatabase) -> None:
    queue = jobs.SyncQueue(sdb, "mail")
    with pytest.raises(RuntimeError), sdb.transaction():
        queue.enqueue("send", to="a")
        raise RuntimeError("roll back")
    assert queue.stats().by_status["queued"] == 0
    with sdb.transaction():
        job_id = queue.enqueue("send", to="a", key="a")
    assert queue.enqueue("send", to="a", key="a") == job_id
    info = queue.get(job_id)
    assert info is not None and info.task == "send" and info.args == {"to": "a"}
    assert len(queue.enqueue_many("send", [{"to": str(i)} for i in range(10)])) == 10
    assert queue.stats().by_status["queued"] == 11
    assert queue.cancel(job_id) and queue.get(job_id).status == "cancelled"  # type: ignore[union-attr]
    assert queue.retry(job_id) and queue.get(job_id).status == "queued"  # type: ignore[union-attr]
    with pytest.raises(DataError, match="'to'"):
        queue.enqueue("send", to=b"bytes")
    assert [j.id for j in queue.list(limit=1)] == [max(j.id for j in queue.list(limit=100))]


class EveryQuarterSecond:
    """A schedule with a slot every 0.25 s (cron's finest grain is a minute)."""

    def next_slot(self, after: float) -> float:
        return (int(after * 4) + 1) / 4


async def test_periodic_loop_of_several_workers_enqueues_each_slot_once(
    adb: awaitdb.Database, aconnect: Callable[..., Any]
) -> None:
    dbs = [adb] + [await aconnect() for _ in range(2)]
    queues = [jobs.Queue(db) for db in dbs]
    for q in queues:

        @q.periodic("* * * * *", name="tick")
        async def tick() -> None:
            pass

        q.periodic_tasks[0].schedule = EveryQuarterSecond()  # type: ignore[assignment]
    await queues[0].ready()
    workers = [jobs.Worker(q) for q in queues]
    start = time.time()
    for worker in workers:
        await worker.__aenter__()
    try:
        await asyncio.sleep(1.6)
    finally:
        stop = time.time()
        for worker in workers:
            await worker.__aexit__(None, None, None)
    slots = int(stop * 4) - int(start * 4)
    count = await adb.fetch_val("SELECT count(*) FROM awaitdb_jobs WHERE task = 'tick'")
    assert slots - 1 <= count <= slots + 1  # three workers, yet one job per slot


async def test_one_worker_serves_several_queues(adb: awaitdb.Database) -> None:
    mail, billing = jobs.Queue(adb, "mail"), jobs.Queue(adb, "billing")
    seen: list[str] = []

    @mail.task(name="send")
    async def send(n: int) -> None:
        seen.append(f"mail{n}")

    @billing.task(name="charge")
    async def charge(n: int) -> None:
        seen.append(f"billing{n}")

    for i in range(3):
        await send.enqueue(n=i)
        await charge.enqueue(n=i)
    with pytest.raises(InterfaceError, match="same queue twice"):
        jobs.Worker([mail, mail])
    async with jobs.Worker([mail, billing], concurrency=2):
        await until(lambda: _true(len(seen) == 6))
    assert sorted(seen) == sorted(
        [f"mail{i}" for i in range(3)] + [f"billing{i}" for i in range(3)]
    )
