"""The CLI never creates a database by accident, backups leave nothing behind, migrations are
visible (issue 13)."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import write
from rich.console import Console

import awaitdb
import awaitdb.cli as cli_module
from awaitdb.cli import main as cli

MORE = "-- up\nCREATE TABLE more (x INTEGER);\n-- down\nDROP TABLE more;\n"


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


def _backup_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_backups_leave_no_partial_files_and_keep_prunes_everything(tmp_path: Path) -> None:
    db_path = tmp_path / "app.db"
    url = f"sqlite:///{db_path}"
    folder = _migrations(tmp_path / "migrations")
    assert invoke("migrate", "--url", url, "--dir", str(folder), "--no-backup").exit_code == 0
    backups = tmp_path / "backups"
    backups.mkdir()
    # leftovers of an old backup taken by an earlier release
    for suffix in ("", ".json", ".partial-wal", ".partial-shm"):
        (backups / f"app-20000101T000000000000Z.sqlite3{suffix}").write_text("old")
    for _ in range(3):
        result = invoke("backup", "--url", url, "--dir", str(folder), "--keep", "2", "--json")
        assert result.exit_code == 0, result.output
    names = _backup_files(backups)
    assert len(names) == 4, names  # two backups, each with its manifest, nothing else
    assert all(n.endswith((".sqlite3", ".sqlite3.json")) for n in names), names
    assert not any("2000" in n for n in names)
    restored = invoke("restore", str(backups / names[0]), "--url", url, "--dir", str(folder))
    assert restored.exit_code == 0, restored.output
    assert _backup_files(backups) == names  # verifying and restoring wrote nothing beside them


def test_first_start_takes_no_backup_of_an_empty_database(tmp_path: Path) -> None:
    db_path = tmp_path / "app.db"
    url = f"sqlite:///{db_path}"
    folder = _migrations(tmp_path / "migrations")
    result = invoke("migrate", "--url", url, "--dir", str(folder))
    assert result.exit_code == 0, result.output
    assert "no backup needed" in result.output
    assert not (tmp_path / "backups").exists()
    write(
        folder,
        "0003_more.sql",
        "-- up\nCREATE TABLE more (x INTEGER);\n-- down\nDROP TABLE more;\n",
    )
    result = invoke("migrate", "--url", url, "--dir", str(folder))
    assert result.exit_code == 0 and "before migrating" in result.output
    assert len(list((tmp_path / "backups").glob("*.sqlite3"))) == 1
    result = invoke("rollback", "--to", "2", "--url", url, "--dir", str(folder))
    assert result.exit_code == 0, result.output
    assert "before rolling back" in result.output and "before migrating" not in result.output


def test_cli_migrate_shows_each_step_with_its_time(tmp_path: Path, monkeypatch: Any) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    folder = _migrations(tmp_path / "migrations")
    result = invoke("migrate", "--url", url, "--dir", str(folder))  # not a terminal: plain lines
    assert result.exit_code == 0, result.output
    assert "applying 0001_users …" in result.stderr
    assert re.search(r"applied 0001_users in \d+ ms", result.stderr)
    assert re.search(r"applied 0002_rows \(\d+ ms\)", result.stdout)
    write(
        folder,
        "0003_more.sql",
        "-- up\nCREATE TABLE more (x INTEGER);\n-- down\nDROP TABLE more;\n",
    )
    as_json = invoke("migrate", "--url", url, "--dir", str(folder), "--json")
    data = json.loads(as_json.stdout)
    assert data["applied"] == ["0003_more"] and data["seconds"]["0003_more"] >= 0
    assert "applying" not in as_json.stderr
    # on a terminal: a live rich line per step, with its elapsed time
    terminal = io.StringIO()
    monkeypatch.setattr(cli_module, "err", Console(file=terminal, force_terminal=True, width=100))
    result = invoke("rollback", "--to", "2", "--url", url, "--dir", str(folder))
    assert result.exit_code == 0, result.output
    shown = terminal.getvalue()
    assert "rolled back" in shown and "0003_more" in shown and re.search(r"0:00:\d\d", shown)


async def test_connect_migrations_are_logged_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="awaitdb")
    folder = _migrations(tmp_path / "migrations")
    url = f"sqlite:///{tmp_path / 'app.db'}"
    async with awaitdb.connect(url, migrations=str(folder)) as db:
        assert db.migrations_applied == ("0001_users", "0002_rows")
    assert not (tmp_path / "backups").exists()  # a brand-new database: nothing to back up
    lines = [r.getMessage() for r in caplog.records if r.name == "awaitdb"]
    assert any(re.fullmatch(r"applied migration 0001_users in [\d.]+ ms", m) for m in lines)
    assert any(re.fullmatch(r"applied migration 0002_rows in [\d.]+ ms", m) for m in lines)
    async with awaitdb.connect(url, migrations=str(folder)) as db:
        assert db.migrations_applied == ()
    write(folder, "0003_more.sql", "-- up\nCREATE TABLE more (x INTEGER);\n")
    with awaitdb.connect_sync(url, migrations=str(folder)) as sdb:
        assert sdb.migrations_applied == ("0003_more",)
    assert any(m.startswith("applied migration 0003_more in") for m in caplog.messages)


@pytest.mark.parametrize("home_name", ["plain", "data.sqlite3.d"])
def test_keep_prunes_only_this_database_even_under_a_dotted_folder(
    tmp_path: Path, home_name: str
) -> None:
    # review of issue 13: pruning ``app`` deleted ``app-2``'s backups (a glob on the stem), and
    # a folder named ``*.sqlite3*`` in the path made --keep prune nothing.
    home = tmp_path / home_name
    home.mkdir()
    url = f"sqlite:///{home / 'app.db'}"
    folder = _migrations(tmp_path / "migrations")
    assert invoke("migrate", "--url", url, "--dir", str(folder), "--no-backup").exit_code == 0
    backups = home / "backups"
    backups.mkdir()
    neighbour = [
        "app-2-20000101T000000000000Z.sqlite3",
        "app-2-20000101T000000000000Z.sqlite3.json",
        "app-old-20000101T000000000000Z.sqlite3",
    ]
    for name in neighbour:
        (backups / name).write_text("another database's backup")
    for _ in range(3):
        result = invoke("backup", "--url", url, "--dir", str(folder), "--keep", "1", "--json")
        assert result.exit_code == 0, result.output
    names = _backup_files(backups)
    assert all((backups / name).exists() for name in neighbour), names
    mine = [n for n in names if n not in neighbour]
    assert len(mine) == 2 and mine[0] + ".json" == mine[1], names  # one backup + its manifest


def test_migrate_dry_run_creates_nothing(tmp_path: Path) -> None:
    # review of issue 13: ``migrate --dry-run`` on a missing file created it
    typo = tmp_path / "typo.db"
    folder = _migrations(tmp_path / "migrations")
    result = invoke("migrate", "--dry-run", "--url", f"sqlite:///{typo}", "--dir", str(folder))
    assert result.exit_code == 2, result.output
    assert "no SQLite database at" in result.output and "dry run" in result.output
    assert not typo.exists()


def test_bad_url_is_bad_usage_everywhere(tmp_path: Path) -> None:
    # review of issue 13: status/check/rollback/migrate exited 1 for a bad URL, the docs say 2
    db_path = tmp_path / "app.db"
    folder = _migrations(tmp_path / "migrations")
    assert invoke("migrate", "--url", f"sqlite:///{db_path}", "--dir", str(folder)).exit_code == 0
    bad = f"sqlite:///{db_path}?readerz=2"
    for command in (
        ["status"],
        ["check"],
        ["rollback", "--to", "0"],
        ["migrate"],
        ["migrate", "--dry-run"],
        ["baseline", "1"],
        ["backup"],
        ["restore", str(tmp_path / "x.sqlite3")],
    ):
        result = invoke(*command, "--url", bad, "--dir", str(folder))
        assert result.exit_code == 2, (command, result.output)
        assert "readerz" in result.output, (command, result.output)


def test_durations_read_as_the_docs_show() -> None:
    # review of issue 13: docs/cli.md showed ``in 8.1 s`` where the CLI printed ``8100 ms``
    assert cli_module._duration(8.1) == "8.1 s"
    assert cli_module._duration(0.25) == "250 ms"
    docs = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    assert f"applied 0003_orders in {cli_module._duration(8.1)}" in docs


def _sync_py_folder(folder: Path) -> Path:
    write(folder, "0001_t.sql", "-- up\nCREATE TABLE t (id INTEGER PRIMARY KEY);\n")
    write(folder, "0002_seed.py", """
        def up(tx):
            tx.execute("INSERT INTO t (id) VALUES (1)")

        def down(tx):
            tx.execute("DELETE FROM t")
    """)  # fmt: skip
    return folder


def test_cli_applies_and_rolls_back_sync_face_python_migrations(tmp_path: Path) -> None:
    # issue 8 review: plain 'def up(tx)' steps (a connect_sync project) run on the sync face
    url = f"sqlite:///{tmp_path / 'app.db'}"
    folder = _sync_py_folder(tmp_path / "migrations")
    result = invoke("migrate", "--url", url, "--dir", str(folder), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["applied"] == ["0001_t", "0002_seed"]
    with awaitdb.connect_sync(url) as db:
        assert db.fetch_val("SELECT count(*) FROM t") == 1
    result = invoke("rollback", "--to", "1", "--url", url, "--dir", str(folder), "--no-backup")
    assert result.exit_code == 0, result.output
    with awaitdb.connect_sync(url) as db:
        assert db.fetch_val("SELECT count(*) FROM t") == 0


def test_cli_refuses_a_folder_mixing_def_and_async_def_before_anything(tmp_path: Path) -> None:
    db_path = tmp_path / "app.db"
    folder = _sync_py_folder(tmp_path / "migrations")
    write(folder, "0003_more.py", """
        async def up(tx):
            await tx.execute("INSERT INTO t (id) VALUES (2)")
    """)  # fmt: skip
    result = invoke("migrate", "--url", f"sqlite:///{db_path}", "--dir", str(folder))
    assert result.exit_code == 1, result.output
    assert "mix plain 'def' steps (0002_seed.py) and 'async def' steps (0003_more.py)" in (
        result.output
    )
    assert not db_path.exists()  # nothing created, nothing applied


@pytest.mark.postgresql
def test_pg_backup_default_is_a_folder_of_timestamped_dumps_pruned_by_keep(
    pg_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    # issue 8 review: without a PATH the dump went to a FILE named ./backups, overwritten each
    # run, and --keep was ignored.
    import shutil

    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    monkeypatch.chdir(tmp_path)
    dbname = pg_url.split("?", maxsplit=1)[0].rsplit("/", 1)[1]
    backups = tmp_path / "backups"
    backups.mkdir()
    other = backups / "other_db-20000101T000000000000Z.dump"  # another database's dump
    other.write_text("not ours")
    old_leftover = backups / f"{dbname}-20000101T000000000000Z.dump"
    old_leftover.write_text("old")
    made = []
    for _ in range(3):
        result = invoke("backup", "--url", pg_url, "--keep", "2", "--json")
        assert result.exit_code == 0, result.output
        made.append(Path(json.loads(result.stdout)["backup"]))
    assert len(set(made)) == 3 and all(p.parent == backups for p in made)
    assert all(re.fullmatch(rf"{dbname}-\d{{8}}T\d{{12}}Z\.dump", p.name) for p in made)
    # the two newest of this database's dumps, and the other database's, nothing else
    assert _backup_files(backups) == sorted([other.name, made[1].name, made[2].name])
    assert made[2].read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
    explicit = tmp_path / "one.dump"
    result = invoke("backup", str(explicit), "--url", pg_url, "--json")
    assert result.exit_code == 0 and explicit.read_bytes().startswith(b"PGDMP")


@pytest.mark.postgresql
def test_pg_backup_refuses_a_file_where_the_backups_folder_goes(
    pg_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "backups").write_text("a dump an earlier release wrote")
    result = invoke("backup", "--url", pg_url)
    assert result.exit_code == 1 and "is a file, not the backups folder" in result.output
    assert (tmp_path / "backups").read_text() == "a dump an earlier release wrote"
