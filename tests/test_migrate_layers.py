"""Migrations sit above the core (issue 8): checked statically, on the source, without importing.

- no core module imports ``awaitdb._migrate`` (not even lazily), so there is no import cycle
  between the core and the migrator;
- nothing in ``awaitdb/_migrate/`` or ``cli.py`` names a database in code: what differs between
  databases comes from ``awaitdb/_sqlite/migration.py`` and ``awaitdb/_postgres/migration.py``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "awaitdb"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (lazy imports included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("awaitdb")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}


def _is_migrate(module: str) -> bool:
    return module == "awaitdb._migrate" or module.startswith("awaitdb._migrate.")


def _is_core(module: str) -> bool:
    """The data layer itself: the faces, the backends and the shared modules under them."""
    if module.endswith(".migration"):  # the backends' migration support sits above the core
        return False
    if module.split(".")[1:2] in (["_async"], ["_sync"], ["_sqlite"], ["_postgres"]):
        return True
    return module in {
        "awaitdb._sql",
        "awaitdb._config",
        "awaitdb._errors",
        "awaitdb._record",
        "awaitdb._ops",
        "awaitdb._stats",
        "awaitdb._state",
        "awaitdb._compat",
        "awaitdb._hooks",
        "awaitdb._backends",
        "awaitdb._bridge",
        "awaitdb._current",
    }


def test_no_core_module_imports_the_migrator() -> None:
    graph = _graph()
    offenders = {
        module: sorted(m for m in imported if _is_migrate(m))
        for module, imported in graph.items()
        if _is_core(module) and any(_is_migrate(m) for m in imported)
    }
    assert offenders == {}
    assert "awaitdb._migrate.runner" not in graph["awaitdb._async.database"]


def test_no_import_cycle_between_the_core_and_the_migrator() -> None:
    graph = _graph()
    # Everything the migrator's modules reach, then whether any core module reaches them back.
    reached_from_migrate: set[str] = set()
    todo = [m for m in graph if _is_migrate(m)]
    while todo:
        module = todo.pop()
        for nxt in graph.get(module, ()):
            if nxt not in reached_from_migrate:
                reached_from_migrate.add(nxt)
                todo.append(nxt)
    core_reached = {m for m in reached_from_migrate if _is_core(m)}
    for module in core_reached:
        seen, todo = {module}, [module]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                assert not _is_migrate(nxt), f"{module} reaches {nxt}: an import cycle"
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)


_DATABASE_WORD = re.compile(r"sqlite|postgres|\bpg_|asyncpg|psycopg", re.IGNORECASE)
_DATABASE_SQL = re.compile(r"\bPRAGMA\b|sqlite_|pg_|information_schema|pragma_", re.IGNORECASE)
_DATABASE_NAMES = {"sqlite", "postgresql", "postgres"}


def _names_a_database(path: Path) -> list[str]:
    """Where ``path``'s code (not its messages) names a database or speaks its SQL dialect."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in docstrings:
            continue
        words: list[str] = []
        if isinstance(node, ast.Name):
            words = [node.id]
        elif isinstance(node, ast.Attribute):
            words = [node.attr]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            words = [node.name]
        elif isinstance(node, ast.ImportFrom):
            words = [node.module or ""] + [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            words = [a.name for a in node.names]
        elif isinstance(node, ast.Compare):  # backend == "sqlite", scheme in {"postgresql"}
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and str(part.value).lower() in _DATABASE_NAMES:
                    found.append(f"{path.name}:{node.lineno}: compares with {part.value!r}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _DATABASE_SQL.search(node.value)
        ):
            found.append(f"{path.name}:{node.lineno}: SQL of one database: {node.value!r}")
        found.extend(
            f"{path.name}:{getattr(node, 'lineno', 0)}: names {word!r}"
            for word in words
            if _DATABASE_WORD.search(word)
        )
    return found


def test_no_database_named_in_the_migrator_or_the_cli() -> None:
    # support.py holds the two-entry table from backend name to support module (the dialect
    # registry takes it over); everything else asks it.
    files = [p for p in sorted((PACKAGE / "_migrate").glob("*.py")) if p.name != "support.py"]
    files.append(PACKAGE / "cli.py")
    found = [line for path in files for line in _names_a_database(path)]
    assert found == []


def test_the_check_catches_a_database_branch(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import sqlite3\n"
        "def f(db):\n"
        "    if db.backend == 'sqlite':\n"
        "        return db.fetch_all('PRAGMA quick_check')\n"
        "    raise ValueError('PostgreSQL is not supported here')\n"  # a message: allowed
    )
    found = _names_a_database(sample)
    assert len(found) == 3 and all("sample.py" in line for line in found)


def test_the_migrator_reads_no_private_state_of_a_database() -> None:
    """``db._config``, ``db._backend``, ``tx._db``...: the migrator uses public API only."""
    found = []
    for path in sorted((PACKAGE / "_migrate").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
            ):
                found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert found == []
