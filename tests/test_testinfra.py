"""The test infrastructure itself: PostgreSQL tests never touch the database the URL names, the
run's own database is dropped even when tests fail, no password in the header, one version."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import conftest
import psycopg
import pytest
from click.testing import CliRunner
from pg_test_database import PREFIX, PgDatabaseError, RunDatabase, database_url

import awaitdb
from awaitdb.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def _database_exists(name: str) -> bool:
    assert conftest.PG_URL
    with psycopg.connect(conftest.PG_URL.split("?", maxsplit=1)[0], autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def test_database_url_points_at_the_named_database() -> None:
    assert (
        database_url("postgresql://u:p@h:5432/test?sslmode=disable", "awaitdb_test_1_ab")
        == "postgresql://u:p@h:5432/awaitdb_test_1_ab?sslmode=disable"
    )
    assert database_url("postgresql://u@h", "x") == "postgresql://u@h/x"
    assert database_url("postgresql://u@h/?dbname=test", "x") == "postgresql://u@h/x"


def test_pg_tests_run_in_a_database_of_their_own(pg_url: str) -> None:
    """Every PostgreSQL test (and what it spawns) gets the run's database, not the URL's."""
    with psycopg.connect(pg_url.split("?", maxsplit=1)[0]) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    assert row[0].startswith(PREFIX)
    assert conftest.PG_DATABASE is not None and row[0] == conftest.PG_DATABASE.name
    assert row[0] != conftest.PG_URL.split("?", maxsplit=1)[0].rsplit("/", 1)[-1]


def test_reset_refuses_the_database_the_url_names() -> None:
    conftest.pg_url_or_skip()
    with pytest.raises(RuntimeError, match="refusing to reset the schema of database"):
        conftest.reset_pg_schema(conftest.PG_URL)


def test_urls_handed_to_tests_print_without_the_password() -> None:
    """pytest prints a failing test's arguments (``pg_url = ...``): their repr is redacted."""
    url = conftest.with_app_name("postgresql://postgres:s3cr3tpw@127.0.0.1/awaitdb_test_1_ab")
    assert "s3cr3tpw" not in repr(url) and "***" in repr(url)
    assert str(url).startswith("postgresql://postgres:s3cr3tpw@")  # what drivers get
    assert "s3cr3tpw" not in repr(RunDatabase("postgresql://u:s3cr3tpw@h/test").url)


def test_header_and_errors_hide_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://postgres:s3cr3tpw@127.0.0.1:1/test?password=s3cr3tpw"
    database = RunDatabase(url)
    monkeypatch.setattr(conftest, "PG_DATABASE", database)
    header = conftest.pytest_report_header(pytest.Config.__new__(pytest.Config))
    assert "s3cr3tpw" not in header and "127.0.0.1:1" in header and database.name in header
    with pytest.raises(PgDatabaseError) as caught:
        database.ensure()  # nothing listens on port 1
    assert "s3cr3tpw" not in str(caught.value) and database.name in str(caught.value)
    with pytest.raises(PgDatabaseError):
        database.ensure()  # tried again (a busy server may serve the next test), same reason
    assert not database.created


FAILING_TEST = """
import conftest

def test_uses_pg_then_fails(pg_url):
    with open({out!r}, "w") as f:
        f.write(conftest.PG_DATABASE.name)
    assert False, "fails on purpose"
"""


def test_run_drops_its_database_even_when_tests_fail(tmp_path: Path) -> None:
    """A pytest run whose PostgreSQL test fails still drops the database it created."""
    conftest.pg_url_or_skip()
    out = tmp_path / "name.txt"
    (tmp_path / "test_inner.py").write_text(FAILING_TEST.format(out=str(out)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        [*command, str(tmp_path / "test_inner.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fails on purpose" in proc.stdout
    name = out.read_text()
    assert name.startswith(PREFIX)
    assert conftest.PG_DATABASE is not None and name != conftest.PG_DATABASE.name
    assert not _database_exists(name)


def test_version_is_written_once_and_agrees_everywhere() -> None:
    """pyproject reads the version from awaitdb/_version.py; CLI, module and metadata agree."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    result = CliRunner().invoke(cli_main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"awaitdb, version {awaitdb.__version__}"
    assert importlib.metadata.version("awaitdb") == awaitdb.__version__


def test_as_overloads_type_check() -> None:
    """The ``as_=`` overloads give the types tests/typecheck/check_as_overloads.py asserts.

    The gate's mypy call checks the file too (``[tool.mypy] files``); this keeps the check in
    the README's test command."""
    from mypy import api

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert {"awaitdb", "tests/conformance", "tests/typecheck"} <= set(config["files"])
    target = str(TESTS / "typecheck" / "check_as_overloads.py")
    stdout, stderr, status = api.run(["--strict", "--no-incremental", target])
    assert status == 0, stdout + stderr
