"""The built-in migration that creates the jobs tables, with its own ledger.

Tables (all namespaced ``awaitdb_jobs``; columns in ``docs/jobs.md``):

- ``awaitdb_jobs``: one row per job, kept after it ends until ``purge``;
- ``awaitdb_jobs_periodic``: the last time slot each periodic task was enqueued for;
- ``awaitdb_jobs_schema``: the versions of this schema applied (separate from the user's
  ``awaitdb_migrations`` ledger, so version numbers never clash).

``install`` applies the missing versions in one transaction under a lock, so several processes
starting at once apply each version exactly once. ``Queue`` calls it on first use; an
application that prefers explicit migrations calls it from one of its own::

    # migrations/0007_jobs.py
    from awaitdb import jobs

    async def up(tx):
        await jobs.install(tx)
"""

from __future__ import annotations

from typing import Any

from .._errors import DatabaseError
from .dialect import JobsDialect, dialect_for

__all__ = ["install"]


async def install(target: Any) -> int:
    """Create or upgrade the jobs tables through ``target`` (a Database or a transaction).

    Returns the number of schema versions applied (0 when up to date).
    """
    db = getattr(target, "_db", target)
    dialect = dialect_for(db.backend)
    if hasattr(target, "transaction") and getattr(target, "_db", None) is None:
        if db._scope.get() is None and await _current(db, dialect) >= len(dialect.SCHEMA):
            return 0  # up to date: a read, so no wait for SQLite's writer
        async with target.transaction():
            return await _apply(target, dialect)
    return await _apply(target, dialect)  # already inside the caller's transaction


async def _current(db: Any, dialect: JobsDialect) -> int:
    """The schema version installed, read without writing (0 when there is no ledger yet).

    Only outside a transaction: on PostgreSQL a failed read would abort the caller's.
    """
    sql, params = dialect.stmt("schema_version")
    try:
        return int(await db.fetch_val(sql, params) or 0)
    except DatabaseError:
        return 0


async def _apply(q: Any, dialect: JobsDialect) -> int:
    if dialect.LOCK_SCHEMA:
        await q.execute(dialect.LOCK_SCHEMA, {"key": dialect.lock_key("awaitdb_jobs_schema")})
    await q.execute(dialect.SCHEMA_LEDGER)
    sql, params = dialect.stmt("schema_version")
    current = await q.fetch_val(sql, params) or 0
    applied = 0
    for version, statements in enumerate(dialect.SCHEMA, start=1):
        if version <= current:
            continue
        for statement in statements:
            await q.execute(statement)
        sql, params = dialect.stmt("schema_mark", version=version)
        await q.execute(sql, params)
        applied += 1
    return applied
