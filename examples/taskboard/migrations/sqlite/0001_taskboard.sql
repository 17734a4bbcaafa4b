-- The task board's tables (SQLite; migrations/postgresql/ holds the same schema for PostgreSQL).
-- Jobs and stream events live in awaitdb's own tables (awaitdb.jobs, awaitdb.events).
-- up
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    status TEXT NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'doing', 'done', 'cancelled')),
    version INTEGER NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX tasks_status_id ON tasks (status, id);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL UNIQUE,
    task_id INTEGER NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_log_task ON audit_log (task_id, event_id);
-- down
DROP TABLE audit_log;
DROP TABLE tasks;
