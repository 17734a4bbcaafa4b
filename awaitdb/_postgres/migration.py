"""What migrations need from PostgreSQL: the advisory lock, the ledger, checks, pg_dump.

``SUPPORT`` implements ``awaitdb._migrate.support.MigrationSupport``. The lock is a session
advisory lock keyed by the migrations folder's name, polled on the migrator's pinned connection
(it dies with its holder). ``check`` counts orphans per foreign key (constraints added
``NOT VALID`` or with triggers disabled can leave them); page-level checks need the ``amcheck``
extension and are reported as not run. Backups are ``pg_dump --format=custom``; restoring one is
``pg_restore``'s job.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._config import hide_secrets, url_secrets
from .._errors import MigrationError
from .._migrate.backup import BackupManifest, fsync_dir, fsync_file
from .._migrate.ledger import LEDGER_DDL
from .._migrate.support import Backup, LockSteps, MigrationSupport, Probe

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["SUPPORT", "PostgresMigrationSupport", "backup_postgres", "pg_dump_command"]


def pg_dump_command(pg_dump: str, url: str, path: Path) -> tuple[list[str], dict[str, str]]:
    """``pg_dump``'s argv and environment: the password travels in ``PGPASSWORD``, never on
    the command line (which any local user can read in ``/proc/PID/cmdline``)."""
    from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

    parts = urlsplit(url)
    env = dict(os.environ)
    query = parse_qsl(parts.query, keep_blank_values=True)
    password = next((v for k, v in query if k == "password"), None)
    netloc = parts.netloc
    if parts.password is not None:
        password = unquote(parts.password)
        user = netloc.rpartition("@")[0].partition(":")[0]
        netloc = f"{user}@{netloc.rpartition('@')[2]}"
    if password is not None:
        env["PGPASSWORD"] = password
    kept = urlencode([(k, v) for k, v in query if k != "password"])
    clean = parts._replace(netloc=netloc, query=kept).geturl()
    return [pg_dump, "--format=custom", "--file", str(path), "--dbname", clean], env


def backup_postgres(
    url: str, dest: str | Path | None = None, *, redacted: str = "", keep: int | None = 5
) -> Path:
    """``pg_dump --format=custom`` of the database at ``url`` into ``dest``: a file, or a folder
    (default ``backups/``, created) that gets a new ``<database>-<UTC timestamp>.dump``; in the
    default folder the newest ``keep`` of this database's dumps are kept (as SQLite backups)."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise MigrationError(
            "PostgreSQL backups need pg_dump, which is not on PATH here; install the "
            "PostgreSQL client tools (Debian: apt-get install postgresql-client) or back up "
            "with your own tooling before migrating"
        )
    stem = _dump_stem(url)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    given = Path("backups" if dest is None else dest)
    if dest is None and given.exists() and not given.is_dir():
        raise MigrationError(
            f"{str(given.resolve())!r} is a file, not the backups folder (an earlier awaitdb "
            "wrote its pg_dump there): rename it (it is a pg_restore dump) or give a PATH"
        )
    path = (given / f"{stem}-{stamp}.dump" if dest is None or given.is_dir() else given).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")  # never a half dump under the real name
    argv, env = pg_dump_command(pg_dump, url, partial)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        message = hide_secrets(
            result.stderr.strip().replace(url, redacted or "<url>"), url_secrets(url)
        )
        raise MigrationError(f"pg_dump failed: {message}")
    fsync_file(partial)
    os.replace(partial, path)
    fsync_dir(path.parent)
    if keep is not None and dest is None:
        _prune(path.parent, stem, max(keep, 1))  # never the dump just taken
    return path


def _dump_stem(url: str) -> str:
    """The database's name as a file name (libpq's default, the user name, when none)."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/")) or unquote(parts.username or "") or "postgres"
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)


def _prune(folder: Path, stem: str, keep: int) -> None:
    """Keep the newest ``keep`` dumps of ``stem``; only ``<stem>-<timestamp>.dump`` counts (and
    its leftover ``.partial``), matched on the file name: another database's dumps stay."""
    own = re.compile(re.escape(stem) + r"-\d{8}T\d{12}Z\.dump")
    files = [(path, own.match(path.name)) for path in folder.iterdir()]
    ours = [(path, match.group(0)) for path, match in files if match is not None]
    dumps = sorted(name for path, name in ours if path.name == name)
    doomed = set(dumps[: max(0, len(dumps) - keep)])
    for path, base in ours:
        leftover = path.name == base + ".partial"
        if (base in doomed and path.name == base) or (base in dumps and leftover):
            path.unlink(missing_ok=True)


_TABLES = (
    "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables "
    "WHERE table_type = 'BASE TABLE' AND table_schema = ANY (current_schemas(false)) "
    "AND table_name <> :ledger"
)
_FOREIGN_KEYS = (
    "SELECT child.relname AS child, con.conname AS id, parent.relname AS parent, "
    "ca.attname AS child_col, pa.attname AS parent_col "
    "FROM pg_constraint con "
    "JOIN pg_class child ON child.oid = con.conrelid "
    "JOIN pg_class parent ON parent.oid = con.confrelid "
    "JOIN pg_namespace ns ON ns.oid = child.relnamespace "
    "CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(c, p, i) "
    "JOIN pg_attribute ca ON ca.attrelid = con.conrelid AND ca.attnum = k.c "
    "JOIN pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = k.p "
    "WHERE con.contype = 'f' AND ns.nspname = ANY (current_schemas(false)) "
    "ORDER BY child.relname, con.conname, k.i"
)


def _not_run(_rows: list[Any]) -> tuple[bool, str]:
    return True, "not run: needs the amcheck extension"


class PostgresMigrationSupport:
    """``MigrationSupport`` for PostgreSQL (see the module docstring)."""

    name = "postgresql"
    begin_sql = "BEGIN"
    ledger_ddl = LEDGER_DDL
    tables_sql = _TABLES
    foreign_keys_off: tuple[str, ...] = ()  # a migration's foreign keys stay checked
    foreign_keys_on: tuple[str, ...] = ()
    violations_sql: str | None = None  # constraints are checked as each statement runs
    backup_source_sql: str | None = None  # pg_dump is the user's (or `awaitdb backup`'s) call
    foreign_keys_sql = _FOREIGN_KEYS

    def lock(self, key: int, timeout: float) -> LockSteps:
        """A session advisory lock, polled until it is free or ``timeout`` passes."""

        def leave(_saved: Any) -> tuple[str, ...]:
            return (f"SELECT pg_advisory_unlock({int(key)})",)

        return LockSteps(
            save=None, enter=(), poll=f"SELECT pg_try_advisory_lock({int(key)})", leave=leave
        )

    def probes(self, full: bool) -> list[Probe]:
        return [Probe("page checks", None, _not_run)]

    def backup_file(
        self,
        source: str,
        dest: str | Path | None,
        *,
        keep: int | None,
        awaitdb_version: str,
        progress: Callable[[str], None] | None,
    ) -> BackupManifest:
        raise MigrationError("PostgreSQL databases are backed up with pg_dump: awaitdb backup")

    def missing_file(self, config: Config) -> str | None:
        return None  # a server database: nothing to create by accident

    def backup(
        self, config: Config, dest: str | None, *, keep: int, progress: Callable[[str], None]
    ) -> Backup:
        dump = backup_postgres(config.url, dest, redacted=config.redacted_url, keep=keep)
        return Backup(str(dump))

    def restore(
        self, config: Config, backup: str, *, progress: Callable[[str], None]
    ) -> BackupManifest:
        raise MigrationError("restore handles SQLite backups; use pg_restore for PostgreSQL dumps")


SUPPORT: MigrationSupport = PostgresMigrationSupport()  # mypy checks it against the protocol
