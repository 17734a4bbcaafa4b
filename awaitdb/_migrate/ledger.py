"""The ledger and the decisions made from it, shared by both faces of the migrator.

Nothing here runs a query: the async migrator (``runner.py``) and its generated sync twin
(``runner_sync.py``) read the ledger, then ask these functions what to do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import MigrationError
from .files import Migration

if TYPE_CHECKING:
    from .backup import BackupManifest
    from .support import MigrationSupport

__all__ = [
    "INSERT",
    "LEDGER",
    "LEDGER_DDL",
    "MigrationStatus",
    "RunResult",
    "check_ledger",
    "compare_counts",
    "dirty_message",
    "ledger_row",
    "lock_busy_message",
    "lock_key",
    "plan_text",
    "quote",
    "status_rows",
    "violations_message",
    "wrong_face_message",
]

LEDGER = "awaitdb_migrations"

# The ledger in portable SQL; a dialect whose database needs other types gives its own.
LEDGER_DDL = (
    f"CREATE TABLE IF NOT EXISTS {LEDGER} ("
    " version BIGINT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " checksum TEXT NOT NULL,"
    " applied_at TEXT NOT NULL,"
    " duration_ms BIGINT NOT NULL,"
    " awaitdb_version TEXT NOT NULL,"
    " dirty BOOLEAN NOT NULL DEFAULT FALSE)"
)

INSERT = (
    f"INSERT INTO {LEDGER} (version, name, checksum, applied_at, duration_ms, awaitdb_version,"
    " dirty) VALUES (:version, :name, :checksum, :applied_at, :duration_ms, :awaitdb_version,"
    " :dirty)"
)


@dataclass
class MigrationStatus:
    """One row of ``status``: a migration file, a ledger row, or both."""

    version: int
    name: str
    state: str  # applied, pending, changed, dirty, missing-file
    applied_at: str | None = None
    duration_ms: int | None = None


@dataclass
class RunResult:
    """What ``migrate`` / ``rollback`` did."""

    applied: list[str]
    backup: BackupManifest | None = None
    plan_text: str | None = None  # dry runs
    seconds: dict[str, float] = field(default_factory=dict)  # label -> how long it took


def quote(name: str) -> str:
    """``schema.table`` quoted part by part."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def awaitdb_version() -> str:
    from .. import __version__

    return __version__


def lock_key(directory: Path) -> int:
    """A stable 63-bit lock key for this migration directory's name."""
    digest = hashlib.sha256(f"awaitdb-migrations:{directory.name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def ledger_row(migration: Migration, duration_ms: int, *, dirty: bool) -> dict[str, Any]:
    """The parameters of ``INSERT`` for ``migration``."""
    return {
        "version": migration.version,
        "name": migration.name,
        "checksum": migration.checksum,
        "applied_at": dt.datetime.now(dt.UTC).isoformat(),
        "duration_ms": duration_ms,
        "awaitdb_version": awaitdb_version(),
        "dirty": dirty,
    }


def check_ledger(
    migrations: list[Migration],
    applied: dict[int, Any],
    *,
    accept_changed: set[int],
    allow_out_of_order: bool,
) -> tuple[list[Migration], list[Migration]]:
    """Refuse dirty, changed and out-of-order states; return (changed-accepted, pending)."""
    by_version = {m.version: m for m in migrations}
    for version, row in applied.items():
        if row["dirty"]:
            raise MigrationError(dirty_message(version, row["name"]))
    accepted = []
    for version, row in applied.items():
        migration = by_version.get(version)
        if migration is None or migration.checksum == row["checksum"]:
            continue
        if version in accept_changed:
            accepted.append(migration)
            continue
        raise MigrationError(
            f"{migration.path}: changed after it was applied (checksum "
            f"{row['checksum'][:12]}... in the ledger, {migration.checksum[:12]}... on disk); "
            f"restore the file, or accept the change with --accept-changed {version}"
        )
    pending = [m for m in migrations if m.version not in applied]
    top = max(applied, default=0)
    early = [m for m in pending if m.version < top]
    if early and not allow_out_of_order:
        names = ", ".join(m.path.name for m in early)
        raise MigrationError(
            f"{names}: not applied, but numbered below the applied version {top}; renumber "
            "it, or allow it with --allow-out-of-order"
        )
    return accepted, pending


def status_rows(migrations: list[Migration], applied: dict[int, Any]) -> list[MigrationStatus]:
    """Every migration file and ledger row, with its state, by version."""
    rows: dict[int, MigrationStatus] = {}
    for m in migrations:
        row = applied.get(m.version)
        if row is None:
            rows[m.version] = MigrationStatus(m.version, m.name, "pending")
        else:
            state = "dirty" if row["dirty"] else "applied"
            if state == "applied" and row["checksum"] != m.checksum:
                state = "changed"
            rows[m.version] = MigrationStatus(
                m.version, m.name, state, row["applied_at"], int(row["duration_ms"])
            )
    for version, row in applied.items():
        if version not in rows:
            state = "dirty" if row["dirty"] else "missing-file"
            rows[version] = MigrationStatus(
                version, row["name"], state, row["applied_at"], int(row["duration_ms"])
            )
    return [rows[v] for v in sorted(rows)]


def compare_counts(migration: Migration, before: dict[str, int], after: dict[str, int]) -> None:
    """Refuse a migration that lost rows in a table it did not declare."""
    allowed = migration.allow_row_loss
    for name, count in before.items():
        now = after.get(name, 0)
        short = name.rsplit(".", 1)[-1]
        if now < count and name not in allowed and short not in allowed:
            gone = "the table is gone" if name not in after else f"{now} now"
            raise MigrationError(
                f"{migration.path}: table {short!r} lost {count - now} of {count} rows "
                f"({gone}); rolled back. If that is intended, declare it: "
                f"'-- allow-row-loss: {short}' (SQL) or ALLOW_ROW_LOSS = ({short!r},) (Python)"
            )


def violations_message(migration: Migration, problems: list[Any]) -> str:
    first = problems[0]
    return (
        f"{migration.path}: {len(problems)} row(s) violate foreign keys after it ran "
        f"(first: table {first[0]!r} rowid {first[1]} -> {first[2]!r}); rolled back"
    )


def lock_busy_message(timeout: float, key: int) -> str:
    return (
        f"another process has been migrating for over {timeout:g}s (lock {key} is held); "
        "try again later"
    )


def wrong_face_message(migration: Migration, name: str, *, async_face: bool) -> str:
    """Why a ``.py`` migration written for the other face cannot run here."""
    if async_face:
        return (
            f"{migration.path}: {name}() must be 'async def {name}(tx)' to run under connect() "
            "or Migrator (a plain 'def' is for connect_sync, which uses no event loop)"
        )
    return (
        f"{migration.path}: {name}() is 'async def', which connect_sync cannot run (it uses no "
        f"event loop): apply it with connect() or Migrator, or write it as 'def {name}(tx)'"
    )


def plan_text(pending: list[Migration], support: MigrationSupport) -> str:
    """What a dry run prints: each migration's statements and transaction boundaries."""
    if not pending:
        return "-- nothing to apply\n"
    out = []
    for m in pending:
        out.append(f"-- {m.path.name} (checksum {m.checksum[:12]})")
        if m.kind == "py":
            steps = [f"-- up(tx) from {m.path.name}"]
        else:
            steps = [sql.rstrip(";") + ";" for _line, sql in m.up_sql]
        if m.transaction:
            if not m.foreign_keys:
                out.extend(f"{sql};" for sql in support.foreign_keys_off)
            out.append(f"{support.begin_sql};")
            out.extend(steps)
            check = " and foreign_key_check" if support.violations_sql else ""
            out.append("-- row-count guard" + check)
            out.append(f"INSERT INTO {LEDGER} (...) VALUES ({m.version}, '{m.name}', ...);")
            out.append("COMMIT;")
            if not m.foreign_keys:
                out.extend(f"{sql};" for sql in support.foreign_keys_on)
        else:
            out.append("-- no transaction: recorded dirty first, clean after it succeeds")
            out.append(f"INSERT INTO {LEDGER} (...) VALUES ({m.version}, '{m.name}', ..., dirty);")
            out.extend(steps)
            out.append(f"UPDATE {LEDGER} SET dirty = FALSE WHERE version = {m.version};")
        out.append("")
    return "\n".join(out)


def dirty_message(version: int, name: str) -> str:
    return (
        f"Migration {version} ({name}) ran outside a transaction and did not finish: it is "
        "recorded as dirty. Undo whatever part of it took effect (for an index: DROP INDEX "
        f"CONCURRENTLY IF EXISTS ...), then delete its ledger row (DELETE FROM {LEDGER} WHERE "
        f"version = {version}) and migrate again."
    )
