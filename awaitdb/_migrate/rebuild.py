"""SQLite table rebuilds done right: sqlite.org's 12-step procedure, for ``.py`` migrations.

SQLite's ALTER TABLE cannot change a column's type or constraints, so such changes rebuild the
table. Done naively (with foreign keys on), ``DROP TABLE parent`` deletes every child row
declared ``ON DELETE CASCADE``. This helper follows the documented procedure: the migration
declares ``FOREIGN_KEYS = False`` so foreign keys are off before its BEGIN; the helper creates
the new table, copies the rows, drops the old one, renames the new one, recreates the indexes,
triggers and views, and runs ``foreign_key_check``; the migrator commits and turns foreign keys
back on.

    FOREIGN_KEYS = False

    async def up(tx):
        await rebuild_table(tx, "parent", "(id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
"""

from __future__ import annotations

import re
from typing import Any

from .._errors import MigrationError

__all__ = ["rebuild_table"]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def rebuild_table(
    tx: Any,
    table: str,
    definition: str,
    *,
    copy: dict[str, str] | None = None,
) -> int:
    """Rebuild ``table`` as ``CREATE TABLE table <definition>``; returns the rows copied.

    ``definition`` is everything after the table name: ``(columns..., constraints...)``.
    Columns present in both tables are copied by name; ``copy`` maps a new column to an SQL
    expression over the old row (for renamed or converted columns).
    """
    if await tx.fetch_val("PRAGMA foreign_keys"):
        raise MigrationError(
            "rebuild_table needs foreign keys off, or dropping the old table would cascade "
            "into its children: declare FOREIGN_KEYS = False in the migration"
        )
    exists = await tx.fetch_val(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :t", {"t": table}
    )
    if not exists:
        raise MigrationError(f"rebuild_table: no table {table!r}")
    # 3. Remember the indexes, triggers and views that go with the table.
    attached = await tx.fetch_all(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = :t "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL",
        {"t": table},
    )
    mention = re.compile(r"\b" + re.escape(table) + r"\b", re.IGNORECASE)
    views = [
        v
        for v in await tx.fetch_all("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
        if mention.search(v["sql"] or "")
    ]
    old_columns = [r["name"] for r in await tx.fetch_all(f"PRAGMA table_info({_q(table)})")]
    # 4. Create the new table under a temporary name.
    new = f"awaitdb_rebuild_{table}"
    await tx.execute(f"CREATE TABLE {_q(new)} {definition}")
    new_columns = [r["name"] for r in await tx.fetch_all(f"PRAGMA table_info({_q(new)})")]
    # 5. Copy the rows.
    mapping = dict(copy or {})
    targets = [c for c in new_columns if c in mapping or c in old_columns]
    sources = [mapping.get(c, _q(c)) for c in targets]
    cols = ", ".join(_q(c) for c in targets)
    await tx.execute(f"INSERT INTO {_q(new)} ({cols}) SELECT {', '.join(sources)} FROM {_q(table)}")
    copied = int(await tx.fetch_val(f"SELECT count(*) FROM {_q(new)}"))
    # 6-7. Drop the views that name it, drop the old table, rename the new one.
    for view in views:
        await tx.execute(f"DROP VIEW {_q(view['name'])}")
    await tx.execute(f"DROP TABLE {_q(table)}")
    await tx.execute("PRAGMA legacy_alter_table = ON")  # rename without rewriting other objects
    try:
        await tx.execute(f"ALTER TABLE {_q(new)} RENAME TO {_q(table)}")
    finally:
        await tx.execute("PRAGMA legacy_alter_table = OFF")
    # 8-9. Recreate indexes, triggers and views.
    for obj in attached:
        await tx.execute(obj["sql"])
    for view in views:
        await tx.execute(view["sql"])
    # 10. The children must still find their parents (and the rows must have survived).
    problems = await tx.fetch_all(f"PRAGMA foreign_key_check({_q(table)})")
    if problems:
        raise MigrationError(
            f"rebuild_table({table!r}): {len(problems)} foreign key violation(s) after the copy"
        )
    return copied
