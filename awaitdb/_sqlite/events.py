"""SQLite SQL for the event stream (``awaitdb/_events``).

SQLite has one writer at a time, so ids are handed out in commit order: a position is the id
alone (``xid`` is always 0). ``AUTOINCREMENT`` keeps ids from being reused after a trim.
Consumers in other processes are woken by the wake-up layer's ``PRAGMA data_version`` watcher.
"""

from __future__ import annotations

__all__ = ["SQL"]

_MAX = 9223372036854775807


class SQL:
    """The stream's statements in SQLite's dialect."""

    name = "sqlite"
    #: SQLite's one writer: the built-in tables are created inside the caller's transaction.
    setup_in_caller_transaction = True
    max_position = (0, _MAX)

    schema_exists = (
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table'"
        " AND name = 'awaitdb_events_schema'"
    )
    setup_lock = None
    ddl = (
        "CREATE TABLE IF NOT EXISTS awaitdb_events ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " xid INTEGER NOT NULL DEFAULT 0,"
        " name TEXT NOT NULL,"
        " data TEXT,"
        " publisher TEXT NOT NULL,"
        " at REAL NOT NULL)",
        "CREATE TABLE IF NOT EXISTS awaitdb_events_groups ("
        " grp TEXT PRIMARY KEY,"
        " pattern TEXT NOT NULL,"
        " cursor_xid INTEGER NOT NULL,"
        " cursor_id INTEGER NOT NULL,"
        " created_at REAL NOT NULL)",
        "CREATE TABLE IF NOT EXISTS awaitdb_events_claims ("
        " grp TEXT NOT NULL REFERENCES awaitdb_events_groups (grp) ON DELETE CASCADE,"
        " from_xid INTEGER NOT NULL,"
        " from_id INTEGER NOT NULL,"
        " to_xid INTEGER NOT NULL,"
        " to_id INTEGER NOT NULL,"
        " consumer TEXT NOT NULL,"
        " lease_until REAL NOT NULL,"
        " deliveries INTEGER NOT NULL DEFAULT 1,"
        " PRIMARY KEY (grp, from_xid, from_id))",
        "CREATE TABLE IF NOT EXISTS awaitdb_events_schema (version INTEGER NOT NULL)",
    )

    publish = (
        "INSERT INTO awaitdb_events (name, data, publisher, at)"
        " VALUES (:name, :data, :publisher, :at) RETURNING id"
    )
    publish_notify = publish
    notify = None  # other processes see the commit through PRAGMA data_version

    # The group row (the writer lock is held: BEGIN IMMEDIATE), the horizon (the last id), no
    # rows ever wait behind it, and the oldest lease.
    lock_group = (
        "SELECT g.pattern, g.cursor_xid, g.cursor_id, 0 AS hx,"
        " (SELECT coalesce(max(id), 0) FROM awaitdb_events) AS hi,"
        " 0 AS blocked,"
        " (SELECT min(c.lease_until) FROM awaitdb_events_claims c WHERE c.grp = g.grp)"
        "  AS oldest_lease"
        " FROM awaitdb_events_groups g WHERE g.grp = :grp"
    )
    horizon = "SELECT 0, (SELECT coalesce(max(id), 0) FROM awaitdb_events)"
    create_group = (
        "INSERT INTO awaitdb_events_groups (grp, pattern, cursor_xid, cursor_id, created_at)"
        " VALUES (:grp, :pattern, :cx, :ci, :at) ON CONFLICT (grp) DO NOTHING"
    )
    after = "id > :ci AND id <= :hi"
    at_or_before = "id <= :ci"
    order = "ORDER BY id"
    select_columns = "xid, id, name, data, publisher, at"
    data_is_decoded = False  # JSON text
