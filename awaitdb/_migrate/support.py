"""What migrations need from a database, as one protocol each backend package implements.

The migrator, ``check``, the backups and the CLI are written once, above the backends. Everything
that differs between databases (the lock, the ledger's DDL, listing tables, integrity checks,
backup and restore, table rebuilds) comes from a ``MigrationSupport`` object found by
``support_for(backend)``, through the database's dialect (``load("migration")``, the
backend package's ``migration.py``). Its statements are plain SQL text and its functions run no
query, so one object serves the async face and the generated sync face alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._dialects import known_schemes, load_feature
from .._errors import InterfaceError

if TYPE_CHECKING:
    from .._config import Config
    from .backup import BackupManifest

__all__ = ["Backup", "LockSteps", "MigrationSupport", "Probe", "support_for"]


@dataclass(frozen=True)
class LockSteps:
    """How the migrator takes and gives back the migration lock on its pinned connection.

    ``save`` (if any) is read first and handed to ``leave``; ``enter`` runs once; ``poll`` (if
    any) is retried until it returns true or the lock timeout passes; ``leave(saved)`` runs at
    the end, whatever happened.
    """

    save: str | None
    enter: tuple[str, ...]
    poll: str | None
    leave: Callable[[Any], tuple[str, ...]]


@dataclass(frozen=True)
class Probe:
    """One integrity check: ``sql`` (None: nothing to run) and ``judge(rows) -> (ok, detail)``."""

    name: str
    sql: str | None
    judge: Callable[[list[Any]], tuple[bool, str]]


@dataclass(frozen=True)
class Backup:
    """What ``backup`` wrote: the file, and its verified manifest when the database has one."""

    path: str
    manifest: BackupManifest | None = None


class MigrationSupport(Protocol):
    """The database-specific half of migrations; SQL text and pure functions only."""

    name: str  # the backend's name, as ``Database.backend`` gives it
    begin_sql: str  # the BEGIN a migration runs in (shown by dry runs)
    ledger_ddl: str  # CREATE TABLE IF NOT EXISTS for the ledger
    tables_sql: str  # user tables, one ``name`` per row, without ``:ledger``
    foreign_keys_off: tuple[str, ...]  # before BEGIN for a migration declaring FOREIGN_KEYS=False
    foreign_keys_on: tuple[str, ...]  # after its COMMIT or ROLLBACK
    violations_sql: str | None  # rows (table, rowid, parent) violating foreign keys, inside the tx
    backup_source_sql: str | None  # the file to back up before migrating ('' or None: none)
    foreign_keys_sql: str  # rows (child, id, parent, child_col, parent_col), one per column

    def lock(self, key: int, timeout: float) -> LockSteps:
        """The steps that take the migration lock ``key``, waiting up to ``timeout`` seconds."""
        ...

    def probes(self, full: bool) -> list[Probe]:
        """The integrity checks ``check`` runs before the per-foreign-key orphan counts."""
        ...

    def backup_file(
        self,
        source: str,
        dest: str | Path | None,
        *,
        keep: int | None,
        awaitdb_version: str,
        progress: Callable[[str], None] | None,
    ) -> BackupManifest:
        """A verified backup of the database file ``source`` (the migrator's, before it runs)."""
        ...

    def missing_file(self, config: Config) -> str | None:
        """The absolute path of the database file ``config`` names when it does not exist."""
        ...

    def backup(
        self, config: Config, dest: str | None, *, keep: int, progress: Callable[[str], None]
    ) -> Backup:
        """``awaitdb backup``: a verified backup of the database ``config`` names."""
        ...

    def restore(
        self, config: Config, backup: str, *, progress: Callable[[str], None]
    ) -> BackupManifest:
        """``awaitdb restore``: write ``backup`` back over the database ``config`` names."""
        ...


def support_for(backend: str) -> MigrationSupport:
    """The migration support of ``backend`` (``Database.backend``, or a URL's scheme)."""
    support: MigrationSupport | None = load_feature(backend, "migration")
    if support is None:
        known = ", ".join(sorted(known_schemes()))
        raise InterfaceError(f"no migration support for {backend!r} (known: {known})")
    return support
