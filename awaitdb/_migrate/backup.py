"""Backups: the manifest written beside each one, and the file helpers every backend shares.

The backend packages take and restore the backups themselves (``awaitdb/_sqlite/migration.py``:
a verified copy through the online backup API; ``awaitdb/_postgres/migration.py``: pg_dump); a
manifest records the copy's size, SHA-256, integrity check and row counts, so a backup can be
verified before it is trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._errors import MigrationError

__all__ = ["BackupManifest", "default_backup_dir", "fsync_dir", "fsync_file", "sha256_of"]


@dataclass
class BackupManifest:
    """What a backup holds, written beside it as ``<backup>.json``."""

    backup: str
    source: str
    created_at: str
    size: int
    sha256: str
    quick_check: str  # the integrity check of the copy: "ok", or what it found
    tables: dict[str, int] = field(default_factory=dict)
    schema_version: int | None = None
    awaitdb_version: str = ""

    def write(self) -> Path:
        path = Path(self.backup + ".json")
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
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


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()
