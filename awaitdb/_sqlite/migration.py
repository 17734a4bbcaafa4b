"""What migrations need from SQLite: the lock, the ledger, integrity checks, backups, rebuilds.

``SUPPORT`` implements ``awaitdb._migrate.support.MigrationSupport``. The lock is SQLite's own
file lock: the migrator runs every migration in ``BEGIN IMMEDIATE`` with the busy timeout raised
to its lock timeout (and restored after).

Backups are taken with SQLite's online backup API in one step (a consistent snapshot; in WAL
mode writers are not blocked), fsynced, then verified: ``quick_check`` on the copy, its
SHA-256, and the row count of every table, recorded in a JSON manifest beside it. Hashing
runs in one thread while ``quick_check`` and the counts run in another. The last ``keep``
backups of a database are kept.

``restore`` checks the backup's hash and ``quick_check`` first, takes the target file
exclusively (refusing while any other connection, in this process or another, has it open),
and writes the backup back through the backup API, never with a plain file copy.

Table rebuilds (``rebuild_table``) follow sqlite.org's 12-step procedure, for ``.py`` migrations.
SQLite's ALTER TABLE cannot change a column's type or constraints, so such changes rebuild the
table. Done naively (with foreign keys on), ``DROP TABLE parent`` deletes every child row
declared ``ON DELETE CASCADE``. The helper follows the documented procedure: the migration
declares ``FOREIGN_KEYS = False`` so foreign keys are off before its BEGIN; the helper creates
the new table, copies the rows, drops the old one, renames the new one, recreates the indexes,
triggers and views, and runs ``foreign_key_check``; the migrator commits and turns foreign keys
back on::

    FOREIGN_KEYS = False

    async def up(tx):
        await rebuild_table(tx, "parent", "(id INTEGER PRIMARY KEY, name TEXT NOT NULL)")

The procedure is written once, as a generator of statements (``_rebuild``); ``rebuild_table``
and ``rebuild_table_sync`` run it on an async or a sync transaction.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._errors import Error, MigrationError
from .._migrate.backup import (
    BackupManifest,
    default_backup_dir,
    fsync_dir,
    fsync_file,
    sha256_of,
)
from .._migrate.ledger import LEDGER, LEDGER_DDL
from .._migrate.support import Backup, LockSteps, MigrationSupport, Probe

if TYPE_CHECKING:
    from .._config import Config

__all__ = [
    "SUPPORT",
    "SQLiteMigrationSupport",
    "backup_sqlite",
    "counts",
    "rebuild_table",
    "rebuild_table_sync",
    "restore_sqlite",
    "verify_backup",
]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _inspect(path: Path, *, full: bool = False) -> tuple[str, dict[str, int], int | None]:
    """``quick_check`` (or ``integrity_check``), row counts and schema version of a file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            rows = conn.execute(
                "PRAGMA integrity_check" if full else "PRAGMA quick_check"
            ).fetchall()
        except sqlite3.DatabaseError as exc:  # too damaged to even check
            return f"unreadable: {exc}", {}, None
        check = "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:20])
        tables: dict[str, int] = {}
        if check == "ok":
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
                )
            ]
            for name in names:
                tables[name] = int(
                    conn.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0]
                )
        version = None
        if LEDGER in tables:
            row = conn.execute(f"SELECT max(version) FROM {LEDGER} WHERE NOT dirty").fetchone()
            version = None if row is None or row[0] is None else int(row[0])
        return check, tables, version
    finally:
        conn.close()


def _verify(path: Path) -> tuple[str, str, dict[str, int], int | None]:
    """Hash in one thread while quick_check and counts run in this one (both release the GIL)."""
    digest: list[str] = []
    errors: list[BaseException] = []

    def hash_it() -> None:
        try:
            digest.append(sha256_of(path))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=hash_it, name="awaitdb-backup-hash")
    thread.start()
    try:
        check, tables, version = _inspect(path)
    finally:
        thread.join()
    if errors:
        raise errors[0]
    return digest[0], check, tables, version


def backup_sqlite(
    source: str | Path,
    dest: str | Path | None = None,
    *,
    keep: int | None = 5,
    awaitdb_version: str = "",
    progress: Callable[[str], None] | None = None,
) -> BackupManifest:
    """Back ``source`` up to ``dest`` (a file, or a directory; default ``backups/``), verified."""
    src_path = Path(source).resolve()
    if not src_path.exists():
        raise MigrationError(f"no SQLite database at {str(src_path)!r}")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if dest is None:
        target = default_backup_dir(src_path) / f"{src_path.stem}-{stamp}.sqlite3"
    else:
        given = Path(dest)
        target = given / f"{src_path.stem}-{stamp}.sqlite3" if given.is_dir() else given
    target = target.resolve()
    if target == src_path:
        raise MigrationError("a backup cannot overwrite its own database")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    say = progress or (lambda _message: None)
    say(f"copying {src_path.name} with the online backup API")
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # pages=-1: the whole database in one step, one consistent snapshot
            # A copy of a WAL database is a WAL database: every later open (verification,
            # restore) would leave -wal/-shm files beside it. A backup is one self-contained file.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        _remove_with_sidecars(partial)
        raise MigrationError(f"backup of {str(src_path)!r} failed: {exc}") from exc
    finally:
        src.close()
    fsync_file(partial)
    say("verifying the copy (quick_check, SHA-256, row counts)")
    digest, check, tables, version = _verify(partial)
    if check != "ok":
        _remove_with_sidecars(partial)
        raise MigrationError(f"the backup copy failed quick_check: {check}")
    os.replace(partial, target)
    _remove_with_sidecars(partial)  # -wal/-shm/-journal of the partial name, if any
    fsync_dir(target.parent)
    manifest = BackupManifest(
        backup=str(target),
        source=str(src_path),
        created_at=dt.datetime.now(dt.UTC).isoformat(),
        size=target.stat().st_size,
        sha256=digest,
        quick_check=check,
        tables=tables,
        schema_version=version,
        awaitdb_version=awaitdb_version,
    )
    manifest.write()
    if keep is not None and dest is None:
        _prune(target.parent, src_path.stem, keep)
    say(f"backup verified: {target}")
    return manifest


_SIDECARS = ("-wal", "-shm", "-journal")


def _remove_with_sidecars(path: Path) -> None:
    """Remove ``path`` and the -wal/-shm/-journal files SQLite may have left beside it."""
    for suffix in ("", *_SIDECARS):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _prune(folder: Path, stem: str, keep: int) -> None:
    """Keep the newest ``keep`` backups of ``stem``; remove every file the others wrote.

    Only ``<stem>-<timestamp>.sqlite3`` and the files named after it count, matched on the
    file name: ``app-2``'s backups are not ``app``'s, whatever the folders are called."""
    own = re.compile(re.escape(stem) + r"-\d{8}T\d{12}Z\.sqlite3")
    files = [(path, own.match(path.name)) for path in folder.iterdir()]
    ours = [(path, match.group(0)) for path, match in files if match is not None]
    backups = sorted(name for path, name in ours if path.name == name)
    doomed = set(backups[: max(0, len(backups) - keep)])
    for path, base in ours:
        leftover = path.name != base and not path.name.endswith(".json")  # .partial, -wal...
        if base in doomed or (base in backups and leftover):
            path.unlink(missing_ok=True)


def verify_backup(backup: str | Path) -> BackupManifest:
    """Check a backup against its manifest: size, SHA-256 and quick_check."""
    path = Path(backup)
    if not path.exists():
        raise MigrationError(f"no backup file {str(path)!r}")
    manifest = BackupManifest.read(path)
    size = path.stat().st_size
    if size != manifest.size:
        raise MigrationError(
            f"backup {str(path)!r} is corrupted: {size} bytes, the manifest says {manifest.size}"
        )
    digest, check, _tables, _version = _verify(path)
    if digest != manifest.sha256:
        raise MigrationError(
            f"backup {str(path)!r} is corrupted: its SHA-256 is {digest[:16]}..., "
            f"the manifest says {manifest.sha256[:16]}..."
        )
    if check != "ok":
        raise MigrationError(f"backup {str(path)!r} failed quick_check: {check}")
    return manifest


def restore_sqlite(
    backup: str | Path,
    target: str | Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> BackupManifest:
    """Write a verified backup back over ``target`` through the backup API, exclusively."""
    say = progress or (lambda _message: None)
    say("verifying the backup against its manifest")
    manifest = verify_backup(backup)
    target_path = Path(target).resolve()
    dst = sqlite3.connect(target_path, timeout=0, isolation_level=None)
    try:
        dst.execute("PRAGMA locking_mode=EXCLUSIVE")
        try:
            dst.execute("BEGIN EXCLUSIVE")
            dst.execute("COMMIT")  # exclusive locking mode keeps the lock until close
        except sqlite3.OperationalError as exc:
            raise MigrationError(
                f"cannot restore {str(target_path)!r}: another connection or process has it "
                f"open ({exc}); stop it first"
            ) from exc
        say(f"restoring {Path(backup).name} over {target_path.name}")
        src = sqlite3.connect(f"file:{Path(backup).resolve()}?mode=ro", uri=True)
        try:
            src.backup(dst)
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise MigrationError(f"restore into {str(target_path)!r} failed: {exc}") from exc
    finally:
        dst.close()
    check, tables, _version = _inspect(target_path)
    if check != "ok" or tables != manifest.tables:
        raise MigrationError(
            f"the restored database does not match the backup's manifest "
            f"(quick_check: {check}; tables: {tables} vs {manifest.tables})"
        )
    say("restored and verified")
    return manifest


def counts(path: str | Path) -> dict[str, Any]:
    """Row counts of every table of a SQLite file (for tests and the CLI)."""
    return _inspect(Path(path))[1]


class _Step(NamedTuple):
    """One statement of a rebuild: the query method to call, its SQL and parameters."""

    method: str  # "execute", "fetch_val" or "fetch_all"
    sql: str
    params: dict[str, Any] | None = None


_Steps = Generator[_Step, Any, int]


def _rebuild(table: str, definition: str, copy: dict[str, str] | None) -> _Steps:
    """The rebuild as the statements it runs, each yielded to a driver that sends back its
    result (or throws its error in): one procedure for both faces."""
    try:
        foreign_keys = yield _Step("fetch_val", "PRAGMA foreign_keys")
    except Error as exc:  # another database: PRAGMA is SQLite's
        raise MigrationError(
            f"rebuild_table rebuilds SQLite tables; this database refused it ({exc}). "
            "Elsewhere, ALTER TABLE changes a column's type and constraints in place"
        ) from exc
    if foreign_keys:
        raise MigrationError(
            "rebuild_table needs foreign keys off, or dropping the old table would cascade "
            "into its children: declare FOREIGN_KEYS = False in the migration"
        )
    exists = yield _Step(
        "fetch_val",
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :t",
        {"t": table},
    )
    if not exists:
        raise MigrationError(f"rebuild_table: no table {table!r}")
    # 3. Remember the indexes, triggers and views that go with the table.
    attached = yield _Step(
        "fetch_all",
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = :t "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL",
        {"t": table},
    )
    mention = re.compile(r"\b" + re.escape(table) + r"\b", re.IGNORECASE)
    all_views = yield _Step("fetch_all", "SELECT name, sql FROM sqlite_master WHERE type = 'view'")
    views = [v for v in all_views if mention.search(v["sql"] or "")]
    old_columns = [r["name"] for r in (yield _Step("fetch_all", _table_info(table)))]
    # 4. Create the new table under a temporary name.
    new = f"awaitdb_rebuild_{table}"
    yield _Step("execute", f"CREATE TABLE {_quote(new)} {definition}")
    new_columns = [r["name"] for r in (yield _Step("fetch_all", _table_info(new)))]
    # 5. Copy the rows.
    mapping = dict(copy or {})
    targets = [c for c in new_columns if c in mapping or c in old_columns]
    sources = [mapping.get(c, _quote(c)) for c in targets]
    cols = ", ".join(_quote(c) for c in targets)
    yield _Step(
        "execute",
        f"INSERT INTO {_quote(new)} ({cols}) SELECT {', '.join(sources)} FROM {_quote(table)}",
    )
    copied = int((yield _Step("fetch_val", f"SELECT count(*) FROM {_quote(new)}")))
    # 6-7. Drop the views that name it, drop the old table, rename the new one.
    for view in views:
        yield _Step("execute", f"DROP VIEW {_quote(view['name'])}")
    yield _Step("execute", f"DROP TABLE {_quote(table)}")
    yield _Step("execute", "PRAGMA legacy_alter_table = ON")  # rename, leave the rest as it is
    try:
        yield _Step("execute", f"ALTER TABLE {_quote(new)} RENAME TO {_quote(table)}")
    finally:
        yield _Step("execute", "PRAGMA legacy_alter_table = OFF")
    # 8-9. Recreate indexes, triggers and views.
    for obj in attached:
        yield _Step("execute", obj["sql"])
    for view in views:
        yield _Step("execute", view["sql"])
    # 10. The children must still find their parents (and the rows must have survived).
    problems = yield _Step("fetch_all", f"PRAGMA foreign_key_check({_quote(table)})")
    if problems:
        raise MigrationError(
            f"rebuild_table({table!r}): {len(problems)} foreign key violation(s) after the copy"
        )
    return copied


def _table_info(table: str) -> str:
    return f"PRAGMA table_info({_quote(table)})"


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
    expression over the old row (for renamed or converted columns). The sync face's twin is
    ``rebuild_table_sync``.
    """
    steps = _rebuild(table, definition, copy)
    result: Any = None
    error: Error | None = None
    while True:
        try:
            step = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as done:
            return int(done.value)
        error = None
        try:
            result = await getattr(tx, step.method)(step.sql, step.params)
        except Error as exc:  # handed to the procedure, which may clean up or explain it
            error = exc


def rebuild_table_sync(
    tx: Any,
    table: str,
    definition: str,
    *,
    copy: dict[str, str] | None = None,
) -> int:
    """``rebuild_table`` for a ``def up(tx)`` migration on the sync face."""
    steps = _rebuild(table, definition, copy)
    result: Any = None
    error: Error | None = None
    while True:
        try:
            step = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as done:
            return int(done.value)
        error = None
        try:
            result = getattr(tx, step.method)(step.sql, step.params)
        except Error as exc:  # handed to the procedure, which may clean up or explain it
            error = exc


# -- the support object ------------------------------------------------------------------------

_TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' "
    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> :ledger"
)
# One row per column of each foreign key; a key naming no parent columns points at the
# parent's primary key (column by column), or at its rowid when it has none.
_FOREIGN_KEYS = (
    'SELECT m.name AS child, f.id AS id, f."table" AS parent, f."from" AS child_col, '
    'coalesce(f."to", (SELECT t.name FROM pragma_table_info(f."table") AS t '
    "WHERE t.pk = f.seq + 1), 'rowid') AS parent_col "
    "FROM sqlite_master AS m JOIN pragma_foreign_key_list(m.name) AS f "
    "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
    "ORDER BY m.name, f.id, f.seq"
)


def _integrity(rows: list[Any]) -> tuple[bool, str]:
    messages = [str(r[0]) for r in rows]
    return messages == ["ok"], "; ".join(messages[:10])


def _no_violations(rows: list[Any]) -> tuple[bool, str]:
    return not rows, "ok" if not rows else f"{len(rows)} row(s) point at missing parents"


class SQLiteMigrationSupport:
    """``MigrationSupport`` for SQLite files (see the module docstring)."""

    name = "sqlite"
    begin_sql = "BEGIN IMMEDIATE"
    ledger_ddl = LEDGER_DDL
    tables_sql = _TABLES
    foreign_keys_off: tuple[str, ...] = ("PRAGMA foreign_keys = OFF",)
    foreign_keys_on: tuple[str, ...] = ("PRAGMA foreign_keys = ON",)
    violations_sql: str | None = "PRAGMA foreign_key_check"
    backup_source_sql: str | None = "SELECT file FROM pragma_database_list WHERE name = 'main'"
    foreign_keys_sql = _FOREIGN_KEYS

    def lock(self, key: int, timeout: float) -> LockSteps:
        """``BEGIN IMMEDIATE`` is the lock: wait for it up to ``timeout``, then restore."""

        def leave(saved: Any) -> tuple[str, ...]:
            return (f"PRAGMA busy_timeout = {int(saved)}", "PRAGMA foreign_keys = ON")

        return LockSteps(
            save="PRAGMA busy_timeout",
            enter=(f"PRAGMA busy_timeout = {int(timeout * 1000)}",),
            poll=None,
            leave=leave,
        )

    def probes(self, full: bool) -> list[Probe]:
        pragma = "integrity_check" if full else "quick_check"
        return [
            Probe(pragma, f"PRAGMA {pragma}", _integrity),
            Probe("foreign_key_check", "PRAGMA foreign_key_check", _no_violations),
        ]

    def backup_file(
        self,
        source: str,
        dest: str | Path | None,
        *,
        keep: int | None,
        awaitdb_version: str,
        progress: Callable[[str], None] | None,
    ) -> BackupManifest:
        return backup_sqlite(
            source, dest, keep=keep, awaitdb_version=awaitdb_version, progress=progress
        )

    def missing_file(self, config: Config) -> str | None:
        if config.is_memory or os.path.exists(config.path):
            return None
        return os.path.abspath(config.path)

    def backup(
        self, config: Config, dest: str | None, *, keep: int, progress: Callable[[str], None]
    ) -> Backup:
        if config.is_memory:
            raise MigrationError("an in-memory database cannot be backed up")
        from .. import __version__

        manifest = backup_sqlite(
            config.path, dest, keep=keep, awaitdb_version=__version__, progress=progress
        )
        return Backup(manifest.backup, manifest)

    def restore(
        self, config: Config, backup: str, *, progress: Callable[[str], None]
    ) -> BackupManifest:
        return restore_sqlite(backup, config.path, progress=progress)


SUPPORT: MigrationSupport = SQLiteMigrationSupport()  # mypy checks it against the protocol
