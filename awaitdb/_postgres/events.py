"""PostgreSQL SQL for the event stream (``awaitdb/_events``).

Positions are ``(xid, id)``: ``xid`` is the publishing transaction's id
(``pg_current_xact_id()``), ``id`` an identity column. A consumer only reads rows whose ``xid``
is below the horizon ``pg_snapshot_xmin(pg_current_snapshot())``: every transaction under it has
finished, so no row at a lower position can appear later, and an id taken by a transaction that
commits late is never skipped. ``NOTIFY`` is sent by the publishing statement itself, so it is
part of the publishing transaction and delivered only at COMMIT. PostgreSQL serialises the
commits of transactions that NOTIFY (a global lock held through the commit's WAL flush), so a
process sends it in at most one publishing transaction per ``NOTIFY_INTERVAL``; a publish that
skipped it is followed, once committed, by a coalesced ``NOTIFY`` of its own (see
``awaitdb/_events/stream.py``).
"""

from __future__ import annotations

__all__ = ["SQL"]

_MAX = 9223372036854775807


class SQL:
    """The stream's statements in PostgreSQL's dialect."""

    name = "postgresql"
    #: Built-in tables are created on a separate connection when first used inside a transaction.
    setup_in_caller_transaction = False
    max_position = (_MAX, _MAX)

    schema_exists = "SELECT to_regclass('awaitdb_events_schema') IS NOT NULL"
    setup_lock = "SELECT pg_advisory_xact_lock(7428519403)"
    ddl = (
        "CREATE TABLE IF NOT EXISTS awaitdb_events ("
        " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " xid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),"
        " name TEXT NOT NULL,"
        " data JSONB,"
        " publisher TEXT NOT NULL,"
        " at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX IF NOT EXISTS awaitdb_events_position ON awaitdb_events (xid, id)",
        "CREATE TABLE IF NOT EXISTS awaitdb_events_groups ("
        " grp TEXT PRIMARY KEY,"
        " pattern TEXT NOT NULL,"
        " cursor_xid BIGINT NOT NULL,"
        " cursor_id BIGINT NOT NULL,"
        " created_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE IF NOT EXISTS awaitdb_events_claims ("
        " grp TEXT NOT NULL REFERENCES awaitdb_events_groups (grp) ON DELETE CASCADE,"
        " from_xid BIGINT NOT NULL,"
        " from_id BIGINT NOT NULL,"
        " to_xid BIGINT NOT NULL,"
        " to_id BIGINT NOT NULL,"
        " consumer TEXT NOT NULL,"
        " lease_until DOUBLE PRECISION NOT NULL,"
        " deliveries INTEGER NOT NULL DEFAULT 1,"
        " PRIMARY KEY (grp, from_xid, from_id))",
        "CREATE TABLE IF NOT EXISTS awaitdb_events_schema (version INTEGER NOT NULL)",
    )

    publish = (
        "INSERT INTO awaitdb_events (name, data, publisher, at)"
        " VALUES (:name, CAST(CAST(:data AS text) AS jsonb), :publisher, :at) RETURNING id"
    )
    # The same statement with the NOTIFY: part of the publishing transaction, sent at COMMIT.
    publish_notify = (
        "WITH e AS (INSERT INTO awaitdb_events (name, data, publisher, at)"
        " VALUES (:name, CAST(CAST(:data AS text) AS jsonb), :publisher, :at) RETURNING id)"
        " SELECT id, pg_notify('awaitdb_events', '')::text FROM e"
    )
    notify = "SELECT pg_notify('awaitdb_events', '')"

    # The group row, locked; the horizon; whether committed rows wait behind it; oldest lease.
    # A consumer's bookkeeping commit need not wait for the WAL flush (set_config(...) = SET
    # LOCAL): a server crash can only lose the newest acknowledgements, and those events are
    # then delivered again.
    lock_group = (
        "SELECT g.pattern, g.cursor_xid, g.cursor_id, h.x - 1 AS hx,"
        " set_config('synchronous_commit', 'off', true) AS sync,"
        f" {_MAX}::bigint AS hi,"
        " EXISTS (SELECT 1 FROM awaitdb_events e WHERE e.xid >= h.x"
        "  AND (e.xid, e.id) > (g.cursor_xid, g.cursor_id)) AS blocked,"
        " (SELECT min(c.lease_until) FROM awaitdb_events_claims c WHERE c.grp = g.grp)"
        "  AS oldest_lease"
        " FROM awaitdb_events_groups g,"
        " (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS x) h"
        " WHERE g.grp = :grp FOR UPDATE OF g"
    )
    horizon = f"SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 1, {_MAX}::bigint"
    create_group = (
        "INSERT INTO awaitdb_events_groups (grp, pattern, cursor_xid, cursor_id, created_at)"
        " VALUES (:grp, :pattern, :cx, :ci, :at) ON CONFLICT (grp) DO NOTHING"
    )
    after = "(xid, id) > (:cx, :ci) AND (xid, id) <= (:hx, :hi)"
    at_or_before = "(xid, id) <= (:cx, :ci)"
    order = "ORDER BY xid, id"
    select_columns = "xid, id, name, data, publisher, at"
    data_is_decoded = True  # the driver decodes jsonb
