"""The CLI never creates a database by accident, backups leave nothing behind, migrations are
visible (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from conftest import write

from awaitdb.cli import main as cli


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _migrations(folder: Path) -> Path:
    write(folder, "0001_users.sql", "-- up\nCREATE TABLE users (id INTEGER PRIMARY KEY);\n")
    write(folder, "0002_rows.sql", "-- up\nINSERT INTO users (id) VALUES (1), (2);\n")
    return folder


def test_cli_refuses_a_missing_sqlite_file(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    url = f"sqlite:///{typo}"
    folder = _migrations(tmp_path / "migrations")
    for command in (["status"], ["check"], ["backup"], ["rollback", "--to", "0"]):
        result = invoke(*command, "--url", url, "--dir", str(folder))
        assert result.exit_code == 2, (command, result.output)
        assert "no SQLite database at" in result.output and str(typo) in result.output
        assert not typo.exists(), command
    assert sorted(p.name for p in tmp_path.iterdir()) == ["migrations"]  # nothing created


def test_cli_migrate_and_baseline_may_create_and_say_so(tmp_path: Path) -> None:
    folder = _migrations(tmp_path / "migrations")
    fresh = tmp_path / "fresh.db"
    result = invoke("migrate", "--url", f"sqlite:///{fresh}", "--dir", str(folder))
    assert result.exit_code == 0, result.output
    assert "creating a new SQLite database" in result.output and fresh.exists()
    other = tmp_path / "other.db"
    result = invoke("baseline", "1", "--url", f"sqlite:///{other}", "--dir", str(folder))
    assert result.exit_code == 0, result.output
    assert "creating a new SQLite database" in result.output and other.exists()
    again = invoke("status", "--url", f"sqlite:///{fresh}", "--dir", str(folder), "--json")
    assert again.exit_code == 0 and "creating" not in again.output
    assert [row["state"] for row in json.loads(again.stdout)] == ["applied", "applied"]
