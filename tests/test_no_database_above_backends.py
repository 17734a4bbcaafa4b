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
# Any identifier (any case) containing one of these names a database: ``IS_PG``, ``pgConn``...
NAME_WORDS = re.compile(r"sqlite|postgres|psycopg|asyncpg|(?:^|_)pg(?:_|$)", re.I)
# A string of code without spaces (a key, a URL prefix, a module path, an attribute) that
# contains one of these names a database.
NAME_STRINGS = re.compile(r"sqlite|postgres|psycopg|asyncpg|(?:^|[^a-z])pg_", re.I)
# Any string of code containing one of these speaks a database's SQL dialect: PostgreSQL's
# ``$n`` placeholders, ``$$`` quoting and ``pg_`` functions, SQLite's ``PRAGMA`` and
# ``sqlite_`` tables. Sentences that only name a database (``"... (SQLite)."``) are prose.
SQL_FRAGMENTS = re.compile(r"\$(?:\d|\{|\$)|\bpg_|\bsqlite_\w|\bpragma\b", re.I)
# Calls whose string arguments are messages for people (log lines, warnings).
MESSAGE_CALLS = frozenset(
    {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
)
ATTRIBUTE_CALLS = frozenset({"getattr", "hasattr", "setattr", "delattr"})


def _imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if base:
        return [base]
    return [alias.name for alias in node.names]  # ``from . import _sqlite``


def _ids_within(node: ast.AST) -> set[int]:
    return {id(child) for child in ast.walk(node)}


def _prose(tree: ast.AST) -> set[int]:
    """ids of the nodes that are prose: docstrings, bare strings, what ``raise`` says, and
    the arguments of log and warning calls."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant | ast.JoinedStr):
            ids |= _ids_within(node.value)
        elif isinstance(node, ast.Raise) and node.exc is not None:
            ids |= _ids_within(node.exc)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in MESSAGE_CALLS:
                for argument in [*node.args, *(keyword.value for keyword in node.keywords)]:
                    ids |= _ids_within(argument)
    return ids


def _joined_text(node: ast.JoinedStr) -> str:
    """An f-string's text with ``{}`` where each value goes: ``f"${n}"`` reads ``${}``."""
    return "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)


def _names_a_database(text: str) -> bool:
    """A string that keys on a database (no spaces: not a sentence) or holds its SQL."""
    spaced = any(character.isspace() for character in text.strip())
    return bool(SQL_FRAGMENTS.search(text) or (not spaced and NAME_STRINGS.search(text)))


def _public_names(tree: ast.AST) -> set[int]:
    """ids of the nodes of ``__all__ = [...]``: a facade lists the names it re-exports."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            ids |= _ids_within(node.value)
    return ids


def database_mentions(
    source: str, filename: str = "<code>", *, reexports: bool = False
) -> list[str]:
    """Each place in ``source``'s code (not prose) that names a database, as ``line: what``;
    with ``reexports``, imports from backend packages (not drivers) are allowed."""
    tree = ast.parse(source, filename)
    prose = _prose(tree) | (_public_names(tree) if reexports else set())
    found: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if id(node) in prose:
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            for module in _imported_modules(node):
                parts = set(module.split("."))
                if parts & DRIVERS or (parts & {"_sqlite", "_postgres"} and not reexports):
                    found.append(f"{line}: imports {module!r}")
        elif isinstance(node, ast.JoinedStr):
            prose |= _ids_within(node)  # its pieces are judged together, here
            text = _joined_text(node)
            if _names_a_database(text):
                found.append(f"{line}: the f-string {text!r}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _names_a_database(node.value):
                found.append(f"{line}: the string {node.value!r}")
        elif isinstance(node, ast.Attribute) and NAME_WORDS.search(node.attr):
            found.append(f"{line}: the attribute .{node.attr}")
        elif isinstance(node, ast.Name) and NAME_WORDS.search(node.id):
            found.append(f"{line}: the name {node.id}")
        elif isinstance(node, ast.arg) and NAME_WORDS.search(node.arg):
            found.append(f"{line}: the parameter {node.arg}")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in ATTRIBUTE_CALLS:
            for argument in node.args[1:2]:
                text = argument.value if isinstance(argument, ast.Constant) else None
                if isinstance(text, str) and NAME_WORDS.search(text):
                    found.append(f"{line}: the attribute {argument.value!r}")
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


def test_a_reexport_facade_may_list_its_names() -> None:
    code = '__all__ = ["backup_sqlite"]\nfrom ._sqlite.migration import backup_sqlite\n'
    assert database_mentions(code, reexports=True) == []


def test_every_dialect_hook_is_used_above_the_backends() -> None:
    # A hook nobody calls is a promise the core does not keep (issue 8 review: ``translate``
    # and ``may_retry`` were declared, implemented and never called).
    from awaitdb._dialects import Dialect

    table = (PACKAGE / "_dialects.py").read_text().partition("class Dialect")[0]
    code = "\n".join([table, *(path.read_text() for path in _modules_above_backends())])
    hooks = [
        name
        for name, value in vars(Dialect).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    ]
    unused = [name for name in hooks if not re.search(rf"\.{name}\b", code)]
    assert not unused, f"Dialect hooks no module above the backends uses: {unused}"


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
        # what the issue 8 review slipped past the first version of this scan
        'if url.startswith("sqlite:"):\n    pass\n',
        'if getattr(db, "is_sqlite", False):\n    pass\n',
        'if getattr(db, "is_pg", False):\n    pass\n',
        'IS_PG = db.backend[0] == "p"\n',
        "usePostgres = True\n",
        'out.append(f"${n}")\n',
        'sql = "SELECT $1, $2"\n',
        'sql = "DO $$ BEGIN NULL; END $$"\n',
        'sql = "SELECT pg_advisory_lock(1)"\n',
        'sql = "pragma journal_mode"\n',
        'sql = f"PRAGMA {name}"\n',
        'STYLE = {"SQLite": "?"}\n',
        'sql = "SELECT name FROM sqlite_master"\n',
        '__all__ = ["backup_sqlite"]\n',
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
        'raise InterfaceError(f"PostgreSQL takes at most {limit} values; SQLite {other}")\n',
        'log.warning("pg_stat_activity shows %s on PostgreSQL", n)\n',
        'warnings.warn("SQLite PRAGMA ignored", stacklevel=2)\n',
        'page = "$ 5"\n',
        "pgettext = 1\nupgrade = 2\n",
        'parser.add_argument("--keep", help="Backups to keep (SQLite).")\n',
    ],
)
def test_the_scan_leaves_prose_alone(code: str) -> None:
    assert database_mentions(code) == [], code
