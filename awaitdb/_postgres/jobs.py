"""PostgreSQL's jobs SQL: batched ``FOR UPDATE SKIP LOCKED`` claims, ``pg_notify`` on enqueue.

Times come from the server's clock (``now()`` in Unix seconds), so workers on machines whose
clocks disagree still agree on leases. JSON array parameters are passed as text and expanded
with ``json_array_elements``, which keeps one prepared statement per kind whatever the batch size.
"""

from __future__ import annotations

from .._jobs.dialect import JOBS, JobsDialect

__all__ = ["PostgresJobs"]

_LIVE = "status IN ('queued', 'running')"
# Claims, lease renewals and "done" marks of ordinary jobs commit without waiting for the WAL
# flush: a server crash can forget the last moments of them, and the jobs concerned simply run
# again (at-least-once). Enqueues, failures and transactional tasks' commits stay synchronous.
_NO_WAIT = "(SELECT set_config('synchronous_commit', 'off', true)) AS no_wait"
_RUN_AT = (
    "COALESCE(CAST(:run_at AS double precision), "
    "extract(epoch from now())::float8 + CAST(:delay AS double precision))"
)


class PostgresJobs(JobsDialect):
    """The jobs dialect of PostgreSQL."""

    name = "postgresql"
    NOW = "extract(epoch from now())::float8"
    LIST = "SELECT json_array_elements_text(CAST(:{p} AS text)::json)"
    ID_LIST = "SELECT json_array_elements_text(CAST(:{p} AS text)::json)::bigint"
    LOCK_SCHEMA = "SELECT pg_advisory_xact_lock(:key)"
    NOTIFY = "SELECT pg_notify(:channel, '')"
    HEARTBEAT_CONNECTIONS = 1
    SCHEMA = (
        (
            "CREATE TABLE IF NOT EXISTS awaitdb_jobs ("
            " id BIGSERIAL PRIMARY KEY,"
            " queue TEXT NOT NULL,"
            " task TEXT NOT NULL,"
            " args TEXT NOT NULL,"
            " status TEXT NOT NULL,"
            " priority INTEGER NOT NULL DEFAULT 0,"
            " run_at DOUBLE PRECISION NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0,"
            " max_attempts INTEGER NOT NULL,"
            " key TEXT,"
            " worker TEXT,"
            " lease_until DOUBLE PRECISION,"
            " created_at DOUBLE PRECISION NOT NULL,"
            " started_at DOUBLE PRECISION,"
            " finished_at DOUBLE PRECISION,"
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
            " queue TEXT NOT NULL, task TEXT NOT NULL, last_slot DOUBLE PRECISION NOT NULL,"
            " PRIMARY KEY (queue, task))",
        ),
    )
    SCHEMA_LEDGER = (
        "CREATE TABLE IF NOT EXISTS awaitdb_jobs_schema ("
        " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
    )

    def _statements(self) -> dict[str, str]:
        sql = super()._statements()
        columns = "queue, task, args, status, priority, run_at, max_attempts"
        sql["enqueue"] = (
            f"INSERT INTO {JOBS} ({columns}, key, created_at) "
            "SELECT CAST(:queue AS text), CAST(:task AS text), CAST(:args AS text), 'queued', "
            f"CAST(:priority AS integer), {_RUN_AT}, CAST(:max_attempts AS integer), "
            "CAST(:key AS text), extract(epoch from now())::float8 "
            "FROM (SELECT pg_notify(:channel, '')) AS notified "
            f"ON CONFLICT (queue, key) WHERE key IS NOT NULL AND {_LIVE} DO NOTHING RETURNING id"
        )
        sql["enqueue_many"] = (
            f"INSERT INTO {JOBS} ({columns}, created_at) "
            "SELECT CAST(:queue AS text), CAST(:task AS text), a.value::text, 'queued', "
            f"CAST(:priority AS integer), {_RUN_AT}, CAST(:max_attempts AS integer), "
            "extract(epoch from now())::float8 "
            "FROM json_array_elements(CAST(:args AS text)::json) WITH ORDINALITY AS a(value, n) "
            "CROSS JOIN (SELECT pg_notify(:channel, '')) AS notified ORDER BY a.n RETURNING id"
        )
        sql["claim"] = (
            f"UPDATE {JOBS} AS j SET status = 'running', attempts = j.attempts + 1, "
            "worker = :worker, lease_until = extract(epoch from now())::float8 + :lease, "
            "started_at = extract(epoch from now())::float8 "
            f"FROM (SELECT id FROM {JOBS} WHERE queue = :queue AND status = 'queued' "
            "AND run_at <= extract(epoch from now())::float8 "
            "ORDER BY priority DESC, run_at, id LIMIT :n FOR UPDATE SKIP LOCKED) AS c, "
            f"{_NO_WAIT} WHERE j.id = c.id "
            "RETURNING j.id, j.task, j.args, j.attempts, j.max_attempts, j.priority, j.run_at"
        )
        sql["done_many"] = (
            f"UPDATE {JOBS} AS j SET status = 'done', "
            "finished_at = extract(epoch from now())::float8, lease_until = NULL, "
            "result = d.result FROM (SELECT (e->>0)::bigint AS id, (e->>1)::integer AS attempts, "
            "e->>2 AS result FROM json_array_elements(CAST(:done AS text)::json) AS e) AS d, "
            f"{_NO_WAIT} WHERE j.id = d.id AND j.attempts = d.attempts AND j.status = 'running'"
        )
        sql["renew"] = (
            f"UPDATE {JOBS} SET lease_until = extract(epoch from now())::float8 + :lease "
            f"FROM {_NO_WAIT} WHERE worker = :worker AND status = 'running' RETURNING id"
        )
        return sql
