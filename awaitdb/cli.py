"""The ``awaitdb`` command: migrations, backups, restore and checks from the shell.

    awaitdb migrate [--to VERSION] [--dry-run]     awaitdb rollback --to VERSION
    awaitdb status                                 awaitdb baseline VERSION
    awaitdb backup [PATH]                          awaitdb restore PATH
    awaitdb check [--full]
    awaitdb worker MODULE:ATTR                     awaitdb jobs status|list|show|retry|cancel|purge

Every command takes ``--url`` (default ``$AWAITDB_URL``, then ``sqlite:///awaitdb.sqlite3``),
``--dir`` (default ``migrations``) and ``--json``. Exit codes: 0 done, 1 failed or problems
found, 2 bad usage (a bad ``--url`` included). Only ``migrate`` and ``baseline`` may create a
SQLite file that does not exist yet (and say so; a dry run never does); every other command
refuses a missing file with exit code 2, so a mistyped ``--url`` never leaves an empty
database behind.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from typing import Any, NoReturn, TypeVar

try:
    import click
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table
except ImportError as exc:  # pragma: no cover - the cli extra is not installed
    raise SystemExit("the awaitdb command needs its extra: pip install 'awaitdb[cli]'") from exc

from . import __version__
from ._async.database import Database
from ._config import Config, parse_config
from ._connect import connect, connect_sync
from ._errors import Error
from ._migrate.check import check as run_checks
from ._migrate.files import load_migrations, python_face
from ._migrate.runner import Migrator
from ._migrate.runner_sync import SyncMigrator
from ._migrate.support import support_for

__all__ = ["main"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _common(func: F) -> F:
    func = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)
    func = click.option(
        "--dir", "directory", default="migrations", show_default=True, help="Migrations folder."
    )(func)
    func = click.option(
        "--url", envvar="AWAITDB_URL", default=None, help="Database URL (default $AWAITDB_URL)."
    )(func)
    return func


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except Error as exc:
        err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False)
        raise SystemExit(1) from None


def _progress(as_json: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not as_json:
            err.print(f"[dim]…[/] {message}", highlight=False)

    return say


class _Steps:
    """Show each migration as it runs: a live line with its elapsed time on a terminal, plain
    start/done lines otherwise, nothing with ``--json`` (the JSON result carries the times)."""

    def __init__(self, as_json: bool, verb: str = "applying", done: str = "applied") -> None:
        self.as_json = as_json
        self.verb, self.done = verb, done
        self.progress: Progress | None = None
        if not as_json and err.is_terminal:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=err,
            )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _Steps:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: str, label: str, seconds: float | None) -> None:
        if self.as_json:
            return
        took = "" if seconds is None else _duration(seconds)
        if self.progress is not None:
            if event == "start":
                self._tasks[label] = self.progress.add_task(f"{self.verb} {label}", total=1)
            else:
                text = f"[green]{self.done}[/] {label}" if event == "done" else f"{label}: skipped"
                self.progress.update(self._tasks[label], completed=1, description=text)
            return
        if event == "start":
            err.print(f"{self.verb} {label} …", highlight=False)
        elif event == "done":
            err.print(f"{self.done} {label} in {took}", highlight=False)
        else:
            err.print(f"{label}: already done by another migrator ({took})", highlight=False)


def _duration(seconds: float) -> str:
    """``250 ms`` under a second, ``8.1 s`` from there on (as docs/cli.md shows)."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


async def _with_db(url: str | None, work: Callable[[Database], Awaitable[T]]) -> T:
    async with connect(url) as db:
        return await work(db)


def _fail(exc: Error) -> NoReturn:
    err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False)
    raise SystemExit(1) from None


def _sync_face(directory: str) -> bool:
    """Whether the folder's ``.py`` migrations are all plain ``def`` (run with ``connect_sync``
    and ``SyncMigrator``); a folder mixing ``def`` and ``async def`` steps is refused (exit 1)."""
    try:
        return python_face(load_migrations(directory)) == "sync"
    except Error as exc:
        _fail(exc)


def _migrating(
    url: str | None, directory: str, options: dict[str, Any], work: Callable[[Any], Any]
) -> Any:
    """``work(migrator)`` on the face the folder's ``.py`` migrations are written for."""
    if _sync_face(directory):
        try:
            with connect_sync(url) as db:
                return work(SyncMigrator(db, directory, **options))
        except Error as exc:
            _fail(exc)

    async def run(db: Database) -> Any:
        return await work(Migrator(db, directory, **options))

    return _run(_with_db(url, run))


def _require_file(
    url: str | None, *, may_create: bool = False, quiet: bool = False, dry_run: bool = False
) -> None:
    """Refuse (exit 2) a bad URL, and a SQLite URL whose file does not exist unless
    ``may_create``.

    Commands that only read or back up must never create an empty database for a mistyped
    path; ``migrate`` and ``baseline`` may, and say so; a dry run never does.
    """
    config = _config(url)
    path = support_for(config.scheme).missing_file(config)
    if path is None:
        return
    if may_create:
        if not quiet:
            err.print(f"[yellow]creating a new SQLite database at {path}[/]", highlight=False)
        return
    why = (
        "a dry run creates nothing"
        if dry_run
        else "only 'awaitdb migrate' and 'awaitdb baseline' create a new database"
    )
    err.print(
        f"[bold red]error:[/] no SQLite database at {path} (check --url or $AWAITDB_URL; {why})",
        highlight=False,
    )
    raise SystemExit(2)


def _emit(as_json: bool, data: Any, render: Callable[[], None]) -> None:
    if as_json:
        out.print_json(json.dumps(data, default=str))
    else:
        render()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="awaitdb")
def main() -> None:
    """awaitdb: migrations with verified backups, restore and checks."""


@main.command()
@_common
@click.option("--to", "to", type=int, default=None, help="Stop after this version.")
@click.option("--dry-run", is_flag=True, help="Print the SQL and transaction boundaries only.")
@click.option("--no-backup", is_flag=True, help="Skip the verified backup (SQLite).")
@click.option("--allow-out-of-order", is_flag=True, help="Apply unapplied lower versions too.")
@click.option("--accept-changed", type=int, multiple=True, help="Accept a changed file's checksum.")
def migrate(
    url: str | None,
    directory: str,
    as_json: bool,
    to: int | None,
    dry_run: bool,
    no_backup: bool,
    allow_out_of_order: bool,
    accept_changed: tuple[int, ...],
) -> None:
    """Apply pending migrations, each in its own transaction, after a verified backup."""

    steps = _Steps(as_json)
    options = {
        "backup": not no_backup,
        "allow_out_of_order": allow_out_of_order,
        "accept_changed": accept_changed,
        "progress": _progress(as_json),
        "on_step": steps,
    }
    _sync_face(directory)  # a folder no face can run is refused before anything is created
    _require_file(url, may_create=not dry_run, dry_run=dry_run)
    with steps:
        result = _migrating(url, directory, options, lambda m: m.migrate(to, dry_run=dry_run))
    if dry_run:
        _emit(as_json, {"plan": result.plan_text}, lambda: out.print(result.plan_text, end=""))
        return
    data = {
        "applied": result.applied,
        "seconds": result.seconds,
        "backup": result.backup.backup if result.backup else None,
    }

    def render() -> None:
        if result.backup:
            out.print(f"backup: {result.backup.backup} (sha256 {result.backup.sha256[:16]}…)")
        if result.applied:
            for label in result.applied:
                took = _duration(result.seconds.get(label, 0.0))
                out.print(f"[green]applied[/] {label} ({took})")
        else:
            out.print("nothing to apply")

    _emit(as_json, data, render)


@main.command()
@_common
@click.option("--to", "to", type=int, required=True, help="Roll back down to this version.")
@click.option("--no-backup", is_flag=True, help="Skip the verified backup (SQLite).")
def rollback(url: str | None, directory: str, as_json: bool, to: int, no_backup: bool) -> None:
    """Undo applied migrations above --to, newest first, using their down sections."""

    steps = _Steps(as_json, "rolling back", "rolled back")
    options = {"backup": not no_backup, "progress": _progress(as_json), "on_step": steps}
    _require_file(url)
    with steps:
        result = _migrating(url, directory, options, lambda m: m.rollback(to))
    data = {
        "rolled_back": result.applied,
        "seconds": result.seconds,
        "backup": result.backup.backup if result.backup else None,
    }

    def render() -> None:
        for label in result.applied:
            out.print(f"[yellow]rolled back[/] {label}")
        if not result.applied:
            out.print("nothing to roll back")

    _emit(as_json, data, render)


@main.command()
@_common
def status(url: str | None, directory: str, as_json: bool) -> None:
    """List migrations and their state: applied, pending, changed, dirty, missing-file."""
    _require_file(url)
    rows = _run(_with_db(url, lambda db: Migrator(db, directory).status()))

    def render() -> None:
        table = Table("version", "name", "state", "applied at", "ms")
        colours = {"applied": "green", "pending": "yellow"}
        for row in rows:
            colour = colours.get(row.state, "red")
            ms = "" if row.duration_ms is None else str(row.duration_ms)
            state = f"[{colour}]{row.state}[/]"
            table.add_row(str(row.version), row.name, state, row.applied_at or "", ms)
        out.print(table)

    _emit(as_json, [asdict(r) for r in rows], render)
    if any(r.state in {"changed", "dirty", "missing-file"} for r in rows):
        raise SystemExit(1)


@main.command()
@_common
@click.argument("version", type=int)
def baseline(url: str | None, directory: str, as_json: bool, version: int) -> None:
    """Mark an existing database as already at VERSION, without running anything."""
    _require_file(url, may_create=True)
    marked = _run(_with_db(url, lambda db: Migrator(db, directory).baseline(version)))
    message = f"marked as applied: {', '.join(marked) or 'nothing'}"
    _emit(as_json, {"marked": marked}, lambda: out.print(message))


def _config(url: str | None) -> Config:
    try:
        return parse_config(url)
    except Error as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(2) from None


@main.command()
@_common
@click.argument("path", required=False)
@click.option("--keep", type=int, default=5, show_default=True, help="Backups to keep (SQLite).")
def backup(url: str | None, directory: str, as_json: bool, path: str | None, keep: int) -> None:
    """Take a verified backup (SQLite: backup API + quick_check; PostgreSQL: pg_dump)."""
    config = _config(url)
    _require_file(url)
    support = support_for(config.scheme)
    try:
        with err.status("backing up", spinner="dots"):
            made = support.backup(config, path, keep=keep, progress=_progress(as_json))
    except Error as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(1) from None
    manifest = made.manifest
    if manifest is None:
        _emit(as_json, {"backup": made.path}, lambda: out.print(f"backup: {made.path}"))
        return
    text = (
        f"backup: {manifest.backup}\n  {manifest.size:,} bytes, sha256 {manifest.sha256}, "
        f"quick_check {manifest.quick_check}, {len(manifest.tables)} tables"
    )
    _emit(as_json, asdict(manifest), lambda: out.print(text))


@main.command()
@_common
@click.argument("path")
def restore(url: str | None, directory: str, as_json: bool, path: str) -> None:
    """Write a verified SQLite backup back over the database (refused while it is in use)."""
    config = _config(url)
    try:
        with err.status("restoring", spinner="dots"):
            manifest = support_for(config.scheme).restore(config, path, progress=_progress(as_json))
    except Error as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(1) from None
    text = f"restored {path} ({len(manifest.tables)} tables verified)"
    _emit(as_json, {"restored": path, "tables": manifest.tables}, lambda: out.print(text))


@main.command(name="check")
@_common
@click.option("--full", is_flag=True, help="integrity_check instead of quick_check (SQLite).")
def check_command(url: str | None, directory: str, as_json: bool, full: bool) -> None:
    """Check integrity, foreign keys and orphans; exit 1 if anything is wrong."""
    _require_file(url)
    findings = _run(_with_db(url, lambda db: run_checks(db, full=full)))

    def render() -> None:
        table = Table("check", "result", "detail")
        for f in findings:
            table.add_row(f.check, "[green]ok[/]" if f.ok else "[red]FAILED[/]", f.detail)
        out.print(table)

    _emit(as_json, [asdict(f) for f in findings], render)
    if not all(f.ok for f in findings):
        raise SystemExit(1)


@main.command()
def tour() -> None:
    """Run the two-minute tour on a temporary SQLite database."""
    from .tour import main as tour_main

    sys.argv = ["awaitdb tour"]
    tour_main()


from ._cli_jobs import jobs_group, worker  # noqa: E402 - the jobs commands live in their module

main.add_command(worker)
main.add_command(jobs_group)

if __name__ == "__main__":  # pragma: no cover
    main()
