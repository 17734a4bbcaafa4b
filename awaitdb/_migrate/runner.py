"""Apply, roll back and report migrations against a ``Database``, on either backend.

SOURCE OF TRUTH for both faces: ``tools/async_to_sync.py`` generates ``runner_sync.py``
(``SyncMigrator``, run on a ``SyncDatabase`` itself: no event loop, no second pool). What differs
between databases comes from ``support_for(db.backend)`` (``support.py``); the decisions made from
the ledger are in ``ledger.py``.

Safety, in the order it happens:

1. **One lock**, taken on a pinned connection that runs every migration (``LockSteps``):
   PostgreSQL waits for a session advisory lock; SQLite runs every migration in
   ``BEGIN IMMEDIATE`` with the busy timeout raised to ``lock_timeout``, and re-reads the ledger
   inside, so a second migrator waits and then finds nothing left to do.
2. **The ledger is checked.** A file changed after it was applied, an unapplied migration
   numbered below an applied one, and a dirty migration each stop the run, unless
   explicitly accepted or allowed.
3. **A verified backup** of a database file is taken before anything is applied.
4. **Each migration and its ledger row commit in one transaction.** Before COMMIT, every
   table's row count is compared with its count before the migration. A table that lost rows
   without the migration declaring it rolls the migration back, and so does any foreign key
   violation the database reports.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._compat import ASYNC, asleep
from .._errors import DatabaseError, Error, MigrationError
from .._stats import logger
from .backup import BackupManifest
from .files import Migration, load_migrations
from .ledger import (
    INSERT,
    LEDGER,
    MigrationStatus,
    RunResult,
    awaitdb_version,
    check_ledger,
    compare_counts,
    dirty_message,
    ledger_row,
    lock_busy_message,
    lock_key,
    plan_text,
    quote,
    status_rows,
    violations_message,
    wrong_face_message,
)
from .support import support_for

if TYPE_CHECKING:
    from .._async.database import Database
    from .._async.transaction import PinnedConnection

__all__ = ["LEDGER", "MigrationStatus", "Migrator", "RunResult", "migrate"]


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
        self.support = support_for(db.backend)

    # -- the lock -----------------------------------------------------------------------------

    async def _lock(self, conn: PinnedConnection) -> Any:
        """Take the migration lock on ``conn``; returns what ``_unlock`` gives back."""
        key = lock_key(self.directory)
        steps = self.support.lock(key, self.lock_timeout)
        saved = None if steps.save is None else await conn.fetch_val(steps.save)
        for sql in steps.enter:
            await conn.execute(sql)
        if steps.poll is not None:
            deadline = time.monotonic() + self.lock_timeout
            while not await conn.fetch_val(steps.poll):
                if time.monotonic() >= deadline:
                    raise MigrationError(lock_busy_message(self.lock_timeout, key))
                await asleep(0.1)
        return saved

    async def _unlock(self, conn: PinnedConnection, saved: Any) -> None:
        steps = self.support.lock(lock_key(self.directory), self.lock_timeout)
        for sql in steps.leave(saved):
            await conn.execute(sql)

    # -- the ledger ---------------------------------------------------------------------------

    async def _ledger(self, conn: PinnedConnection) -> dict[int, Any]:
        await conn.execute(self.support.ledger_ddl)
        rows = await conn.fetch_all(f"SELECT * FROM {LEDGER} ORDER BY version")
        return {int(r["version"]): r for r in rows}

    # -- public operations --------------------------------------------------------------------

    async def status(self) -> list[MigrationStatus]:
        """Every migration file and ledger row, with its state."""
        migrations = load_migrations(self.directory)
        async with self.db.connection() as conn:
            applied = await self._ledger(conn)
        return status_rows(migrations, applied)

    async def migrate(self, to: int | None = None, *, dry_run: bool = False) -> RunResult:
        """Apply pending migrations up to ``to`` (default: all), in order, each atomically."""
        migrations = load_migrations(self.directory)
        if to is not None and to not in {m.version for m in migrations} and to != 0:
            raise MigrationError(f"no migration with version {to} in {str(self.directory)!r}")
        async with self.db.connection() as conn:
            saved = await self._lock(conn)
            try:
                return await self._migrate_locked(conn, migrations, to, dry_run)
            finally:
                await self._unlock(conn, saved)

    async def _migrate_locked(
        self, conn: PinnedConnection, migrations: list[Migration], to: int | None, dry_run: bool
    ) -> RunResult:
        applied = await self._ledger(conn)
        accepted, pending = check_ledger(
            migrations,
            applied,
            accept_changed=self.accept_changed,
            allow_out_of_order=self.allow_out_of_order,
        )
        if to is not None:
            pending = [m for m in pending if m.version <= to]
        self._check_python_steps(pending, down=False)  # nothing applied yet if one is wrong
        if dry_run:
            return RunResult([], plan_text=plan_text(pending, self.support))
        for migration in accepted:
            await conn.execute(
                f"UPDATE {LEDGER} SET checksum = :c WHERE version = :v",
                {"c": migration.checksum, "v": migration.version},
            )
            self._say(f"accepted the changed checksum of {migration.path.name}")
        manifest = None
        if pending and self.backup:
            source = await self._backup_source(conn)
            if source and await self._tables(conn):
                manifest = await self._backup(source, "migrating")
            elif source:  # a brand-new database: nothing to lose, so no backups/ folder yet
                self._say("no backup needed: the database has no tables yet")
        done = []
        for migration in pending:
            if await self._apply(conn, migration):
                done.append(migration.label)
        return RunResult(done, manifest, seconds=self._taken(done))

    async def rollback(self, to: int) -> RunResult:
        """Undo applied migrations above version ``to``, newest first, each atomically."""
        migrations = {m.version: m for m in load_migrations(self.directory)}
        async with self.db.connection() as conn:
            saved = await self._lock(conn)
            try:
                return await self._rollback_locked(conn, migrations, to)
            finally:
                await self._unlock(conn, saved)

    async def _rollback_locked(
        self, conn: PinnedConnection, migrations: dict[int, Migration], to: int
    ) -> RunResult:
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
        self._check_python_steps([migrations[v] for v in undo], down=True)
        manifest = None
        if undo and self.backup:
            source = await self._backup_source(conn)
            if source:
                manifest = await self._backup(source, "rolling back")
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
        async with self.db.connection() as conn:
            saved = await self._lock(conn)
            try:
                applied = await self._ledger(conn)
                if max(applied, default=0) > version:
                    raise MigrationError(f"versions above {version} are already applied")
                marked = []
                for m in migrations:
                    if m.version in applied:
                        continue
                    await conn.execute(INSERT, ledger_row(m, 0, dirty=False))
                    marked.append(m.label)
                return marked
            finally:
                await self._unlock(conn, saved)

    # -- applying one migration ---------------------------------------------------------------

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
        support = self.support
        if not migration.foreign_keys:
            for sql in support.foreign_keys_off:  # only outside a transaction
                await conn.execute(sql)
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
                    compare_counts(migration, before, await self._counts(tx))
                if support.violations_sql is not None:
                    problems = await tx.fetch_all(support.violations_sql)
                    if problems:
                        raise MigrationError(violations_message(migration, problems))
                if down:
                    await tx.execute(
                        f"DELETE FROM {LEDGER} WHERE version = :v", {"v": migration.version}
                    )
                else:
                    duration = int((time.perf_counter() - start) * 1000)
                    await tx.execute(INSERT, ledger_row(migration, duration, dirty=False))
        finally:
            if not migration.foreign_keys:
                for sql in support.foreign_keys_on:
                    await conn.execute(sql)
        return True

    def _python_step(self, migration: Migration, down: bool) -> Any:
        """``up``/``down`` of a ``.py`` migration, refused when written for the other face."""
        step = migration.down_py if down else migration.up_py
        assert step is not None
        name = "down" if down else "up"
        if ASYNC:
            if not inspect.iscoroutinefunction(step):
                raise MigrationError(wrong_face_message(migration, name, async_face=True))
        elif inspect.iscoroutinefunction(step):
            raise MigrationError(wrong_face_message(migration, name, async_face=False))
        return step

    def _check_python_steps(self, migrations: list[Migration], *, down: bool) -> None:
        """Refuse a run before it starts if one of its ``.py`` steps is for the other face."""
        for migration in migrations:
            if migration.kind == "py":
                self._python_step(migration, down)

    async def _run_steps(self, tx: Any, migration: Migration, down: bool) -> None:
        if migration.kind == "py":
            step = self._python_step(migration, down)
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
        step = self._python_step(migration, False) if migration.kind == "py" else None
        await conn.execute(INSERT, ledger_row(migration, 0, dirty=True))
        start = time.perf_counter()
        try:
            if step is not None:
                await step(conn)
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
                f"{where}: {exc}. " + dirty_message(migration.version, migration.name)
            ) from exc
        duration = int((time.perf_counter() - start) * 1000)
        await conn.execute(
            f"UPDATE {LEDGER} SET dirty = FALSE, duration_ms = :d WHERE version = :v",
            {"d": duration, "v": migration.version},
        )

    # -- guards -------------------------------------------------------------------------------

    async def _tables(self, tx: Any) -> list[str]:
        rows = await tx.fetch_all(self.support.tables_sql, {"ledger": LEDGER})
        return [r["name"] for r in rows]

    async def _counts(self, tx: Any) -> dict[str, int]:
        counts = {}
        for name in await self._tables(tx):
            counts[name] = int(await tx.fetch_val(f"SELECT count(*) FROM {quote(name)}"))
        return counts

    async def _backup_source(self, conn: PinnedConnection) -> str:
        """The database file to back up before changing it ('' when there is none)."""
        sql = self.support.backup_source_sql
        return "" if sql is None else str(await conn.fetch_val(sql) or "")

    async def _backup(self, source: str, doing: str) -> BackupManifest:
        self._say(f"taking a verified backup before {doing}")
        options: dict[str, Any] = {
            "keep": self.keep_backups,
            "awaitdb_version": awaitdb_version(),
            "progress": self._say,
        }
        backup_file = self.support.backup_file
        if ASYNC:
            return await asyncio.to_thread(backup_file, source, self.backup_dir, **options)
        return backup_file(source, self.backup_dir, **options)


async def migrate(db: Database, directory: str | Path = "migrations", **options: Any) -> RunResult:
    """Apply every pending migration in ``directory`` (see ``Migrator`` for options)."""
    to = options.pop("to", None)
    dry_run = options.pop("dry_run", False)
    return await Migrator(db, directory, **options).migrate(to, dry_run=dry_run)
