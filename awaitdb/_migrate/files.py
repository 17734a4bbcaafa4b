"""Migration files: ``NNNN_name.sql`` (``-- up`` / ``-- down``) and ``NNNN_name.py``.

SQL directives, in comments anywhere before ``-- up``::

    -- awaitdb: no-transaction        run outside a transaction (one statement only)
    -- awaitdb: foreign-keys-off      SQLite: foreign keys off while it runs (table rebuilds)
    -- allow-row-loss: users, logs    these tables may lose rows

Python migrations define ``async def up(tx)`` and optionally ``async def down(tx)`` (plain
``def`` for the sync face; ``python_face`` tells which a folder is written for), plus
optional module constants ``TRANSACTION = False``, ``FOREIGN_KEYS = False`` and
``ALLOW_ROW_LOSS = ("table",)``. A file's checksum is the SHA-256 of its bytes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .._errors import MigrationError
from .._sql import split_statements

__all__ = ["Migration", "load_migrations", "python_face"]

_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_\-]+)\.(sql|py)$")
_SECTION = re.compile(r"^\s*--\s*(up|down)\s*$", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^\s*--\s*awaitdb:\s*([a-z\-]+)\s*$", re.IGNORECASE)
_ROW_LOSS = re.compile(r"^\s*--\s*allow-row-loss:\s*(.+?)\s*$", re.IGNORECASE)
_DIRECTIVES = {"no-transaction", "foreign-keys-off"}

Step = Callable[[Any], Awaitable[None]]


@dataclass
class Migration:
    """One migration: its version, where it came from, and what it runs."""

    version: int
    name: str
    path: Path
    checksum: str
    kind: str  # "sql" or "py"
    up_sql: list[tuple[int, str]] = field(default_factory=list)  # (line, statement)
    down_sql: list[tuple[int, str]] | None = None
    up_py: Step | None = None
    down_py: Step | None = None
    transaction: bool = True
    foreign_keys: bool = True
    allow_row_loss: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def has_down(self) -> bool:
        return self.down_sql is not None or self.down_py is not None


def load_migrations(directory: str | Path) -> list[Migration]:
    """Every migration in ``directory``, sorted by version; bad files raise with file and line."""
    folder = Path(directory)
    if not folder.is_dir():
        raise MigrationError(f"no migrations directory {str(folder)!r}")
    found: dict[int, Migration] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith((".", "_")) or path.is_dir() or path.suffix not in {".sql", ".py"}:
            continue
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path}: bad migration file name; expected NNNN_name.sql or NNNN_name.py "
                "(digits, an underscore, then letters, digits, '_' or '-')"
            )
        version, name, kind = int(match.group(1)), match.group(2), match.group(3)
        migration = (
            _load_sql(path, version, name) if kind == "sql" else _load_py(path, version, name)
        )
        if version in found:
            raise MigrationError(
                f"{path}: version {version} is also used by {found[version].path.name}"
            )
        found[version] = migration
    return [found[v] for v in sorted(found)]


def python_face(migrations: list[Migration]) -> str | None:
    """``"sync"`` when every ``.py`` step is a plain ``def`` (for ``connect_sync``), ``"async"``
    when every one is ``async def``, None without ``.py`` steps; a mix no face can run raises."""
    plain: set[str] = set()
    coroutines: set[str] = set()
    for migration in migrations:
        for step in (migration.up_py, migration.down_py):
            if step is not None:
                found = coroutines if inspect.iscoroutinefunction(step) else plain
                found.add(migration.path.name)
    if plain and coroutines:
        raise MigrationError(
            f"{migrations[0].path.parent}: the Python migrations mix plain 'def' steps "
            f"({', '.join(sorted(plain))}) and 'async def' steps "
            f"({', '.join(sorted(coroutines))}); "
            "one run uses one face: write them all as 'def up(tx)' (connect_sync) or all as "
            "'async def up(tx)' (connect)"
        )
    if plain:
        return "sync"
    return "async" if coroutines else None


def _checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_sql(path: Path, version: int, name: str) -> Migration:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationError(f"{path}: not UTF-8 text ({exc})") from None
    migration = Migration(version, name, path, _checksum(data), "sql")
    lines = text.splitlines(keepends=True)
    sections: dict[str, tuple[int, list[str]]] = {}
    current: str | None = None
    for number, line in enumerate(lines, start=1):
        section = _SECTION.match(line)
        if section:
            current = section.group(1).lower()
            if current in sections:
                raise MigrationError(f"{path}:{number}: a second '-- {current}' section")
            if current == "up" and "down" in sections:
                raise MigrationError(f"{path}:{number}: '-- up' must come before '-- down'")
            sections[current] = (number + 1, [])
            continue
        if current is None:
            directive = _DIRECTIVE.match(line)
            if directive:
                word = directive.group(1).lower()
                if word not in _DIRECTIVES:
                    known = ", ".join(sorted(_DIRECTIVES))
                    raise MigrationError(
                        f"{path}:{number}: unknown directive {word!r} (known: {known})"
                    )
                if word == "no-transaction":
                    migration.transaction = False
                else:
                    migration.foreign_keys = False
                continue
            loss = _ROW_LOSS.match(line)
            if loss:
                tables = {t.strip().strip('"') for t in loss.group(1).split(",") if t.strip()}
                migration.allow_row_loss = migration.allow_row_loss | frozenset(tables)
                continue
            if line.strip() and not line.strip().startswith("--"):
                raise MigrationError(f"{path}:{number}: SQL before the '-- up' line")
            continue
        sections[current][1].append(line)
    if "up" not in sections:
        raise MigrationError(f"{path}:1: no '-- up' section (put '-- up' on a line of its own)")
    first, body = sections["up"]
    migration.up_sql = _statements(path, first, "".join(body))
    if not migration.up_sql:
        raise MigrationError(f"{path}:{first}: the '-- up' section is empty")
    if "down" in sections:
        first_down, body_down = sections["down"]
        migration.down_sql = _statements(path, first_down, "".join(body_down))
    if not migration.transaction and len(migration.up_sql) != 1:
        at = migration.up_sql[1][0] if len(migration.up_sql) > 1 else first
        raise MigrationError(
            f"{path}:{at}: a no-transaction migration must be a single statement "
            f"(found {len(migration.up_sql)})"
        )
    return migration


def _statements(path: Path, first_line: int, body: str) -> list[tuple[int, str]]:
    return [(first_line + line - 1, sql) for line, sql in split_statements(body)]


def _load_py(path: Path, version: int, name: str) -> Migration:
    data = path.read_bytes()
    module = _import(path)
    up = getattr(module, "up", None)
    if up is None or not callable(up):
        raise MigrationError(f"{path}:1: no 'async def up(tx)' function")
    down = getattr(module, "down", None)
    return Migration(
        version,
        name,
        path,
        _checksum(data),
        "py",
        up_py=up,
        down_py=down if callable(down) else None,
        transaction=bool(getattr(module, "TRANSACTION", True)),
        foreign_keys=bool(getattr(module, "FOREIGN_KEYS", True)),
        allow_row_loss=frozenset(getattr(module, "ALLOW_ROW_LOSS", ())),
    )


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"awaitdb_migration_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise MigrationError(f"{path}:1: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise MigrationError(f"{path}:{exc.lineno}: Python syntax error: {exc.msg}") from exc
    except Exception as exc:
        raise MigrationError(f"{path}:1: importing it failed: {type(exc).__name__}: {exc}") from exc
    return module
