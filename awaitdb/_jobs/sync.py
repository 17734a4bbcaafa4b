"""``SyncQueue``: enqueue, inspect and control jobs from sync code (a ``SyncDatabase``).

A small hand-written client over the same dialect statements as the async ``Queue`` (workers
are async only: they need the event loop's wake-ups). Inside ``with db.transaction():`` an
enqueue commits or rolls back with the caller's data. Workers in other processes are woken
by PostgreSQL's NOTIFY (sent by the enqueue statement) or by SQLite's ``data_version`` watcher.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import DatabaseBusy, DatabaseError, IntegrityError, InterfaceError
from .dialect import JobsDialect, dialect_for
from .models import STATUSES, JobInfo, QueueStats
from .queue import (
    Task,
    _check_id,
    _check_int,
    _now,
    _stored_status,
    cancel_busy,
    cancel_channel_of,
    channel_of,
    check_queue_name,
    encode_args,
    run_at_epoch,
)

if TYPE_CHECKING:
    from .._sync.database import SyncDatabase

__all__ = ["SyncQueue", "install_sync"]


def install_sync(db: SyncDatabase) -> int:
    """Create or upgrade the jobs tables from sync code; versions applied."""
    dialect = dialect_for(db.backend)
    if db._scope.get() is None:  # up to date: a read, so no wait for SQLite's writer
        try:
            sql, params = dialect.stmt("schema_version")
            if int(db.fetch_val(sql, params) or 0) >= len(dialect.SCHEMA):
                return 0
        except DatabaseError:
            pass  # no ledger yet
    with db.transaction():
        if dialect.LOCK_SCHEMA:
            db.execute(dialect.LOCK_SCHEMA, {"key": dialect.lock_key("awaitdb_jobs_schema")})
        db.execute(dialect.SCHEMA_LEDGER)
        sql, params = dialect.stmt("schema_version")
        current = db.fetch_val(sql, params) or 0
        applied = 0
        for version, statements in enumerate(dialect.SCHEMA, start=1):
            if version > current:
                for statement in statements:
                    db.execute(statement)
                sql, params = dialect.stmt("schema_mark", version=version)
                db.execute(sql, params)
                applied += 1
        return applied


class SyncQueue:
    """The enqueue/status/control half of ``Queue`` for a ``SyncDatabase``."""

    def __init__(self, db: SyncDatabase, name: str = "default") -> None:
        from .._sync.database import SyncDatabase

        if not isinstance(db, SyncDatabase):
            raise InterfaceError(f"SyncQueue needs a SyncDatabase, got {type(db).__name__}")
        self.db = db
        self.name = check_queue_name(name)
        self.dialect: JobsDialect = dialect_for(db.backend)
        self.channel = channel_of(name)
        self._ready = False

    def __repr__(self) -> str:
        return f"<SyncQueue {self.name!r} on {self.db.url}>"

    def ready(self) -> None:
        """Create or upgrade the jobs tables (once per SyncQueue)."""
        if not self._ready:
            scope = self.db._scope.get()
            install_sync(self.db)
            if scope is not None and hasattr(scope, "on_commit"):
                scope.on_commit(self._mark_ready)  # counts only if the caller's block commits
            else:
                self._ready = True

    def _mark_ready(self) -> None:
        self._ready = True

    def enqueue(
        self,
        task: Task | str,
        /,
        *,
        delay: float | dt.timedelta | None = None,
        run_at: dt.datetime | None = None,
        key: str | None = None,
        priority: int | None = None,
        retries: int | None = None,
        **kwargs: Any,
    ) -> int:
        """Store one job of ``task`` (a ``Task`` or a task name); its id (see ``Task.enqueue``)."""
        name, prio, max_attempts = self._task_options(task, kwargs, priority, retries)
        args = encode_args(name, kwargs)
        at, wait = run_at_epoch(delay, run_at)
        if key is not None and (not isinstance(key, str) or not key):
            raise InterfaceError(f"key must be a non-empty string, got {key!r}")
        self.ready()
        for _ in range(10):
            sql, params = self.dialect.stmt(
                "enqueue", queue=self.name, task=name, args=args, priority=prio, run_at=at,
                delay=wait, max_attempts=max_attempts, key=key, channel=self.channel,
            )  # fmt: skip
            job_id = self.db.fetch_val(sql, params)
            if job_id is None:
                sql, params = self.dialect.stmt("find_live_key", queue=self.name, key=key)
                job_id = self.db.fetch_val(sql, params)
            if job_id is not None:
                return int(job_id)
        raise InterfaceError(f"could not enqueue with key {key!r}: it kept changing hands")

    def enqueue_many(
        self,
        task: Task | str,
        args_list: Iterable[Mapping[str, Any]],
        *,
        delay: float | dt.timedelta | None = None,
        run_at: dt.datetime | None = None,
        priority: int | None = None,
        retries: int | None = None,
    ) -> list[int]:
        """Store one job per mapping, in batched statements, in one transaction; their ids."""
        items = list(args_list)
        name, prio, max_attempts = self._task_options(task, None, priority, retries)
        for kwargs in items:
            if isinstance(task, Task):
                try:
                    task.check_args(kwargs)
                except TypeError as exc:
                    raise InterfaceError(f"task {name!r}: {exc}") from None
            encode_args(name, kwargs)
        at, wait = run_at_epoch(delay, run_at)
        if not items:
            return []
        self.ready()
        ids: list[int] = []
        with self.db.transaction():
            for start in range(0, len(items), 5000):
                payload = json.dumps(items[start : start + 5000], separators=(",", ":"))
                sql, params = self.dialect.stmt(
                    "enqueue_many", queue=self.name, task=name, args=payload, priority=prio,
                    run_at=at, delay=wait, max_attempts=max_attempts, channel=self.channel,
                )  # fmt: skip
                ids.extend(sorted(int(r[0]) for r in self.db.fetch_all(sql, params)))
        return ids

    def _task_options(
        self,
        task: Task | str,
        kwargs: Mapping[str, Any] | None,
        priority: int | None,
        retries: int | None,
    ) -> tuple[str, int, int]:
        if isinstance(task, Task):
            if task.queue.name != self.name:
                raise InterfaceError(f"{task!r} belongs to queue {task.queue.name!r}")
            if kwargs is not None:
                try:
                    task.check_args(kwargs)
                except TypeError as exc:
                    raise InterfaceError(f"task {task.name!r}: {exc}") from None
            name, prio, attempts = task.name, task.priority, task.max_attempts
        elif isinstance(task, str) and task:
            name, prio, attempts = task, 0, 4
        else:
            raise InterfaceError(f"a task is a Task or a task name, got {task!r}")
        if priority is not None:
            prio = _check_int("priority", priority)
        if retries is not None:
            attempts = _check_int("retries", retries, 0, 1000) + 1
        return name, prio, attempts

    def get(self, job_id: int) -> JobInfo | None:
        """The job ``job_id``, or None."""
        self.ready()
        sql, params = self.dialect.stmt("get", id=_check_id(job_id))
        row = self.db.fetch_one(sql, params)
        return None if row is None else JobInfo.from_row(row, _now())

    def list(self, status: str | None = None, limit: int = 50) -> list[JobInfo]:
        """The newest jobs of this queue, optionally of one status."""
        self.ready()
        _check_int("limit", limit, 1, 100_000)
        if status is None:
            sql, params = self.dialect.stmt("list", queue=self.name, limit=limit)
        else:
            sql, params = self.dialect.stmt(
                "list_status", queue=self.name, status=_stored_status(status), limit=limit
            )
        now = _now()
        jobs = [JobInfo.from_row(row, now) for row in self.db.fetch_all(sql, params)]
        return [j for j in jobs if status is None or j.status == status]

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued, scheduled or running job; False when it had already ended."""
        self.ready()
        sql, params = self.dialect.stmt("cancel", id=_check_id(job_id))
        try:
            queue = self.db.fetch_val(sql, params)
        except DatabaseBusy as exc:
            raise cancel_busy(job_id, exc) from None
        if queue is None:
            return False
        self._notify(cancel_channel_of(queue))
        return True

    def _notify(self, channel: str) -> None:
        """Wake workers in other processes (SQLite's see the commit itself: no statement)."""
        if self.dialect.NOTIFY:
            self.db.execute(self.dialect.NOTIFY, {"channel": channel})

    def retry(self, job_id: int) -> bool:
        """Queue a failed or cancelled job again with its attempts reset."""
        self.ready()
        sql, params = self.dialect.stmt("retry", id=_check_id(job_id))
        try:
            queue = self.db.fetch_val(sql, params)
        except IntegrityError:  # the key was taken between the check and the write
            raise InterfaceError(
                f"job {job_id} cannot be retried: another live job holds its key"
            ) from None
        if queue is None:
            sql, params = self.dialect.stmt("retry_blocked", id=job_id)
            if self.db.fetch_val(sql, params) is not None:
                raise InterfaceError(
                    f"job {job_id} cannot be retried: another live job holds its key"
                )
            return False
        self._notify(channel_of(queue))
        return True

    def stats(self) -> QueueStats:
        """Counts by status and task, oldest ready job's wait, done per second."""
        self.ready()
        by_status = dict.fromkeys(STATUSES, 0)
        by_task: dict[str, dict[str, int]] = {}
        sql, params = self.dialect.stmt("stats_counts", queue=self.name)
        for row in self.db.fetch_all(sql, params):
            by_status[row[0]] = by_status.get(row[0], 0) + int(row[2])
            by_task.setdefault(row[1], {})[row[0]] = int(row[2])
        sql, params = self.dialect.stmt("stats_oldest", queue=self.name)
        oldest = self.db.fetch_val(sql, params)
        sql, params = self.dialect.stmt("stats_rate", queue=self.name)
        recent = self.db.fetch_val(sql, params)
        return QueueStats(
            queue=self.name,
            by_status=by_status,
            by_task=by_task,
            oldest_queued_age=None if oldest is None else max(0.0, float(oldest)),
            done_per_second=int(recent or 0) / 60.0,
        )

    def purge(self, older_than: float | dt.timedelta = 7 * 86400.0) -> int:
        """Delete this queue's ended jobs older than ``older_than``; how many."""
        age = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
        if isinstance(age, bool) or not isinstance(age, int | float) or age < 0:
            raise InterfaceError(f"older_than must be seconds >= 0 or a timedelta: {older_than!r}")
        self.ready()
        sql, params = self.dialect.stmt("purge", queue=self.name, age=float(age))
        return self.db.execute(sql, params)
