"""``check``: integrity, foreign keys and orphans, as a table of findings.

SQLite: ``quick_check`` (or ``integrity_check`` with ``full``), ``foreign_key_check``, and an
orphan count per declared foreign key. PostgreSQL: an orphan count per foreign key (constraints
added ``NOT VALID`` or with triggers disabled can leave them); page-level checks need the
``amcheck`` extension and are reported as not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    if db.backend == "sqlite":
        return await _sqlite(db, full)
    return await _postgres(db)


async def _sqlite(db: Database, full: bool) -> list[Finding]:
    findings = []
    pragma = "integrity_check" if full else "quick_check"
    rows = await db.fetch_all(f"PRAGMA {pragma}")
    messages = [str(r[0]) for r in rows]
    findings.append(Finding(pragma, messages == ["ok"], "; ".join(messages[:10])))
    problems = await db.fetch_all("PRAGMA foreign_key_check")
    findings.append(
        Finding(
            "foreign_key_check",
            not problems,
            "ok" if not problems else f"{len(problems)} row(s) point at missing parents",
        )
    )
    tables = [
        r["name"]
        for r in await db.fetch_all(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        )
    ]
    for table in tables:
        keys: dict[int, list[Any]] = {}
        for fk in await db.fetch_all(f"PRAGMA foreign_key_list({_q(table)})"):
            keys.setdefault(int(fk["id"]), []).append(fk)
        for parts in keys.values():
            parent = parts[0]["table"]
            children = [p["from"] for p in parts]
            parents = [p["to"] for p in parts]
            if any(p is None for p in parents):
                pk = [
                    r["name"]
                    for r in sorted(
                        await db.fetch_all(f"PRAGMA table_info({_q(parent)})"),
                        key=lambda r: r["pk"],
                    )
                    if r["pk"]
                ]
                parents = pk or ["rowid"]
            findings.append(await _orphans(db, table, children, parent, parents))
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


async def _postgres(db: Database) -> list[Finding]:
    findings = [Finding("page checks", True, "not run: needs the amcheck extension")]
    rows = await db.fetch_all(
        "SELECT con.conname AS name, child.relname AS child, parent.relname AS parent, "
        "ARRAY(SELECT attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i) "
        "      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n "
        "      ORDER BY k.i) AS child_cols, "
        "ARRAY(SELECT attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i) "
        "      JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n "
        "      ORDER BY k.i) AS parent_cols "
        "FROM pg_constraint con "
        "JOIN pg_class child ON child.oid = con.conrelid "
        "JOIN pg_class parent ON parent.oid = con.confrelid "
        "JOIN pg_namespace ns ON ns.oid = child.relnamespace "
        "WHERE con.contype = 'f' AND ns.nspname = ANY (current_schemas(false)) "
        "ORDER BY child.relname, con.conname"
    )
    for row in rows:
        child_cols, parent_cols = list(row["child_cols"]), list(row["parent_cols"])
        findings.append(await _orphans(db, row["child"], child_cols, row["parent"], parent_cols))
    return findings
