"""The stream's built-in tables: the per-backend SQL (through the dialect) and first-use setup.

The tables are ``awaitdb_events`` (the events), ``awaitdb_events_groups`` (each group's
position), ``awaitdb_events_claims`` (batches handed to a consumer, not yet done) and
``awaitdb_events_schema`` (the version of these tables). They are created on first use,
under a lock, with ``CREATE TABLE IF NOT EXISTS``; they never enter the application's
migration ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._dialects import load_feature
from .._errors import InterfaceError
from .._sql import analyze

if TYPE_CHECKING:
    from .._async.database import Database

__all__ = ["SCHEMA_VERSION", "bind", "dialect_for", "ensure_schema"]

SCHEMA_VERSION = 1


def dialect_for(db: Database) -> Any:
    """The stream SQL of ``db``'s backend: its dialect's ``load("events")`` (``events.py``)."""
    sql = load_feature(db.backend, "events")
    if sql is None:
        raise InterfaceError(f"the event stream does not support the {db.backend!r} backend")
    return sql


def bind(sql: str, values: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``values`` that ``sql`` names (dialects use different parameters)."""
    names = analyze(sql).names
    return {name: values[name] for name in names}


async def ensure_schema(db: Database, sql: Any) -> bool:
    """Create the built-in tables if missing. True when they are known to exist for good.

    Inside a transaction: on SQLite the tables are created in it (the writer is held: no other
    connection could), so they exist for good only if it commits (False is returned); on
    PostgreSQL they are created on another connection, in their own transaction.
    """
    tx = db.current_transaction()
    if tx is not None and sql.setup_in_caller_transaction:
        if not await db.fetch_val(sql.schema_exists):
            for statement in sql.ddl:
                await db.execute(statement)
            await db.execute(
                "INSERT INTO awaitdb_events_schema (version) VALUES (:v)", {"v": SCHEMA_VERSION}
            )
        return False
    token = db._scope.set(None)  # our own connection and transaction, not the caller's
    try:
        if await db.fetch_val(sql.schema_exists):
            await _check_version(db)
            return True
        async with db.transaction():
            if sql.setup_lock:
                await db.fetch_val(sql.setup_lock)
            if not await db.fetch_val(sql.schema_exists):
                for statement in sql.ddl:
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO awaitdb_events_schema (version) VALUES (:v)",
                    {"v": SCHEMA_VERSION},
                )
        await _check_version(db)
        return True
    finally:
        db._scope.reset(token)


async def _check_version(db: Database) -> None:
    version = await db.fetch_val("SELECT max(version) FROM awaitdb_events_schema")
    if version != SCHEMA_VERSION:
        raise InterfaceError(
            f"awaitdb_events tables are at version {version}, this awaitdb needs "
            f"{SCHEMA_VERSION}: upgrade awaitdb or migrate them (docs/events.md)"
        )
