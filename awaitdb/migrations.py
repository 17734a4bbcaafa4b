"""Migrations, backups and checks: the public API (the ``awaitdb`` CLI is built on it).

from awaitdb.migrations import Migrator, migrate, rebuild_table

await migrate(db, "migrations/")                      # apply everything pending
await Migrator(db, "migrations/").rollback(to=3)      # undo down to version 3
"""

from __future__ import annotations

from ._errors import MigrationError
from ._migrate.backup import (
    BackupManifest,
    backup_postgres,
    backup_sqlite,
    default_backup_dir,
    restore_sqlite,
    verify_backup,
)
from ._migrate.check import Finding, check
from ._migrate.files import Migration, load_migrations
from ._migrate.rebuild import rebuild_table
from ._migrate.runner import LEDGER, MigrationStatus, Migrator, RunResult, migrate

__all__ = [
    "LEDGER",
    "BackupManifest",
    "Finding",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "Migrator",
    "RunResult",
    "backup_postgres",
    "backup_sqlite",
    "check",
    "default_backup_dir",
    "load_migrations",
    "migrate",
    "rebuild_table",
    "restore_sqlite",
    "verify_backup",
]
