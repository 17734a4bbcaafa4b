"""Apply, roll back and report migrations against a ``Database``, on either backend.

Safety, in the order it happens:

1. **One lock.** PostgreSQL: a session advisory lock, waited for up to ``lock_timeout``, on a
   pinned connection that runs every migration (it dies with its holder). SQLite: the writer
   is pinned and every migration runs in ``BEGIN IMMEDIATE`` (the file lock across
   processes, waited for up to ``lock_timeout``), re-reading the ledger inside, so a second
   migrator waits and then finds nothing left to do.
2. **The ledger is checked.** A file changed after it was applied, an unapplied migration
   numbered below an applied one, and a dirty migration each stop the run, unless
   explicitly accepted or allowed.
3. **A verified backup** of a SQLite file is taken before anything is applied (see
   ``backup.py``).
4. **Each migration and its ledger row commit in one transaction.** Before COMMIT, every
   table's row count is compared with its count before the migration. A table that lost rows
   without the migration declaring it rolls the migration back. On SQLite,
   ``PRAGMA foreign_key_check`` must come back empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._async.database import Database
from .._async.transaction import PinnedConnection
from .._errors import DatabaseError, Error, MigrationError
from .._stats import logger
from .backup import BackupManifest, backup_sqlite
from .files import Migration, load_migrations

__all__ = ["LEDGER", "MigrationStatus", "Migrator", "RunResult", "migrate"]

LEDGER = "awaitdb_migrations"

_LEDGER_DDL = (
    f"CREATE TABLE IF NOT EXISTS {LEDGER} ("
    " version BIGINT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " checksum TEXT NOT NULL,"
    " applied_at TEXT NOT NULL,"
    " duration_ms BIGINT NOT NULL,"
    " awaitdb_version TEXT NOT NULL,"
    " dirty BOOLEAN NOT NULL DEFAULT FALSE)"
)
_INSERT = (
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


def _quote(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _version() -> str:
    from .. import __version__

    return __version__


def _lock_key(directory: Path) -> int:
    """A stable 63-bit advisory lock key for this migration directory's name."""
    digest = hashlib.sha256(f"awaitdb-migrations:{directory.name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


class Migrator:
    """Migrations in ``directory`` for ``db``."""

    def __init__(
        self,
        db: Database,
        directory: str | Path = "migrations",
        *,
        backup: bool = True,
        backup_dir: str | Path | None = None,
        keep_backups: int = 5,
        allow_out_of_order: bool = False,
        accept_changed: tuple[int, ...] | list[int] = (),
        lock_timeout: float = 60.0,
        guard: bool = True,
        progress: Callable[[str], None] | None = None,
        on_step: Callable[[str, str, float | None], None] | None = None,
    ) -> None:
        self.db = db
        self.directory = Path(directory)
        self.backup = backup
        self.backup_dir = backup_dir
        self.keep_backups = keep_backups
        self.allow_out_of_order = allow_out_of_order
        self.accept_changed = set(accept_changed)
        self.lock_timeout = lock_timeout
        self.guard = guard
        self._say = progress or (lambda _message: None)
        # on_step("start", label, None) before each migration, ("done", label, seconds) after
        self._step = on_step or (lambda _event, _label, _seconds: None)
        self._quiet_steps = on_step is not None  # the step callback reports each migration
        self._seconds: dict[str, float] = {}
        self.sqlite = db.backend == "sqlite"

    # -- the lock -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[PinnedConnection]:
        async with self.db.connection() as conn:
            if self.sqlite:
                await conn.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")
                try:
                    yield conn
                finally:
                    busy = float(self.db._config.get("busy_timeout", 5.0))
                    await conn.execute(f"PRAGMA busy_timeout = {int(busy * 1000)}")
                    await conn.execute("PRAGMA foreign_keys = ON")
                return
            key = _lock_key(self.directory)
            deadline = time.monotonic() + self.lock_timeout
            while not await conn.fetch_val("SELECT pg_try_advisory_lock(:k)", {"k": key}):
                if time.monotonic() >= deadline:
                    raise MigrationError(
                        f"another process has been migrating for over {self.lock_timeout:g}s "
                        f"(advisory lock {key} is held); try again later"
                    )
                await asyncio.sleep(0.1)
            try:
                yield conn
            finally:
                await conn.fetch_val("SELECT pg_advisory_unlock(:k)", {"k": key})

    # -- the ledger ---------------------------------------------------------------------------

    async def _ledger(self, conn: PinnedConnection) -> dict[int, Any]:
        await conn.execute(_LEDGER_DDL)
        rows = await conn.fetch_all(f"SELECT * FROM {LEDGER} ORDER BY version")
        return {int(r["version"]): r for r in rows}

    def _check(
        self, migrations: list[Migration], applied: dict[int, Any]
    ) -> tuple[list[Migration], list[Migration]]:
        """Refuse dirty, changed and out-of-order states; return (changed-accepted, pending)."""
        by_version = {m.version: m for m in migrations}
        for version, row in applied.items():
            if row["dirty"]:
                raise MigrationError(_dirty_message(version, row["name"]))
        accepted = []
        for version, row in applied.items():
            migration = by_version.get(version)
            if migration is None or migration.checksum == row["checksum"]:
                continue
            if version in self.accept_changed:
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
        if early and not self.allow_out_of_order:
            names = ", ".join(m.path.name for m in early)
            raise MigrationError(
                f"{names}: not applied, but numbered below the applied version {top}; renumber "
                "it, or allow it with --allow-out-of-order"
            )
        return accepted, pending

    # -- public operations --------------------------------------------------------------------

    async def status(self) -> list[MigrationStatus]:
        """Every migration file and ledger row, with its state."""
        migrations = load_migrations(self.directory)
        async with self.db.connection() as conn:
            applied = await self._ledger(conn)
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

    async def migrate(self, to: int | None = None, *, dry_run: bool = False) -> RunResult:
        """Apply pending migrations up to ``to`` (default: all), in order, each atomically."""
        migrations = load_migrations(self.directory)
        if to is not None and to not in {m.version for m in migrations} and to != 0:
            raise MigrationError(f"no migration with version {to} in {str(self.directory)!r}")
        async with self._locked() as conn:
            applied = await self._ledger(conn)
            accepted, pending = self._check(migrations, applied)
            if to is not None:
                pending = [m for m in pending if m.version <= to]
            if dry_run:
                return RunResult([], plan_text=self._plan_text(pending))
            for migration in accepted:
                await conn.execute(
                    f"UPDATE {LEDGER} SET checksum = :c WHERE version = :v",
                    {"c": migration.checksum, "v": migration.version},
                )
                self._say(f"accepted the changed checksum of {migration.path.name}")
            manifest = None
            if pending and self.backup and self.sqlite and not self.db._config.is_memory:
                if await self._tables(conn):
                    manifest = await self._backup("migrating")
                else:  # a brand-new database: nothing to lose, so no backups/ folder yet
                    self._say("no backup needed: the database has no tables yet")
            done = []
            for migration in pending:
                if await self._apply(conn, migration):
                    done.append(migration.label)
            return RunResult(done, manifest, seconds=self._taken(done))

    async def rollback(self, to: int) -> RunResult:
        """Undo applied migrations above version ``to``, newest first, each atomically."""
        migrations = {m.version: m for m in load_migrations(self.directory)}
        async with self._locked() as conn:
            applied = await self._ledger(conn)
            undo = sorted((v for v in applied if v > to), reverse=True)
            for version in undo:
                migration = migrations.get(version)
                if migration is None:
                    raise MigrationError(f"version {version} is applied but its file is missing")
                if not migration.has_down:
                    raise MigrationError(f"{migration.path}: no down section, cannot roll back")
                if applied[version]["checksum"] != migration.checksum:
                    raise MigrationError(f"{migration.path}: changed after it was applied")
            manifest = None
            if undo and self.backup and self.sqlite and not self.db._config.is_memory:
                manifest = await self._backup("rolling back")
            done = []
            for version in undo:
                await self._apply(conn, migrations[version], down=True)
                done.append(migrations[version].label)
            return RunResult(done, manifest, seconds=self._taken(done))

    async def baseline(self, version: int) -> list[str]:
        """Record migrations up to ``version`` as applied without running them."""
        migrations = [m for m in load_migrations(self.directory) if m.version <= version]
        if not migrations or migrations[-1].version != version:
            raise MigrationError(f"no migration with version {version} in {str(self.directory)!r}")
        async with self._locked() as conn:
            applied = await self._ledger(conn)
            if any(v > version for v in applied):
                raise MigrationError(f"versions above {version} are already applied")
            marked = []
            for m in migrations:
                if m.version in applied:
                    continue
                await conn.execute(_INSERT, self._row(m, 0, dirty=False))
                marked.append(m.label)
            return marked

    # -- applying one migration ---------------------------------------------------------------

    def _row(self, migration: Migration, duration_ms: int, *, dirty: bool) -> dict[str, Any]:
        return {
            "version": migration.version,
            "name": migration.name,
            "checksum": migration.checksum,
            "applied_at": _now(),
            "duration_ms": duration_ms,
            "awaitdb_version": _version(),
            "dirty": dirty,
        }

    def _taken(self, labels: list[str]) -> dict[str, float]:
        return {label: self._seconds[label] for label in labels if label in self._seconds}

    async def _apply(
        self, conn: PinnedConnection, migration: Migration, down: bool = False
    ) -> bool:
        """Apply (or undo) one migration, timing it and reporting it on the awaitdb logger."""
        label = migration.label
        self._step("start", label, None)
        start = time.perf_counter()
        ran = await self._apply_one(conn, migration, down)
        seconds = time.perf_counter() - start
        if ran:
            self._seconds[label] = seconds
            verb = "rolled back" if down else "applied"
            logger.info("%s migration %s in %.1f ms", verb, label, seconds * 1000.0)
        self._step("done" if ran else "skipped", label, seconds)
        return ran

    async def _apply_one(self, conn: PinnedConnection, migration: Migration, down: bool) -> bool:
        if not self._quiet_steps:
            self._say(f"{'rolling back' if down else 'applying'} {migration.path.name}")
        if not migration.transaction and not down:
            await self._apply_outside(conn, migration)
            return True
        if self.sqlite and not migration.foreign_keys:
            await conn.execute("PRAGMA foreign_keys = OFF")  # only outside a transaction
        try:
            start = time.perf_counter()
            async with self.db.transaction() as tx:
                present = await tx.fetch_val(
                    f"SELECT count(*) FROM {LEDGER} WHERE version = :v", {"v": migration.version}
                )
                if bool(present) == (not down):  # another migrator got here first
                    self._say(f"{migration.path.name}: already done by another migrator")
                    return False
                before = await self._counts(tx) if self.guard and not down else {}
                await self._run_steps(tx, migration, down)
                if self.guard and not down:
                    self._compare(migration, before, await self._counts(tx))
                if self.sqlite:
                    await self._foreign_key_check(tx, migration)
                if down:
                    await tx.execute(
                        f"DELETE FROM {LEDGER} WHERE version = :v", {"v": migration.version}
                    )
                else:
                    duration = int((time.perf_counter() - start) * 1000)
                    await tx.execute(_INSERT, self._row(migration, duration, dirty=False))
        finally:
            if self.sqlite and not migration.foreign_keys:
                await conn.execute("PRAGMA foreign_keys = ON")
        return True

    async def _run_steps(self, tx: Any, migration: Migration, down: bool) -> None:
        if migration.kind == "py":
            step = migration.down_py if down else migration.up_py
            assert step is not None
            try:
                await step(tx)
            except Error as exc:
                raise MigrationError(
                    f"{migration.path}: {'down' if down else 'up'}(): {exc}"
                ) from exc
            return
        statements = migration.down_sql if down else migration.up_sql
        for line, sql in statements or []:
            try:
                await tx.execute(sql)
            except Error as exc:
                raise MigrationError(f"{migration.path}:{line}: {exc}") from exc

    async def _apply_outside(self, conn: PinnedConnection, migration: Migration) -> None:
        """A no-transaction migration: recorded dirty first, clean only once it succeeded."""
        await conn.execute(_INSERT, self._row(migration, 0, dirty=True))
        start = time.perf_counter()
        try:
            if migration.kind == "py":
                assert migration.up_py is not None
                await migration.up_py(conn)
            else:
                _line, sql = migration.up_sql[0]
                await conn.execute(sql)
        except (Error, DatabaseError) as exc:
            where = (
                f"{migration.path}:{migration.up_sql[0][0]}"
                if migration.up_sql
                else str(migration.path)
            )
            raise MigrationError(
                f"{where}: {exc}. " + _dirty_message(migration.version, migration.name)
            ) from exc
        duration = int((time.perf_counter() - start) * 1000)
        await conn.execute(
            f"UPDATE {LEDGER} SET dirty = FALSE, duration_ms = :d WHERE version = :v",
            {"d": duration, "v": migration.version},
        )

    # -- guards -------------------------------------------------------------------------------

    async def _tables(self, tx: Any) -> list[str]:
        if self.sqlite:
            rows = await tx.fetch_all(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> :ledger",
                {"ledger": LEDGER},
            )
            return [r["name"] for r in rows]
        rows = await tx.fetch_all(
            "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema = ANY (current_schemas(false)) "
            "AND table_name <> :ledger",
            {"ledger": LEDGER},
        )
        return [r["name"] for r in rows]

    async def _counts(self, tx: Any) -> dict[str, int]:
        counts = {}
        for name in await self._tables(tx):
            counts[name] = int(await tx.fetch_val(f"SELECT count(*) FROM {_quote(name)}"))
        return counts

    def _compare(self, migration: Migration, before: dict[str, int], after: dict[str, int]) -> None:
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

    async def _foreign_key_check(self, tx: Any, migration: Migration) -> None:
        problems = await tx.fetch_all("PRAGMA foreign_key_check")
        if problems:
            first = problems[0]
            raise MigrationError(
                f"{migration.path}: {len(problems)} row(s) violate foreign keys after it ran "
                f"(first: table {first[0]!r} rowid {first[1]} -> {first[2]!r}); rolled back"
            )

    async def _backup(self, doing: str) -> BackupManifest:
        source = self.db._config.path
        self._say(f"taking a verified backup before {doing}")
        return await asyncio.to_thread(
            backup_sqlite,
            source,
            self.backup_dir,
            keep=self.keep_backups,
            awaitdb_version=_version(),
            progress=self._say,
        )

    # -- dry run ------------------------------------------------------------------------------

    def _plan_text(self, pending: list[Migration]) -> str:
        if not pending:
            return "-- nothing to apply\n"
        begin = "BEGIN IMMEDIATE" if self.sqlite else "BEGIN"
        out = []
        for m in pending:
            out.append(f"-- {m.path.name} (checksum {m.checksum[:12]})")
            if m.kind == "py":
                steps = [f"-- up(tx) from {m.path.name}"]
            else:
                steps = [sql.rstrip(";") + ";" for _line, sql in m.up_sql]
            if m.transaction:
                if self.sqlite and not m.foreign_keys:
                    out.append("PRAGMA foreign_keys = OFF;")
                out.append(f"{begin};")
                out.extend(steps)
                out.append("-- row-count guard" + (" and foreign_key_check" if self.sqlite else ""))
                out.append(f"INSERT INTO {LEDGER} (...) VALUES ({m.version}, '{m.name}', ...);")
                out.append("COMMIT;")
                if self.sqlite and not m.foreign_keys:
                    out.append("PRAGMA foreign_keys = ON;")
            else:
                out.append("-- no transaction: recorded dirty first, clean after it succeeds")
                out.append(
                    f"INSERT INTO {LEDGER} (...) VALUES ({m.version}, '{m.name}', ..., dirty);"
                )
                out.extend(steps)
                out.append(f"UPDATE {LEDGER} SET dirty = FALSE WHERE version = {m.version};")
            out.append("")
        return "\n".join(out)


def _dirty_message(version: int, name: str) -> str:
    return (
        f"Migration {version} ({name}) ran outside a transaction and did not finish: it is "
        "recorded as dirty. Undo whatever part of it took effect (for an index: DROP INDEX "
        f"CONCURRENTLY IF EXISTS ...), then delete its ledger row (DELETE FROM {LEDGER} WHERE "
        f"version = {version}) and migrate again."
    )


async def migrate(db: Database, directory: str | Path = "migrations", **options: Any) -> RunResult:
    """Apply every pending migration in ``directory`` (see ``Migrator`` for options)."""
    to = options.pop("to", None)
    dry_run = options.pop("dry_run", False)
    return await Migrator(db, directory, **options).migrate(to, dry_run=dry_run)
