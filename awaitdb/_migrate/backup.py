"""Verified SQLite backups, restore, and pg_dump for PostgreSQL.

A backup is taken with SQLite's online backup API in one step (a consistent snapshot; in WAL
mode writers are not blocked), fsynced, then verified: ``quick_check`` on the copy, its
SHA-256, and the row count of every table, recorded in a JSON manifest beside it. Hashing
runs in one thread while ``quick_check`` and the counts run in another. The last ``keep``
backups of a database are kept.

``restore`` checks the backup's hash and ``quick_check`` first, takes the target file
exclusively (refusing while any other connection, in this process or another, has it open),
and writes the backup back through the backup API, never with a plain file copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._config import hide_secrets, url_secrets
from .._errors import MigrationError

__all__ = [
    "BackupManifest",
    "backup_postgres",
    "backup_sqlite",
    "default_backup_dir",
    "restore_sqlite",
    "verify_backup",
]

LEDGER = "awaitdb_migrations"


@dataclass
class BackupManifest:
    """What a backup holds, written beside it as ``<backup>.json``."""

    backup: str
    source: str
    created_at: str
    size: int
    sha256: str
    quick_check: str
    tables: dict[str, int] = field(default_factory=dict)
    schema_version: int | None = None
    awaitdb_version: str = ""

    def write(self) -> Path:
        path = Path(self.backup + ".json")
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return path

    @classmethod
    def read(cls, backup: str | Path) -> BackupManifest:
        path = Path(str(backup) + ".json")
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise MigrationError(f"no manifest {str(path)!r} beside the backup") from None
        except (OSError, ValueError) as exc:
            raise MigrationError(f"unreadable manifest {str(path)!r}: {exc}") from exc
        return cls(**data)


def default_backup_dir(database: str | Path) -> Path:
    """``backups/`` beside the database file."""
    return Path(database).resolve().parent / "backups"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
            digest.append(_sha256(path))
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
    _fsync_file(partial)
    say("verifying the copy (quick_check, SHA-256, row counts)")
    digest, check, tables, version = _verify(partial)
    if check != "ok":
        _remove_with_sidecars(partial)
        raise MigrationError(f"the backup copy failed quick_check: {check}")
    os.replace(partial, target)
    _remove_with_sidecars(partial)  # -wal/-shm/-journal of the partial name, if any
    _fsync_dir(target.parent)
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


def backup_postgres(url: str, dest: str | Path, *, redacted: str = "") -> Path:
    """``pg_dump --format=custom`` of the database at ``url`` into ``dest``."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise MigrationError(
            "PostgreSQL backups need pg_dump, which is not on PATH here; install the "
            "PostgreSQL client tools (Debian: apt-get install postgresql-client) or back up "
            "with your own tooling before migrating"
        )
    path = Path(dest)
    if path.is_dir():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = path / f"pg-{stamp}.dump"
    path.parent.mkdir(parents=True, exist_ok=True)
    argv, env = pg_dump_command(pg_dump, url, path)
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        message = hide_secrets(
            result.stderr.strip().replace(url, redacted or "<url>"), url_secrets(url)
        )
        raise MigrationError(f"pg_dump failed: {message}")
    _fsync_file(path)
    return path


def counts(path: str | Path) -> dict[str, Any]:
    """Row counts of every table of a SQLite file (for tests and the CLI)."""
    return _inspect(Path(path))[1]
