"""Nothing above the backend packages names a database (issue 8).

Every database-specific rule lives in a backend package (``awaitdb/_<pkg>/``) and is reached
through its dialect (``awaitdb/_dialects.py``, the one table from URL scheme to package). This
test reads the code (never the prose: docstrings, comments and messages may mention
databases) of every other module and fails on:

- an import of a backend package or of a driver (``sqlite3``, ``asyncpg``, ``psycopg``...);
- a string that is a database's name or a backend module's path (``"sqlite"``,
  ``"postgresql"``, ``"awaitdb._postgres.jobs"``): what a branch or a lookup table keys on;
- a name or attribute that is one (``self.sqlite``, ``is_postgres``).

Public facades listed in ``REEXPORT_ONLY`` may re-export per-database public names from a
backend package; that is all they may do.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "awaitdb"

# Where database knowledge belongs: the backend packages and the scheme table.
BACKEND_PLACES = ("_sqlite/", "_postgres/", "_dialects.py")

# Public facades whose public NAMES are per database (``awaitdb.migrations.backup_sqlite``...):
# they may re-export from a backend package, and nothing more (no driver import, no database
# name in a string, a branch or an identifier). No other exemption exists: route new
# database-specific code through the dialect (``dialect.load(feature)``) instead.
REEXPORT_ONLY = frozenset({"migrations.py"})

DRIVERS = frozenset({"sqlite3", "asyncpg", "psycopg", "psycopg2", "psycopg_pool", "aiosqlite"})
DATABASE_WORDS = frozenset(
    {"sqlite", "sqlite3", "postgres", "postgresql", "asyncpg", "psycopg", "psycopg2"}
)
IDENTIFIERS = re.compile(r"^(?:is_|use_)?(?:sqlite3?|postgres(?:ql)?|pg|asyncpg|psycopg)$")
MODULE_PATH = re.compile(r"(?:^|[.:])(?:_sqlite|_postgres|sqlite3|asyncpg|psycopg)(?:$|[.:])")


def _imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if base:
        return [base]
    return [alias.name for alias in node.names]  # ``from . import _sqlite``


def _prose(tree: ast.AST) -> set[int]:
    """ids of string constants that are prose: docstrings and bare string statements."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            ids.add(id(node.value))
    return ids


def database_mentions(
    source: str, filename: str = "<code>", *, reexports: bool = False
) -> list[str]:
    """Each place in ``source``'s code (not prose) that names a database, as ``line: what``;
    with ``reexports``, imports from backend packages (not drivers) are allowed."""
    tree = ast.parse(source, filename)
    prose = _prose(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            for module in _imported_modules(node):
                parts = set(module.split("."))
                if parts & DRIVERS or (parts & {"_sqlite", "_postgres"} and not reexports):
                    found.append(f"{line}: imports {module!r}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in prose:
                continue
            text = node.value.strip().lower()
            if text in DATABASE_WORDS or (" " not in text and MODULE_PATH.search(text)):
                found.append(f"{line}: the string {node.value!r}")
        elif isinstance(node, ast.Attribute) and IDENTIFIERS.match(node.attr):
            found.append(f"{line}: the attribute .{node.attr}")
        elif isinstance(node, ast.Name) and IDENTIFIERS.match(node.id):
            found.append(f"{line}: the name {node.id}")
        elif isinstance(node, ast.arg) and IDENTIFIERS.match(node.arg):
            found.append(f"{line}: the parameter {node.arg}")
    return found


def _modules_above_backends() -> list[Path]:
    paths = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if not relative.startswith(BACKEND_PLACES):
            paths.append(path)
    return paths


def test_no_module_above_the_backends_names_a_database() -> None:
    problems = []
    for path in _modules_above_backends():
        relative = path.relative_to(PACKAGE).as_posix()
        reexports = relative in REEXPORT_ONLY
        for mention in database_mentions(path.read_text(), str(path), reexports=reexports):
            problems.append(f"awaitdb/{relative}:{mention}")
    assert not problems, (
        "database knowledge above the backend packages (move it into awaitdb/_<pkg>/ and reach "
        "it through the dialect, awaitdb/_dialects.py):\n" + "\n".join(problems)
    )


def test_the_reexport_exemption_names_only_existing_files() -> None:
    # A stale entry would silently allow a new file of the same name later.
    missing = [name for name in REEXPORT_ONLY if not (PACKAGE / name).exists()]
    assert not missing, f"remove these from REEXPORT_ONLY: {missing}"


def test_a_reexport_facade_still_may_not_branch_on_a_database() -> None:
    code = 'from ._sqlite.migration import backup_sqlite\nif name == "sqlite":\n    pass\n'
    assert database_mentions(code, reexports=True) == ["2: the string 'sqlite'"]


@pytest.mark.parametrize(
    "code",
    [
        'if db.backend == "sqlite":\n    pass\n',
        'TABLE = {"postgresql": 1}\n',
        "if self.sqlite:\n    pass\n",
        "from .._sqlite.common import translate\n",
        "from .._postgres import errors\n",
        "from . import _sqlite\n",
        "import asyncpg\n",
        "import sqlite3\n",
        "from psycopg.rows import tuple_row\n",
        'spec = "awaitdb._postgres.jobs:PostgresJobs"\n',
        'match name:\n    case "postgres":\n        pass\n',
        "def f(is_postgres: bool) -> None:\n    pass\n",
    ],
)
def test_the_scan_catches_a_database_named_in_code(code: str) -> None:
    assert database_mentions(code), code


@pytest.mark.parametrize(
    "code",
    [
        '"""Docstrings may mention SQLite, sqlite and postgresql."""\n',
        'def f():\n    """sqlite"""\n',
        'raise ValueError("PostgreSQL refused it; on SQLite this works")\n',
        "# a comment about asyncpg\nx = 1\n",
        'name = dialect.name\nurl = f"{name}:///x"\n',
    ],
)
def test_the_scan_leaves_prose_alone(code: str) -> None:
    assert database_mentions(code) == [], code
