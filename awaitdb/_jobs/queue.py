"""``Queue`` and ``Task``: define tasks, enqueue jobs, look at and control them.

A job is a row of ``awaitdb_jobs`` written with ``db.execute``, so inside
``async with db.transaction():`` it commits or rolls back with the caller's data. Arguments
are stored as JSON; one that cannot be stored raises ``DataError`` naming it, at enqueue time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import json
import math
import re
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import DatabaseBusy, DataError, IntegrityError, InterfaceError
from .._wakeup import waker_for
from .cron import CronSchedule
from .dialect import JobsDialect, dialect_for
from .migration import install
from .models import STATUSES, JobInfo, QueueStats

if TYPE_CHECKING:
    from .._async.database import Database
    from .._connect import Connecting

__all__ = ["RESERVED", "Queue", "Task", "cancel_busy", "encode_args", "run_at_epoch"]

F = TypeVar("F", bound=Callable[..., Any])

#: Keyword arguments of ``enqueue`` that configure the job; a task cannot take these names.
RESERVED = frozenset({"delay", "run_at", "key", "priority"})
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,47}")
_BATCH = 5000  # jobs per INSERT statement in enqueue_many

_installed: weakref.WeakKeyDictionary[Any, asyncio.Future[None]] = weakref.WeakKeyDictionary()


def check_queue_name(name: object) -> str:
    """A queue name: 1-48 letters, digits, ``_``, ``.`` or ``-``."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise InterfaceError(
            f"bad queue name {name!r}: use 1-48 letters, digits, '_', '.' or '-' "
            "(not starting with '.' or '-')"
        )
    return name


def channel_of(queue: str) -> str:
    """The wake-up channel of a queue (news: a job may be ready)."""
    return f"awaitdb_jobs:{queue}"


def cancel_channel_of(queue: str) -> str:
    """The wake-up channel that tells workers a running job of ``queue`` was cancelled."""
    return f"awaitdb_jobs_cancel:{queue}"


def encode_args(task: str, args: Mapping[str, Any]) -> str:
    """The arguments as JSON text; ``DataError`` naming the argument that cannot be stored."""
    try:
        return _storable(
            json.dumps(args, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        )
    except (TypeError, ValueError) as exc:
        for name, value in args.items():
            try:
                _storable(json.dumps(value, allow_nan=False, ensure_ascii=False))
            except (TypeError, ValueError) as inner:
                raise DataError(
                    f"argument {name!r} of task {task!r} cannot be stored as JSON: {inner}"
                ) from None
        raise DataError(f"the arguments of task {task!r} cannot be stored: {exc}") from None


def _storable(text: str) -> str:
    """``text`` when it can be stored (UTF-8); ``UnicodeEncodeError`` (a lone surrogate) else."""
    if not text.isascii():
        text.encode()
    return text


def cancel_busy(job_id: int, exc: DatabaseBusy) -> DatabaseBusy:
    """The error of a cancel that waited past busy_timeout for SQLite's one writer."""
    return DatabaseBusy(
        f"job {job_id} was not cancelled: {exc}. On SQLite a running transactional job of a "
        "worker in another process (or another open transaction) holds the file's one writer "
        "until it ends; cancel again after it"
    )


def run_at_epoch(delay: Any, run_at: Any) -> tuple[float | None, float]:
    """``(run_at, delay)`` in Unix seconds from the ``delay``/``run_at`` options, checked."""
    if delay is not None and run_at is not None:
        raise InterfaceError("give either delay or run_at, not both")
    if run_at is not None:
        if not isinstance(run_at, dt.datetime) or run_at.tzinfo is None:
            raise InterfaceError(f"run_at must be an aware datetime, got {run_at!r}")
        return float(run_at.timestamp()), 0.0
    if delay is None:
        return None, 0.0
    seconds = delay.total_seconds() if isinstance(delay, dt.timedelta) else delay
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InterfaceError(f"delay must be seconds or a timedelta, got {delay!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise InterfaceError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
    return None, float(seconds)


def _check_seconds(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InterfaceError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _check_int(name: str, value: object, low: int = -(2**31), high: int = 2**31 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InterfaceError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


class Task:
    """A function registered on a queue; ``enqueue`` stores a job that a worker runs later."""

    def __init__(
        self,
        queue: Queue,
        fn: Callable[..., Any],
        *,
        name: str,
        retries: int,
        timeout: float | None,
        priority: int,
        transactional: bool,
        backoff: float,
        max_backoff: float,
    ) -> None:
        self.queue = queue
        self.fn = fn
        self.name = name
        self.retries = _check_int("retries", retries, 0, 1000)
        self.timeout = None if timeout is None else _check_seconds("timeout", timeout)
        self.priority = _check_int("priority", priority)
        self.transactional = transactional
        self.backoff = _check_seconds("backoff", backoff)
        self.max_backoff = _check_seconds("max_backoff", max_backoff)
        if self.max_backoff < self.backoff:
            raise InterfaceError(f"max_backoff ({max_backoff!r}) must be >= backoff ({backoff!r})")
        self.is_async = inspect.iscoroutinefunction(fn)
        if transactional and not self.is_async:
            raise InterfaceError(
                f"task {name!r}: transactional=True needs an 'async def' function "
                "(it receives the transaction as its first argument)"
            )
        self.signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        if transactional:
            if not params or params[0].kind not in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            ):
                raise InterfaceError(
                    f"task {name!r}: a transactional task takes the transaction first"
                )
            self.signature = self.signature.replace(parameters=params[1:])
        clash = RESERVED & set(self.signature.parameters)
        if clash:
            raise InterfaceError(
                f"task {name!r}: parameter(s) {sorted(clash)} clash with enqueue options "
                f"{sorted(RESERVED)}; rename them"
            )

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def check_args(self, kwargs: Mapping[str, Any]) -> None:
        """``TypeError`` when ``kwargs`` do not fit the function's parameters."""
        self.signature.bind(**kwargs)

    def backoff_for(self, attempt: int, jitter: float) -> float:
        """Seconds before the next attempt: exponential, capped, with ``jitter`` in [0, 1)."""
        base: float = min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, 60))
        return base * (0.5 + jitter / 2)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, here and now (no job)."""
        return self.fn(*args, **kwargs)

    async def enqueue(
        self,
        *,
        delay: float | dt.timedelta | None = None,
        run_at: dt.datetime | None = None,
        key: str | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> int:
        """Store one job with keyword arguments ``kwargs``; return its id.

        With ``key``, at most one live (queued, scheduled or running) job per key and queue:
        enqueueing again returns the live job's id. Inside a transaction block the job commits
        or rolls back with it.
        """
        return await self.queue._enqueue(
            self, kwargs, delay=delay, run_at=run_at, key=key, priority=priority
        )

    async def enqueue_many(
        self,
        args_list: Iterable[Mapping[str, Any]],
        *,
        delay: float | dt.timedelta | None = None,
        run_at: dt.datetime | None = None,
        priority: int | None = None,
    ) -> list[int]:
        """Store one job per mapping of keyword arguments, in batched statements; their ids."""
        return await self.queue._enqueue_many(
            self, args_list, delay=delay, run_at=run_at, priority=priority
        )

    def __repr__(self) -> str:
        return f"<Task {self.name!r} on queue {self.queue.name!r}>"


class Periodic:
    """A task enqueued by workers once per cron slot."""

    def __init__(self, task: Task, schedule: CronSchedule, args: dict[str, Any]) -> None:
        self.task = task
        self.schedule = schedule
        self.args = args


class Queue:
    """Jobs of one named queue in ``db``; tables are created on first use.

    ``db`` is a ``Database``, or the un-awaited ``awaitdb.connect(url)`` so that a queue can be
    defined at module level: that one is opened on first use (one database for every queue
    given the same object) and closed by ``aclose()``.
    """

    def __init__(self, db: Database | Connecting, name: str = "default") -> None:
        from .._async.database import Database
        from .._connect import Connecting

        if not isinstance(db, Database | Connecting):
            raise InterfaceError(
                "Queue needs an async Database or awaitdb.connect(url), got "
                f"{type(db).__name__}; from sync code use jobs.SyncQueue"
            )
        #: What the queue was given: a ``Database`` or an un-awaited ``connect()``.
        self.source = db
        self._db: Database | None = db if isinstance(db, Database) else None
        self.name = check_queue_name(name)
        self.dialect: JobsDialect = dialect_for(db.backend)
        self.channel = channel_of(name)
        self.cancel_channel = cancel_channel_of(name)
        self.tasks: dict[str, Task] = {}
        self.periodic_tasks: list[Periodic] = []

    def __repr__(self) -> str:
        where = self._db.url if self._db is not None else "a database not open yet"
        return f"<Queue {self.name!r} on {where}>"

    @property
    def db(self) -> Database:
        """The queue's database (``InterfaceError`` if it was given ``connect()`` and no use
        opened it yet: ``await queue.open()``)."""
        if self._db is None:
            raise InterfaceError(
                f"the database of queue {self.name!r} is not open yet: await queue.open() "
                "(enqueue, get and workers open it on first use)"
            )
        return self._db

    async def open(self) -> Database:
        """The queue's database, opening the ``connect()`` it was given if needed."""
        if self._db is None:
            from .._connect import Connecting

            assert isinstance(self.source, Connecting)
            self._db = await self.source.shared()
        return self._db

    async def aclose(self) -> None:
        """Close the database this queue opened from ``connect()``; a given ``Database`` is
        left to its owner. Idempotent."""
        if self._db is not None and self._db is not self.source:
            await self._db.close()

    # -- definitions ---------------------------------------------------------------------------

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        retries: int = 3,
        timeout: float | None = None,
        priority: int = 0,
        transactional: bool = False,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
    ) -> Any:
        """Register a task: ``@queue.task`` or ``@queue.task(retries=5, timeout=60, ...)``.

        Failed attempts are retried ``retries`` times after ``backoff * 2**(attempt-1)`` seconds
        (capped at ``max_backoff``, with jitter). Higher ``priority`` runs first.
        """

        if name is not None and (not isinstance(name, str) or not name):
            raise InterfaceError(f"task name must be a non-empty string or None, got {name!r}")

        def register(fn: Callable[..., Any]) -> Task:
            task_name = name or f"{fn.__module__}.{fn.__qualname__}"
            if task_name in self.tasks:
                raise InterfaceError(f"task {task_name!r} is already defined on {self!r}")
            task = Task(
                self,
                fn,
                name=task_name,
                retries=retries,
                timeout=timeout,
                priority=priority,
                transactional=transactional,
                backoff=backoff,
                max_backoff=max_backoff,
            )
            self.tasks[task_name] = task
            return task

        return register if fn is None else register(fn)

    def periodic(
        self,
        cron: str,
        *,
        name: str | None = None,
        args: Mapping[str, Any] | None = None,
        retries: int = 0,
        timeout: float | None = None,
        priority: int = 0,
        transactional: bool = False,
    ) -> Callable[[Callable[..., Any]], Task]:
        """Register a task that workers enqueue once per slot of ``cron`` (UTC), across workers."""
        schedule = CronSchedule(cron)
        fixed = dict(args or {})

        def register(fn: Callable[..., Any]) -> Task:
            task: Task = self.task(
                fn,
                name=name,
                retries=retries,
                timeout=timeout,
                priority=priority,
                transactional=transactional,
            )
            try:
                task.check_args(fixed)
            except TypeError as exc:
                raise InterfaceError(f"periodic task {task.name!r}: {exc}") from None
            encode_args(task.name, fixed)
            self.periodic_tasks.append(Periodic(task, schedule, fixed))
            return task

        return register

    # -- schema --------------------------------------------------------------------------------

    async def ready(self) -> None:
        """Create or upgrade the jobs tables once per database (``install``)."""
        await self.open()
        future = _installed.get(self.db)
        if future is not None and future.done() and future.exception() is None:
            return
        scope = self.db._scope.get()
        if scope is not None and hasattr(scope, "on_commit"):
            # Inside the caller's transaction: install in it (another connection could wait for
            # this one's locks), and count it as installed only once that transaction commits.
            await install(self.db)
            scope.on_commit(self._mark_installed)
            return
        if future is None or (future.done() and future.exception() is not None):
            future = asyncio.get_running_loop().create_future()
            _installed[self.db] = future
            try:
                await install(self.db)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: the next caller tries again
                raise
            future.set_result(None)
            return
        await asyncio.shield(future)

    def _mark_installed(self) -> None:
        future = _installed.get(self.db)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            _installed[self.db] = future
        future.set_result(None)

    # -- enqueue -------------------------------------------------------------------------------

    def _resolve(self, task: Task | str) -> Task:
        if isinstance(task, Task):
            if task.queue is not self:
                raise InterfaceError(f"{task!r} belongs to another queue")
            return task
        found = self.tasks.get(task)
        if found is None:
            raise InterfaceError(f"no task {task!r} on {self!r}")
        return found

    async def enqueue(
        self,
        task: Task | str,
        /,
        *,
        delay: float | dt.timedelta | None = None,
        run_at: dt.datetime | None = None,
        key: str | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> int:
        """Enqueue ``task`` (a ``Task`` or a task name defined on this queue); its job id."""
        return await self._enqueue(
            self._resolve(task), kwargs, delay=delay, run_at=run_at, key=key, priority=priority
        )

    def _prepare(
        self, task: Task, kwargs: Mapping[str, Any], priority: int | None
    ) -> tuple[str, int]:
        try:
            task.check_args(kwargs)
        except TypeError as exc:
            raise InterfaceError(f"task {task.name!r}: {exc}") from None
        return (
            encode_args(task.name, kwargs),
            task.priority if priority is None else _check_int("priority", priority),
        )

    async def _enqueue(
        self,
        task: Task,
        kwargs: Mapping[str, Any],
        *,
        delay: Any,
        run_at: Any,
        key: str | None,
        priority: int | None,
    ) -> int:
        args, prio = self._prepare(task, kwargs, priority)
        at, wait = run_at_epoch(delay, run_at)
        if key is not None and (not isinstance(key, str) or not key):
            raise InterfaceError(f"key must be a non-empty string, got {key!r}")
        await self.ready()
        db, dialect = self.db, self.dialect
        for _ in range(10):
            sql, params = dialect.stmt(
                "enqueue",
                queue=self.name,
                task=task.name,
                args=args,
                priority=prio,
                run_at=at,
                delay=wait,
                max_attempts=task.max_attempts,
                key=key,
                channel=self.channel,
            )
            job_id = await db.fetch_val(sql, params)
            if job_id is None:  # a live job holds the key
                sql, params = dialect.stmt("find_live_key", queue=self.name, key=key)
                job_id = await db.fetch_val(sql, params)
            if job_id is not None:
                waker_for(db).after_commit(self.channel)
                return int(job_id)
        raise InterfaceError(f"could not enqueue with key {key!r}: it kept changing hands")

    async def _enqueue_many(
        self,
        task: Task,
        args_list: Iterable[Mapping[str, Any]],
        *,
        delay: Any,
        run_at: Any,
        priority: int | None,
    ) -> list[int]:
        items = list(args_list)
        prio = task.priority if priority is None else _check_int("priority", priority)
        for index, kwargs in enumerate(items):
            try:
                task.check_args(kwargs)
            except TypeError as exc:
                raise InterfaceError(f"task {task.name!r}, item {index}: {exc}") from None
        at, wait = run_at_epoch(delay, run_at)
        if not items:
            return []
        await self.ready()
        db, dialect = self.db, self.dialect
        payloads = []
        for start in range(0, len(items), _BATCH):
            chunk = items[start : start + _BATCH]
            try:
                payloads.append(
                    _storable(
                        json.dumps(
                            chunk, separators=(",", ":"), ensure_ascii=False, allow_nan=False
                        )
                    )
                )
            except (TypeError, ValueError):
                for kwargs in chunk:
                    encode_args(task.name, kwargs)  # raises DataError naming the argument
                raise
        ids: list[int] = []
        # One statement is atomic on its own; several share one transaction (or the caller's).
        async with db.transaction() if len(payloads) > 1 else contextlib.nullcontext():
            for payload in payloads:
                sql, params = dialect.stmt(
                    "enqueue_many",
                    queue=self.name,
                    task=task.name,
                    args=payload,
                    priority=prio,
                    run_at=at,
                    delay=wait,
                    max_attempts=task.max_attempts,
                    channel=self.channel,
                )
                rows = await db.fetch_all(sql, params)
                ids.extend(sorted(int(row[0]) for row in rows))
            waker_for(db).after_commit(self.channel)
        return ids

    # -- status and control --------------------------------------------------------------------

    async def get(self, job_id: int) -> JobInfo | None:
        """The job ``job_id`` (of any queue), or None when there is no such job."""
        await self.ready()
        sql, params = self.dialect.stmt("get", id=_check_id(job_id))
        row = await self.db.fetch_one(sql, params)
        return None if row is None else JobInfo.from_row(row, _now())

    async def list(self, status: str | None = None, limit: int = 50) -> list[JobInfo]:
        """The newest jobs of this queue, optionally of one stored status."""
        await self.ready()
        _check_int("limit", limit, 1, 100_000)
        if status is None:
            sql, params = self.dialect.stmt("list", queue=self.name, limit=limit)
        else:
            stored = _stored_status(status)
            sql, params = self.dialect.stmt(
                "list_status", queue=self.name, status=stored, limit=limit
            )
        now = _now()
        jobs = [JobInfo.from_row(row, now) for row in await self.db.fetch_all(sql, params)]
        return [j for j in jobs if status is None or j.status == status]

    async def cancel(self, job_id: int) -> bool:
        """Cancel a queued, scheduled or running job; False when it had already ended.

        A running job's worker notices within moments (it is woken) and stops it. On SQLite a
        running transactional job holds the file's one writer: a worker of this process stops
        it first (its transaction rolls back); see docs/jobs.md for other processes.
        """
        await self.ready()
        _check_id(job_id)
        if self.dialect.ONE_WRITER and self.db._scope.get() is None:
            from .worker import stop_local_transactional

            await stop_local_transactional(self.db, job_id)
        sql, params = self.dialect.stmt("cancel", id=job_id)
        try:
            queue = await self.db.fetch_val(sql, params)
        except DatabaseBusy as exc:
            raise cancel_busy(job_id, exc) from None
        if queue is None:
            return False
        await waker_for(self.db).notify(cancel_channel_of(queue))
        return True

    async def retry(self, job_id: int) -> bool:
        """Queue a failed or cancelled job again, with its attempts reset; False otherwise.

        ``InterfaceError`` when another live job holds its key; the caller's transaction, if
        any, stays usable.
        """
        await self.ready()
        sql, params = self.dialect.stmt("retry", id=_check_id(job_id))
        try:
            queue = await self.db.fetch_val(sql, params)
        except IntegrityError:  # the key was taken between the check and the write
            raise InterfaceError(
                f"job {job_id} cannot be retried: another live job holds its key"
            ) from None
        if queue is None:
            sql, params = self.dialect.stmt("retry_blocked", id=job_id)
            if await self.db.fetch_val(sql, params) is not None:
                raise InterfaceError(
                    f"job {job_id} cannot be retried: another live job holds its key"
                )
            return False
        await waker_for(self.db).notify(channel_of(queue))
        return True

    async def stats(self) -> QueueStats:
        """Counts by status and task, the oldest ready job's wait, done per second (last minute)."""
        await self.ready()
        db, dialect = self.db, self.dialect
        by_status = dict.fromkeys(STATUSES, 0)
        by_task: dict[str, dict[str, int]] = {}
        sql, params = dialect.stmt("stats_counts", queue=self.name)
        for row in await db.fetch_all(sql, params):
            status, task, n = row[0], row[1], int(row[2])
            by_status[status] = by_status.get(status, 0) + n
            by_task.setdefault(task, {})[status] = n
        sql, params = dialect.stmt("stats_oldest", queue=self.name)
        oldest = await db.fetch_val(sql, params)
        sql, params = dialect.stmt("stats_rate", queue=self.name)
        recent = await db.fetch_val(sql, params)
        return QueueStats(
            queue=self.name,
            by_status=by_status,
            by_task=by_task,
            oldest_queued_age=None if oldest is None else max(0.0, float(oldest)),
            done_per_second=int(recent or 0) / 60.0,
        )

    async def purge(self, older_than: float | dt.timedelta = 7 * 86400.0) -> int:
        """Delete this queue's ended jobs (done, failed, cancelled) older than ``older_than``."""
        age = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
        if isinstance(age, bool) or not isinstance(age, int | float) or age < 0:
            raise InterfaceError(f"older_than must be seconds >= 0 or a timedelta: {older_than!r}")
        await self.ready()
        sql, params = self.dialect.stmt("purge", queue=self.name, age=float(age))
        return await self.db.execute(sql, params)


def _check_id(job_id: object) -> int:
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise InterfaceError(f"a job id is an integer, got {job_id!r}")
    return job_id


def _stored_status(status: str) -> str:
    if status not in STATUSES:
        raise InterfaceError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    return "queued" if status == "scheduled" else status


def _now() -> float:
    return time.time()
