"""Migrations, backups and checks: the public API (the ``awaitdb`` CLI is built on it).

from awaitdb.migrations import Migrator, migrate, rebuild_table

await migrate(db, "migrations/")                      # apply everything pending
await Migrator(db, "migrations/").rollback(to=3)      # undo down to version 3
SyncMigrator(sync_db, "migrations/").status()         # the sync face: same API, no await
"""

from __future__ import annotations

from ._errors import MigrationError
from ._migrate.backup import BackupManifest, default_backup_dir
from ._migrate.check import Finding, check
from ._migrate.files import Migration, load_migrations
from ._migrate.runner import LEDGER, MigrationStatus, Migrator, RunResult, migrate
from ._migrate.runner_sync import SyncMigrator
from ._postgres.migration import backup_postgres
from ._sqlite.migration import (
    backup_sqlite,
    rebuild_table,
    rebuild_table_sync,
    restore_sqlite,
    verify_backup,
)

__all__ = [
    "LEDGER",
    "BackupManifest",
    "Finding",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "Migrator",
    "RunResult",
    "SyncMigrator",
    "backup_postgres",
    "backup_sqlite",
    "check",
    "default_backup_dir",
    "load_migrations",
    "migrate",
    "rebuild_table",
    "rebuild_table_sync",
    "restore_sqlite",
    "verify_backup",
]
