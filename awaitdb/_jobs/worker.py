"""``Worker``: claim jobs, run them, renew their leases, record outcomes, shut down cleanly.

One worker is a handful of tasks on the event loop::

    claim loop ── claims up to the free slots (one statement per batch), starts one task per job,
    │             sleeps on wake-ups (LISTEN/NOTIFY, in-process, data_version) when idle
    job tasks ─── run the function (plain ``def`` off the loop), then queue a "done" for the
    │             flusher, or record a retry/failure; transactional tasks mark "done" in their
    │             own transaction
    flusher ───── writes the queued "done" marks, many jobs per statement
    heartbeat ─── renews the leases of every running job every ``lease/3`` seconds; a job no
    │             longer ours (cancelled, or re-claimed after our lease expired) is stopped;
    │             every ``lease/2`` seconds returns jobs with expired leases to the queue
    periodic ──── enqueues each periodic task once per cron slot (one winner across workers)

Shutdown (``stop()``, SIGTERM in ``run()``, cancelling ``run()``, leaving ``async with``)::

    stop claiming ── a claim in flight is never cancelled: it gets ``max(grace, 1)`` seconds and
    │                the rows it returns are released unstarted (their attempt is not counted)
    grace ────────── running jobs get ``grace`` seconds to finish
    cancel ───────── the rest are cancelled and get ``grace`` more seconds (clamped to 0.5-5 s);
    │                a task that ignores cancellation is abandoned: no more renewals
    release ──────── the unfinished jobs' leases are released (attempt not counted), so another
    │                worker takes them at once
    flush ─────────── queued "done" marks are written; when the database cannot be reached this
                     gives up after ``max(grace, 1)`` seconds: those jobs run again after their
                     lease expires (at-least-once)

A second SIGTERM/SIGINT in ``run()`` skips the waits (grace and cancel wait) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import random
import signal
import socket
import time
import traceback
import uuid
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import InterfaceError
from .._wakeup import Subscription, waker_for
from .offload import run_off_loop
from .queue import Periodic, Queue, Task, channel_of

if TYPE_CHECKING:
    from .._async.database import Database

__all__ = ["Worker"]

logger = logging.getLogger("awaitdb.jobs")

#: Workers serving now in this process (``Queue.cancel`` stops a local transactional job here).
_serving: weakref.WeakSet[Worker] = weakref.WeakSet()


def _seconds(label: str, value: object, low: float, strict: bool) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and (number > low or (number == low and not strict)):
            return number
    sign = ">" if strict else ">="
    raise InterfaceError(f"{label} must be a finite number of seconds {sign} {low:g}: {value!r}")


class _LeaseLost(Exception):
    """The job is no longer ours: its transactional effects must not commit."""


class Worker:
    """Runs the jobs of one or more queues (of one database) with ``concurrency`` at a time.

    ``Worker(queue)``, ``Worker(queue_a, queue_b)`` or ``Worker([queue_a, queue_b])``.
    """

    def __init__(
        self,
        queues: Queue | Sequence[Queue],
        *more: Queue,
        concurrency: int = 10,
        lease: float = 30.0,
        grace: float = 10.0,
        poll: float = 5.0,
        batch: int | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(queues, Queue):
            items: list[Any] = [queues, *more]
        elif more or isinstance(queues, str) or not isinstance(queues, Iterable):
            items = [queues, *more]  # a list followed by more queues, or not a queue: refused
        else:
            items = list(queues)
        if not items or not all(isinstance(q, Queue) for q in items):
            raise InterfaceError(
                "Worker needs Queues: Worker(queue), Worker(queue_a, queue_b) or a non-empty "
                f"list of Queues, got {', '.join(type(q).__name__ for q in items) or 'none'}"
            )
        if len({id(q.source) for q in items}) != 1:
            raise InterfaceError("all queues of one Worker must use the same Database")
        if len({q.name for q in items}) != len(items):
            raise InterfaceError("a Worker was given the same queue twice")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InterfaceError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        self.lease = _seconds("lease", lease, 0, strict=True)
        self.poll = _seconds("poll", poll, 0, strict=True)
        self.grace = _seconds("grace", grace, 0, strict=False)
        if batch is not None and (
            isinstance(batch, bool) or not isinstance(batch, int) or batch < 1
        ):
            raise InterfaceError(f"batch must be an integer >= 1 or None, got {batch!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise InterfaceError(f"name must be a non-empty string or None, got {name!r}")
        self.queues: list[Queue] = items
        self.concurrency = concurrency
        self.batch = concurrency if batch is None else batch
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: Outcomes recorded by this worker: done, retried, failed, cancelled, released.
        self.counts = dict.fromkeys(("done", "retried", "failed", "cancelled", "released"), 0)
        self._running: dict[int, asyncio.Task[None]] = {}
        self._lost: set[int] = set()
        self._releasing: set[int] = set()
        self._done: list[list[Any]] = []
        self._stopping = False
        self._serving: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._slot: asyncio.Event | None = None
        self._flush_now: asyncio.Event | None = None
        self._renew_now: asyncio.Event | None = None
        self._flush_lock = asyncio.Lock()
        self._force: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._claiming: asyncio.Task[list[Any]] | None = None
        self._tx_slots: asyncio.Semaphore | None = None
        self._tx_running: set[int] = set()
        self._abandoned: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        names = ", ".join(q.name for q in self.queues)
        return f"<Worker {self.id} queues=[{names}] running={len(self._running)}>"

    @property
    def db(self) -> Database:
        """The database of the worker's queues (open once the worker has started)."""
        return self.queues[0].db

    @property
    def running(self) -> int:
        """Jobs running now."""
        return len(self._running)

    @property
    def abandoned(self) -> int:
        """Tasks that ignored cancellation at shutdown and still run (their jobs were released)."""
        return len(self._abandoned)

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Work until ``stop()``, SIGTERM/SIGINT (in the main thread) or cancellation."""
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or no signals here: stop() and cancel still work
        try:
            await self._serve()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        """SIGTERM/SIGINT: the first stops gracefully, a second skips the remaining waits."""
        if self._stopping and self._force is not None:
            logger.warning("second signal: stopping now, without waiting for running jobs")
            self._force.set()
        self.stop()

    def stop(self) -> None:
        """Stop claiming and shut down (running jobs get ``grace`` seconds)."""
        self._stopping = True
        for event in (self._wake, self._slot, self._stopped):
            if event is not None:
                event.set()

    async def __aenter__(self) -> Worker:
        if self._serving is not None:
            raise InterfaceError("this Worker is already running")
        self._serving = asyncio.get_running_loop().create_task(self._serve())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        if self._serving is not None:
            await self._serving

    async def _serve(self) -> None:
        self._stopping = False
        self._wake, self._slot = asyncio.Event(), asyncio.Event()
        self._flush_now, self._renew_now = asyncio.Event(), asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._force, self._stopped = asyncio.Event(), asyncio.Event()
        for queue in self.queues:
            await queue.open()  # a queue given connect() opens its database here
        # Transactional tasks hold a connection for their whole run: leave the heartbeat one
        # (PostgreSQL's pool; SQLite's single writer serializes them anyway).
        reserve = self.queues[0].dialect.HEARTBEAT_CONNECTIONS
        max_size = self.db._backend.pool_stats()["max_size"]
        self._tx_slots = asyncio.Semaphore(
            self.concurrency if not reserve else max(1, min(self.concurrency, max_size - reserve))
        )
        waker = waker_for(self.db)
        subs: list[Subscription] = []
        helpers: list[asyncio.Task[None]] = []
        cancelled = False
        loop = asyncio.get_running_loop()
        try:
            for queue in self.queues:
                await queue.ready()
            for queue in self.queues:
                subs.append(await waker.subscribe(queue.channel))
                helpers.append(loop.create_task(self._forward(subs[-1], self._wake)))
                subs.append(await waker.subscribe(queue.cancel_channel))
                helpers.append(loop.create_task(self._forward(subs[-1], self._renew_now)))
            helpers.append(loop.create_task(self._heartbeat()))
            helpers.append(loop.create_task(self._flusher()))
            helpers.append(loop.create_task(self._periodic()))
            _serving.add(self)
            try:
                await self._claim_loop()
            except asyncio.CancelledError:
                cancelled = True
            await self._shutdown()
        finally:
            _serving.discard(self)
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            for sub in subs:
                sub.close()
            self._serving = None
        if cancelled:
            raise asyncio.CancelledError

    @staticmethod
    async def _forward(sub: Subscription, event: asyncio.Event) -> None:
        while True:
            await sub.wait(None)
            event.set()

    # -- claiming --------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        assert self._wake is not None and self._slot is not None and self._stopped is not None
        queues = self.queues
        refill = max(1, min(self.batch, self.concurrency) // 2)
        turn = 0
        failures = 0
        while not self._stopping:
            free = self.concurrency - len(self._running)
            if free < refill and self._running:
                self._slot.clear()
                await self._slot.wait()
                continue
            self._wake.clear()
            claimed = 0
            try:
                for i in range(len(queues)):
                    queue = queues[(turn + i) % len(queues)]
                    # Not cancelled by stop() or by cancelling run(): the shutdown waits for the
                    # claim in flight and releases the rows it returns (see _release_claim).
                    claim = self._claiming = asyncio.ensure_future(
                        self._claim(queue, min(free, self.batch))
                    )
                    if not await self._unless_stopped(claim):
                        return
                    self._claiming = None
                    rows = claim.result()
                    for row in rows:
                        self._start(queue, row)
                    claimed += len(rows)
                    free -= len(rows)
                    if free <= 0:
                        break
                failures = 0
            except Exception:
                failures += 1
                logger.warning("claiming jobs failed (attempt %d)", failures, exc_info=True)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(5.0, 0.1 * 2**failures)):
                        await self._stopped.wait()
                continue
            turn += 1
            if claimed or self._stopping:
                continue
            idle = asyncio.ensure_future(self._idle_timeout())
            try:
                if not await self._unless_stopped(idle):
                    idle.cancel()
                    return
            except BaseException:
                idle.cancel()
                raise
            timeout = idle.result()
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()

    async def _unless_stopped(self, fut: asyncio.Future[Any]) -> bool:
        """Wait for ``fut`` (never cancelling it) or ``stop()``; True when ``fut`` is done.

        A database that cannot be reached can make a statement wait for a connection for
        ``acquire_timeout`` seconds: stopping does not wait for that.
        """
        assert self._stopped is not None
        if not fut.done():
            stopper = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait([fut, stopper], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
        return fut.done()

    async def _claim(self, queue: Queue, n: int) -> list[Any]:
        sql, params = queue.dialect.stmt(
            "claim", queue=queue.name, worker=self.id, lease=self.lease, n=n
        )
        rows: list[Any] = await self.db.fetch_all(sql, params)
        if len(rows) > 1:  # RETURNING order is not defined: run in queue order
            rows.sort(key=lambda r: (-r[5], r[6], r[0]))
        return rows

    async def _idle_timeout(self) -> float:
        """Seconds to sleep when nothing is ready: until the next scheduled job, at most poll."""
        soonest: float | None = None
        try:
            for queue in self.queues:
                sql, params = queue.dialect.stmt("next_run_at", queue=queue.name)
                value = await self.db.fetch_val(sql, params)
                if value is not None and (soonest is None or value < soonest):
                    soonest = float(value)
        except Exception:
            logger.debug("next_run_at failed", exc_info=True)
        if soonest is None:
            return self.poll
        return max(0.0, min(self.poll, soonest - time.time() + 0.001))

    def _start(self, queue: Queue, row: Any) -> None:
        job_id = int(row[0])
        task = asyncio.get_running_loop().create_task(self._execute(queue, row))
        self._running[job_id] = task
        task.add_done_callback(functools.partial(self._finished, job_id))

    def _finished(self, job_id: int, task: object = None) -> None:
        if self._running.get(job_id) is task:
            del self._running[job_id]
        if self._slot is not None:
            self._slot.set()

    # -- running one job -------------------------------------------------------------------------

    async def _execute(self, queue: Queue, row: Any) -> None:
        job_id, name, args_text, attempts = int(row[0]), row[1], row[2], int(row[3])
        task = queue.tasks.get(name)
        try:
            if task is None:
                await self._fail(
                    queue, job_id, attempts, f"unknown task {name!r}: not defined on {queue!r}"
                )
                return
            try:
                kwargs = json.loads(args_text)
                if not isinstance(kwargs, dict):
                    raise TypeError("stored arguments are not a JSON object")
                task.check_args(kwargs)
            except (TypeError, ValueError) as exc:
                await self._fail(
                    queue, job_id, attempts, f"arguments no longer fit task {name!r}: {exc}"
                )
                return
            if task.transactional:
                assert self._tx_slots is not None
                async with self._tx_slots:
                    self._tx_running.add(job_id)
                    try:
                        await self._run_transactional(queue, task, job_id, attempts, kwargs)
                    finally:
                        self._tx_running.discard(job_id)
                return
            coro = task.fn(**kwargs) if task.is_async else run_off_loop(task.fn, kwargs)
            if task.timeout is None:
                result = await coro
            else:
                async with asyncio.timeout(task.timeout):
                    result = await coro
            self._done.append([job_id, attempts, _encode_result(result)])
            if len(self._done) == 1 and self._flush_now is not None:
                self._flush_now.set()
        except asyncio.CancelledError:
            if job_id in self._lost:
                self._lost.discard(job_id)
                self.counts["cancelled"] += 1
                return
            if job_id in self._releasing:
                return
            raise
        except _LeaseLost:
            logger.warning("job %d: lease lost before commit; its effects were rolled back", job_id)
        except Exception as exc:  # noqa: BLE001 - any error of the task's own code is an outcome
            assert task is not None
            await self._attempt_failed(queue, task, job_id, attempts, exc)

    async def _run_transactional(
        self, queue: Queue, task: Task, job_id: int, attempts: int, kwargs: dict[str, Any]
    ) -> None:
        async with self.db.transaction() as tx:
            if task.timeout is None:
                result = await task.fn(tx, **kwargs)
            else:
                async with asyncio.timeout(task.timeout):
                    result = await task.fn(tx, **kwargs)
            sql, params = queue.dialect.stmt(
                "done_one", id=job_id, attempts=attempts, result=_encode_result(result)
            )
            if await tx.fetch_val(sql, params) is None:
                raise _LeaseLost
        self.counts["done"] += 1

    async def _attempt_failed(
        self, queue: Queue, task: Task, job_id: int, attempts: int, exc: BaseException
    ) -> None:
        if isinstance(exc, TimeoutError) and task.timeout is not None:
            error = f"timed out after {task.timeout:g}s"
        else:
            error = f"{type(exc).__name__}: {exc}"
        trace = "".join(traceback.format_exception(exc))
        if attempts < task.max_attempts:
            delay = task.backoff_for(attempts, random.random())
            sql, params = queue.dialect.stmt(
                "retry_later", id=job_id, attempts=attempts, delay=delay, error=error,
                traceback=trace,
            )  # fmt: skip
            try:
                await self.db.execute(sql, params)
                self.counts["retried"] += 1
                if self._wake is not None:
                    self._wake.set()  # the claim loop re-computes when to look next
            except Exception:
                logger.warning("job %d: could not record its retry", job_id, exc_info=True)
        else:
            await self._fail(queue, job_id, attempts, error, trace)

    async def _fail(
        self, queue: Queue, job_id: int, attempts: int, error: str, trace: str | None = None
    ) -> None:
        sql, params = queue.dialect.stmt(
            "fail", id=job_id, attempts=attempts, error=error, traceback=trace
        )
        try:
            await self.db.execute(sql, params)
            self.counts["failed"] += 1
        except Exception:
            logger.warning("job %d: could not record its failure", job_id, exc_info=True)

    # -- helpers ---------------------------------------------------------------------------------

    async def _flusher(self) -> None:
        assert self._flush_now is not None
        while True:
            await self._flush_now.wait()
            self._flush_now.clear()
            await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:  # the final flush waits for one in flight
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        while self._done:
            batch, self._done = self._done, []
            sql, params = self.queues[0].dialect.stmt("done_many", done=json.dumps(batch))
            try:
                marked = await self.db.execute(sql, params)
            except asyncio.CancelledError:  # a bounded final flush gave up: keep them counted
                self._done[:0] = batch
                raise
            except Exception:
                logger.warning("recording %d done jobs failed; retrying", len(batch), exc_info=True)
                self._done[:0] = batch
                await asyncio.sleep(0.5)
                continue
            self.counts["done"] += marked  # not those cancelled meanwhile

    async def _heartbeat(self) -> None:
        assert self._renew_now is not None
        interval = self.lease / 3
        next_reap = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._renew_now.wait()
            self._renew_now.clear()
            try:
                await self._renew()
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + self.lease / 2
                    await self._reap()
            except Exception:
                logger.warning("renewing leases failed", exc_info=True)

    async def _renew(self) -> None:
        """Extend our leases; stop the jobs that are no longer ours (cancelled or re-claimed)."""
        if not self._running and not self._done:
            return
        before = set(self._running)
        sql, params = self.queues[0].dialect.stmt("renew", worker=self.id, lease=self.lease)
        owned = {int(row[0]) for row in await self.db.fetch_all(sql, params)}
        for job_id in before - owned:
            task = self._running.get(job_id)
            if task is not None and job_id not in self._releasing:
                self._lost.add(job_id)
                task.cancel()

    async def _reap(self) -> None:
        """Return jobs whose lease expired (their worker died) to their queue."""
        sql, params = self.queues[0].dialect.stmt("reap")
        rows = await self.db.fetch_all(sql, params)
        if rows:
            logger.info("re-queued %d job(s) whose lease expired", len(rows))
            waker = waker_for(self.db)
            for queue in {row[0] for row in rows}:
                await waker.notify(channel_of(queue))

    async def _periodic(self) -> None:
        items: list[tuple[Queue, Periodic]] = [
            (q, p) for q in self.queues for p in q.periodic_tasks
        ]
        if not items:
            return
        now = time.time()
        slots = [p.schedule.next_slot(now) for _, p in items]
        while True:
            await asyncio.sleep(max(0.0, min(slots) - time.time()))
            now = time.time()
            for i, (queue, periodic) in enumerate(items):
                if slots[i] <= now:
                    try:
                        await fire_periodic(queue, periodic, slots[i])
                    except Exception:
                        logger.warning("periodic %s failed", periodic.task.name, exc_info=True)
                    slots[i] = periodic.schedule.next_slot(max(slots[i], now))

    # -- shutdown --------------------------------------------------------------------------------

    async def _wait(self, tasks: Iterable[asyncio.Future[Any]], timeout: float) -> set[Any]:
        """Wait until ``tasks`` are done, ``timeout`` passes or a second signal; the pending."""
        assert self._force is not None
        pending = {t for t in tasks if not t.done()}
        forced = asyncio.ensure_future(self._force.wait())
        deadline = time.monotonic() + timeout
        try:
            while pending and not forced.done():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await asyncio.wait(
                    [*pending, forced], timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                pending = {t for t in pending if not t.done()}
        finally:
            forced.cancel()
        return pending

    async def _shutdown(self) -> None:
        self._stopping = True
        bound = max(1.0, self.grace)  # for each database step while stopping
        await self._release_claim(bound)
        tasks = list(self._running.values())
        if tasks:
            pending = await self._wait(tasks, self.grace)
            if pending:
                ids = [i for i, t in self._running.items() if t in pending]
                self._releasing.update(ids)
                for task in pending:
                    task.cancel()
                stuck = await self._wait(pending, max(0.5, min(self.grace, 5.0)))
                for job_id in ids:
                    # A task that ignores cancellation is abandoned: no longer ours to renew.
                    task = self._running.get(job_id)
                    if task is not None and task in stuck:
                        logger.warning("job %d ignored cancellation; abandoning it", job_id)
                        self._abandoned.add(task)
                        task.add_done_callback(self._abandoned.discard)
                        del self._running[job_id]
                await self._bounded(self._release(ids), bound, f"releasing {len(ids)} job(s)")
                self._releasing.difference_update(i for i in ids if i not in self._running)
        if not await self._bounded(self._flush(), bound, "recording done jobs"):
            logger.warning(
                "%d done job(s) could not be recorded; they run again once their lease expires",
                len(self._done),
            )

    async def _release_claim(self, bound: float) -> None:
        """Release the rows of a claim cut short by cancellation: they were never started."""
        claim, self._claiming = self._claiming, None
        if claim is None:
            return
        if await self._wait([claim], bound):
            claim.cancel()
            logger.warning("a claim in flight did not finish; its jobs' leases will expire")
            return
        if claim.cancelled() or claim.exception() is not None:
            return
        ids = [int(row[0]) for row in claim.result()]
        if ids:
            await self._bounded(self._release(ids), bound, f"releasing {len(ids)} claimed job(s)")

    @staticmethod
    async def _bounded(coro: Any, seconds: float, what: str) -> bool:
        """Await ``coro`` for at most ``seconds``; False (logged) when it had to give up."""
        try:
            async with asyncio.timeout(seconds):
                await coro
        except TimeoutError:
            logger.warning("%s gave up after %gs (database unreachable?)", what, seconds)
            return False
        return True

    async def _release(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        sql, params = self.queues[0].dialect.stmt("release", worker=self.id, ids=json.dumps(ids))
        try:
            self.counts["released"] += await self.db.execute(sql, params)
        except Exception:
            logger.warning(
                "releasing %d job(s) failed; their leases will expire", len(ids), exc_info=True
            )
            return
        waker = waker_for(self.db)
        for queue in self.queues:
            await waker.notify(queue.channel)


async def stop_local_transactional(db: Any, job_id: int) -> None:
    """Stop job ``job_id`` if a worker of this process runs it as a transactional task on ``db``.

    Its transaction rolls back and the job stays "running" (the caller then marks it
    cancelled). On SQLite this is what lets ``cancel`` write at all: the job's transaction holds
    the file's one writer until it ends.
    """
    for worker in list(_serving):
        if worker.db is not db and worker.db.url != db.url:
            continue
        task = worker._running.get(job_id)
        if task is None or job_id not in worker._tx_running:
            continue
        worker._lost.add(job_id)
        task.cancel()
        if await worker._wait([task], 5.0):
            logger.warning("job %d: its transactional task did not stop within 5s", job_id)
        elif not task.cancelled() and job_id in worker._lost:
            worker._lost.discard(job_id)  # it finished first; nothing was cancelled


async def fire_periodic(queue: Queue, periodic: Periodic, slot: float) -> int | None:
    """Enqueue ``periodic`` for ``slot`` unless some worker already did; the job id or None."""
    db, dialect = queue.db, queue.dialect
    async with db.transaction():
        sql, params = dialect.stmt("periodic_row", queue=queue.name, task=periodic.task.name)
        await db.execute(sql, params)
        sql, params = dialect.stmt(
            "periodic_take", queue=queue.name, task=periodic.task.name, slot=slot
        )
        if await db.execute(sql, params) != 1:
            return None
        return await periodic.task.enqueue(**periodic.args)


def _encode_result(result: Any) -> str | None:
    if result is None:
        return None
    try:
        return json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(repr(result))
