"""``check``: integrity, foreign keys and orphans, as a table of findings.

The database's own integrity checks come first (``MigrationSupport.probes``: SQLite's
``quick_check``/``integrity_check`` and ``foreign_key_check``; PostgreSQL's page checks need the
``amcheck`` extension and are reported as not run), then an orphan count per declared foreign
key, which catches what constraints added ``NOT VALID`` or with checks turned off let through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .support import support_for

if TYPE_CHECKING:
    from .._async.database import Database

__all__ = ["Finding", "check"]


@dataclass
class Finding:
    """One line of the report: what was checked, whether it passed, and the detail."""

    check: str
    ok: bool
    detail: str


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def check(db: Database, *, full: bool = False) -> list[Finding]:
    """Run the checks; a finding with ``ok=False`` means something is wrong."""
    support = support_for(db.backend)
    findings = []
    for probe in support.probes(full):
        rows = [] if probe.sql is None else await db.fetch_all(probe.sql)
        ok, detail = probe.judge(rows)
        findings.append(Finding(probe.name, ok, detail))
    keys: dict[tuple[str, str], tuple[str, list[str], list[str]]] = {}
    for row in await db.fetch_all(support.foreign_keys_sql):
        child, key = str(row["child"]), str(row["id"])
        parent, children, parents = keys.setdefault((child, key), (row["parent"], [], []))
        children.append(row["child_col"])
        parents.append(row["parent_col"])
    for (child, _key), (parent, children, parents) in keys.items():
        findings.append(await _orphans(db, child, children, parent, parents))
    return findings


async def _orphans(
    db: Database, child: str, columns: list[str], parent: str, parent_columns: list[str]
) -> Finding:
    not_null = " AND ".join(f"c.{_q(c)} IS NOT NULL" for c in columns)
    match = " AND ".join(
        f"p.{_q(pc)} = c.{_q(cc)}" for cc, pc in zip(columns, parent_columns, strict=False)
    )
    sql = (
        f"SELECT count(*) FROM {_q(child)} AS c WHERE {not_null} AND NOT EXISTS "
        f"(SELECT 1 FROM {_q(parent)} AS p WHERE {match})"
    )
    count = int(await db.fetch_val(sql))
    name = f"orphans {child}({', '.join(columns)}) -> {parent}"
    return Finding(name, count == 0, "ok" if count == 0 else f"{count} orphan row(s)")
