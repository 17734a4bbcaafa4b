"""The SQL of jobs, as (statement, parameters) pairs built by each backend's dialect.

The statements most of both backends share live here, written with ``{now}`` (the current time
in Unix seconds) and ``{list:param}`` (the rows of a JSON array parameter) placeholders that each
dialect fills in; a dialect overrides the few statements that differ (claiming, batch insert,
batch completion). The dialect only builds SQL: the async ``Queue``/``Worker`` and the sync
client run the same pairs, so both faces speak exactly the same SQL.

``dialect_for(backend)`` finds a backend's subclass through the database's dialect
(``awaitdb/_dialects.py``: ``load("jobs")``, in the backend package's ``jobs.py``).
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from .._dialects import load_feature
from .._errors import InterfaceError
from .._sql import analyze

__all__ = ["COLUMNS", "JOBS", "JobsDialect", "dialect_for"]

JOBS = "awaitdb_jobs"
COLUMNS = (
    "id, queue, task, args, status, priority, run_at, attempts, max_attempts, key, worker, "
    "lease_until, created_at, started_at, finished_at, result, error, traceback"
)

_cache: dict[str, JobsDialect] = {}

Statement = tuple[str, dict[str, Any]]


def dialect_for(backend: str) -> JobsDialect:
    """The jobs SQL of ``backend`` (``db.backend``)."""
    dialect = _cache.get(backend)
    if dialect is None:
        cls = load_feature(backend, "jobs")
        if cls is None:
            raise InterfaceError(f"jobs are not available on the {backend!r} backend")
        dialect = _cache[backend] = cls()
    return dialect


class JobsDialect:
    """Builds every statement the jobs feature runs; subclasses fill in what differs."""

    name = ""
    #: SQL for "now" in Unix seconds; when it is ``:now`` the parameter is added by ``params``.
    NOW = ":now"
    #: ``{list:p}`` becomes this, with ``{p}`` the parameter: one row per element of a JSON array.
    LIST = ""
    #: The same for a JSON array of integers (ids).
    ID_LIST = ""
    #: Statements of each schema version, in order (see ``awaitdb/_jobs/migration.py``).
    SCHEMA: tuple[tuple[str, ...], ...] = ()
    #: The jobs schema's own ledger (never the user's ``awaitdb_migrations``).
    SCHEMA_LEDGER = ""
    #: Serialize schema installs (PostgreSQL: an advisory lock; SQLite's writer is one already).
    LOCK_SCHEMA: str | None = None
    #: A statement that wakes other processes' workers on ``:channel`` (None: commits do).
    NOTIFY: str | None = None
    #: Pool connections a worker keeps free of transactional tasks for its lease renewals.
    HEARTBEAT_CONNECTIONS = 0
    #: One writer per database (SQLite): a running transactional job blocks every other write.
    ONE_WRITER = False

    def __init__(self) -> None:
        self.sql: dict[str, str] = {
            name: self._fill(text) for name, text in self._statements().items()
        }
        self._names = {name: analyze(text).names for name, text in self.sql.items()}

    def _fill(self, text: str) -> str:
        text = text.replace("{now}", self.NOW)
        while "{list:" in text:
            start = text.index("{list:")
            end = text.index("}", start)
            param = text[start + 6 : end]
            text = text[:start] + self.LIST.replace("{p}", param) + text[end + 1 :]
        while "{ids:" in text:
            start = text.index("{ids:")
            end = text.index("}", start)
            param = text[start + 5 : end]
            text = text[:start] + self.ID_LIST.replace("{p}", param) + text[end + 1 :]
        return text

    def stmt(self, name: str, **params: Any) -> Statement:
        """The statement ``name`` with the parameters it uses (and ``now`` where it needs one).

        Callers pass every parameter any dialect's version of the statement takes; each
        dialect keeps the ones its SQL names.
        """
        names = self._names[name]
        if "now" in names:
            params["now"] = time.time()
        return self.sql[name], {k: v for k, v in params.items() if k in names}

    @staticmethod
    def lock_key(name: str) -> int:
        """A stable 32-bit number for an advisory lock named ``name``."""
        return zlib.crc32(name.encode())

    def _statements(self) -> dict[str, str]:
        live = "status IN ('queued', 'running')"
        # Another live job with the same key (checked first: a unique violation inside the
        # caller's transaction would abort it on PostgreSQL).
        held = (
            f"SELECT 1 FROM {JOBS} AS o WHERE o.queue = {JOBS}.queue AND o.key = {JOBS}.key "
            "AND o.status IN ('queued', 'running')"
        )
        return {
            "schema_version": "SELECT max(version) FROM awaitdb_jobs_schema",
            "schema_mark": (
                "INSERT INTO awaitdb_jobs_schema (version, applied_at) VALUES (:version, {now})"
            ),
            "find_live_key": (
                f"SELECT id FROM {JOBS} WHERE queue = :queue AND key = :key AND {live}"
            ),
            "renew": (
                f"UPDATE {JOBS} SET lease_until = {{now}} + :lease "
                "WHERE worker = :worker AND status = 'running' RETURNING id"
            ),
            "done_one": (
                f"UPDATE {JOBS} SET status = 'done', finished_at = {{now}}, lease_until = NULL, "
                "result = :result WHERE id = :id AND attempts = :attempts "
                "AND status = 'running' RETURNING id"
            ),
            "retry_later": (
                f"UPDATE {JOBS} SET status = 'queued', run_at = {{now}} + :delay, worker = NULL, "
                "lease_until = NULL, error = :error, traceback = :traceback "
                "WHERE id = :id AND attempts = :attempts AND status = 'running'"
            ),
            "fail": (
                f"UPDATE {JOBS} SET status = 'failed', finished_at = {{now}}, lease_until = NULL, "
                "error = :error, traceback = :traceback "
                "WHERE id = :id AND attempts = :attempts AND status = 'running'"
            ),
            "release": (
                f"UPDATE {JOBS} SET status = 'queued', run_at = {{now}}, worker = NULL, "
                "lease_until = NULL, attempts = attempts - 1 "
                "WHERE worker = :worker AND status = 'running' AND id IN ({ids:ids})"
            ),
            "reap": (
                f"UPDATE {JOBS} SET "
                "status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, "
                "finished_at = CASE WHEN attempts >= max_attempts THEN {now} ELSE NULL END, "
                "error = 'lease expired: its worker was lost during attempt ' || attempts, "
                "worker = NULL, lease_until = NULL, run_at = {now} "
                "WHERE status = 'running' AND lease_until < {now} RETURNING queue"
            ),
            "next_run_at": (
                f"SELECT min(run_at) FROM {JOBS} WHERE queue = :queue AND status = 'queued'"
            ),
            "get": f"SELECT {COLUMNS} FROM {JOBS} WHERE id = :id",
            "list": (
                f"SELECT {COLUMNS} FROM {JOBS} WHERE queue = :queue ORDER BY id DESC LIMIT :limit"
            ),
            "list_status": (
                f"SELECT {COLUMNS} FROM {JOBS} WHERE queue = :queue AND status = :status "
                "ORDER BY id DESC LIMIT :limit"
            ),
            "cancel": (
                f"UPDATE {JOBS} SET status = 'cancelled', finished_at = {{now}}, "
                f"lease_until = NULL WHERE id = :id AND {live} RETURNING queue"
            ),
            "retry": (
                f"UPDATE {JOBS} SET status = 'queued', run_at = {{now}}, attempts = 0, "
                "worker = NULL, lease_until = NULL, finished_at = NULL "
                "WHERE id = :id AND status IN ('failed', 'cancelled') "
                f"AND NOT EXISTS ({held}) RETURNING queue"
            ),
            # Why "retry" changed nothing: 1 when another live job holds the job's key.
            "retry_blocked": (
                f"SELECT 1 FROM {JOBS} WHERE id = :id AND status IN ('failed', 'cancelled') "
                f"AND EXISTS ({held})"
            ),
            "stats_counts": (
                "SELECT CASE WHEN status = 'queued' AND run_at > {now} THEN 'scheduled' "
                f"ELSE status END AS status, task, count(*) AS n FROM {JOBS} "
                "WHERE queue = :queue GROUP BY 1, 2"
            ),
            "stats_oldest": (
                f"SELECT {{now}} - min(run_at) FROM {JOBS} "
                "WHERE queue = :queue AND status = 'queued' AND run_at <= {now}"
            ),
            "stats_rate": (
                f"SELECT count(*) FROM {JOBS} WHERE queue = :queue AND status = 'done' "
                "AND finished_at > {now} - 60"
            ),
            "purge": (
                f"DELETE FROM {JOBS} WHERE queue = :queue "
                "AND status IN ('done', 'failed', 'cancelled') AND finished_at < {now} - :age"
            ),
            "periodic_row": (
                "INSERT INTO awaitdb_jobs_periodic (queue, task, last_slot) "
                "VALUES (:queue, :task, 0) ON CONFLICT (queue, task) DO NOTHING"
            ),
            "periodic_take": (
                "UPDATE awaitdb_jobs_periodic SET last_slot = :slot "
                "WHERE queue = :queue AND task = :task AND last_slot < :slot"
            ),
        }
