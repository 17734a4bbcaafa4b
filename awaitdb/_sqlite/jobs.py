"""SQLite's jobs SQL: claims are one ``UPDATE ... RETURNING`` through the single writer.

Times come from the caller's clock (``:now``): every process that opens a SQLite file runs on
the same machine. JSON array parameters are expanded with ``json_each``.
"""

from __future__ import annotations

from .._jobs.dialect import JOBS, JobsDialect

__all__ = ["SQLiteJobs"]

_LIVE = "status IN ('queued', 'running')"


class SQLiteJobs(JobsDialect):
    """The jobs dialect of SQLite."""

    name = "sqlite"
    NOW = ":now"
    LIST = "SELECT value FROM json_each(:{p})"
    ID_LIST = "SELECT value FROM json_each(:{p})"
    ONE_WRITER = True
    SCHEMA = (
        (
            "CREATE TABLE IF NOT EXISTS awaitdb_jobs ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " queue TEXT NOT NULL,"
            " task TEXT NOT NULL,"
            " args TEXT NOT NULL,"
            " status TEXT NOT NULL,"
            " priority INTEGER NOT NULL DEFAULT 0,"
            " run_at REAL NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0,"
            " max_attempts INTEGER NOT NULL,"
            " key TEXT,"
            " worker TEXT,"
            " lease_until REAL,"
            " created_at REAL NOT NULL,"
            " started_at REAL,"
            " finished_at REAL,"
            " result TEXT,"
            " error TEXT,"
            " traceback TEXT)",
            "CREATE INDEX IF NOT EXISTS awaitdb_jobs_ready ON awaitdb_jobs "
            "(queue, priority DESC, run_at, id) WHERE status = 'queued'",
            "CREATE INDEX IF NOT EXISTS awaitdb_jobs_leases ON awaitdb_jobs (lease_until) "
            "WHERE status = 'running'",
            "CREATE UNIQUE INDEX IF NOT EXISTS awaitdb_jobs_key ON awaitdb_jobs (queue, key) "
            f"WHERE key IS NOT NULL AND {_LIVE}",
            "CREATE INDEX IF NOT EXISTS awaitdb_jobs_finished ON awaitdb_jobs "
            "(queue, finished_at) WHERE status IN ('done', 'failed', 'cancelled')",
            "CREATE TABLE IF NOT EXISTS awaitdb_jobs_periodic ("
            " queue TEXT NOT NULL, task TEXT NOT NULL, last_slot REAL NOT NULL,"
            " PRIMARY KEY (queue, task))",
        ),
    )
    SCHEMA_LEDGER = (
        "CREATE TABLE IF NOT EXISTS awaitdb_jobs_schema ("
        " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )

    def _statements(self) -> dict[str, str]:
        sql = super()._statements()
        sql["enqueue"] = (
            f"INSERT INTO {JOBS} (queue, task, args, status, priority, run_at, max_attempts, "
            "key, created_at) VALUES (:queue, :task, :args, 'queued', :priority, "
            "COALESCE(:run_at, :now + :delay), :max_attempts, :key, :now) "
            f"ON CONFLICT (queue, key) WHERE key IS NOT NULL AND {_LIVE} DO NOTHING RETURNING id"
        )
        sql["enqueue_many"] = (
            f"INSERT INTO {JOBS} (queue, task, args, status, priority, run_at, max_attempts, "
            "created_at) SELECT :queue, :task, value, 'queued', :priority, "
            "COALESCE(:run_at, :now + :delay), :max_attempts, :now FROM json_each(:args) "
            "ORDER BY key RETURNING id"
        )
        sql["claim"] = (
            f"UPDATE {JOBS} SET status = 'running', attempts = attempts + 1, worker = :worker, "
            "lease_until = :now + :lease, started_at = :now "
            f"WHERE id IN (SELECT id FROM {JOBS} WHERE queue = :queue AND status = 'queued' "
            "AND run_at <= :now ORDER BY priority DESC, run_at, id LIMIT :n) "
            "RETURNING id, task, args, attempts, max_attempts, priority, run_at"
        )
        sql["done_many"] = (
            f"UPDATE {JOBS} SET status = 'done', finished_at = :now, lease_until = NULL, "
            "result = d.result FROM (SELECT json_extract(value, '$[0]') AS id, "
            "json_extract(value, '$[1]') AS attempts, json_extract(value, '$[2]') AS result "
            f"FROM json_each(:done)) AS d WHERE {JOBS}.id = d.id "
            f"AND {JOBS}.attempts = d.attempts AND {JOBS}.status = 'running'"
        )
        return sql
