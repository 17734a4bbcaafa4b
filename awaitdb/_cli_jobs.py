"""The jobs commands of ``awaitdb``: ``worker`` and the ``jobs`` group.

    awaitdb worker MODULE:ATTR [--concurrency N] [--lease S] [--grace S]
    awaitdb jobs status | list [--status S] [--limit N] | show ID | retry ID | cancel ID
    awaitdb jobs purge [--older-than SECONDS]

``MODULE:ATTR`` names a ``Queue`` (at module level: ``jobs.Queue(awaitdb.connect(url))``, opened
and closed by the command), a list of queues, or a function (plain or async) that takes the
``Database`` opened from ``--url`` and returns either. Every command takes ``--url`` and
``--json``; the jobs group also ``--queue``. Exit codes: 0 done, 1 failed (no such job, nothing
to retry or cancel, a database error), 2 bad usage.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from ._async.database import Database
from ._connect import connect
from ._errors import Error
from ._jobs.models import JobInfo
from ._jobs.queue import Queue, check_queue_name
from ._jobs.worker import Worker

__all__ = ["jobs_group", "worker"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _options(func: F) -> F:
    func = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)
    func = click.option(
        "--url", envvar="AWAITDB_URL", default=None, help="Database URL (default $AWAITDB_URL)."
    )(func)
    return func


def _queue_option(func: F) -> F:
    return click.option(
        "--queue", "queue_name", default="default", show_default=True, help="Queue name."
    )(func)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except Error as exc:
        err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False)
        raise SystemExit(1) from None


def _print(as_json: bool, data: Any, render: Callable[[], None]) -> None:
    if as_json:
        out.print_json(json.dumps(data, default=str))
    else:
        render()


# -- awaitdb worker ------------------------------------------------------------------------------


def _load(target: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter("expected MODULE:ATTR, e.g. app.tasks:queue", param_hint="TARGET")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module at import
        raise click.BadParameter(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise click.BadParameter(f"module {module_name!r} has no attribute {attr!r}") from None


def _is_factory(found: Any) -> bool:
    return callable(found) and not isinstance(found, Queue)


async def _queues_from(found: Any, db: Database | None) -> list[Queue]:
    if _is_factory(found):
        found = found(db)
        if inspect.isawaitable(found):
            found = await found
    queues = [found] if isinstance(found, Queue) else found
    if not isinstance(queues, list | tuple) or not queues:
        raise click.BadParameter("the target must be a Queue, a list of Queues, or a factory")
    for queue in queues:
        if not isinstance(queue, Queue):
            raise click.BadParameter(f"not a Queue: {queue!r}")
    return list(queues)


async def _serve(
    url: str | None,
    target: Any,
    concurrency: int,
    lease: float,
    grace: float,
    as_json: bool,
) -> dict[str, int]:
    if _is_factory(target):
        async with connect(url) as db:
            queues = await _queues_from(target, db)
            return await _work(queues, concurrency, lease, grace, as_json)
    # Queues defined at module level hold their own database (Queue(awaitdb.connect(url))):
    # --url is not used; the databases they opened are closed here.
    queues = await _queues_from(target, None)
    try:
        return await _work(queues, concurrency, lease, grace, as_json)
    finally:
        for queue in queues:
            await queue.aclose()


async def _work(
    queues: list[Queue], concurrency: int, lease: float, grace: float, as_json: bool
) -> dict[str, int]:
    work = Worker(queues, concurrency=concurrency, lease=lease, grace=grace)
    live = not as_json and err.is_terminal
    reporter = asyncio.ensure_future(_report(work, as_json, live))
    try:
        await work.run()
    finally:
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
        if live:
            err.print()
    if work.abandoned:
        # Tasks that ignore cancellation would keep asyncio.run() waiting for them forever;
        # their jobs are already released, so the process ends here.
        err.print(f"exiting without {work.abandoned} task(s) that ignored cancellation")
        _print_stopped(dict(work.counts), as_json)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return dict(work.counts)


def _print_stopped(counts: dict[str, int], as_json: bool) -> None:
    if as_json:  # JSON lines, like the progress lines
        print(json.dumps({"stopped": True, **counts}), flush=True)
    else:
        err.print(f"stopped: {counts}", highlight=False)


async def _report(work: Worker, as_json: bool, live: bool) -> None:
    """A live progress line on a terminal, a JSON line every 5 s with ``--json``."""
    started = time.monotonic()
    last_done, last_time = 0, started
    while True:
        await asyncio.sleep(0.5 if live else 5.0)
        now = time.monotonic()
        counts = work.counts
        rate = (counts["done"] - last_done) / max(1e-9, now - last_time)
        last_done, last_time = counts["done"], now
        if as_json:
            line = {"running": work.running, "done_per_s": round(rate, 1), **counts}
            print(json.dumps(line), flush=True)
        elif live:
            err.print(
                f"\r[bold]{work.id}[/] running {work.running}  done {counts['done']}  "
                f"retried {counts['retried']}  failed {counts['failed']}  {rate:,.0f}/s   ",
                end="",
                highlight=False,
            )


@click.command(name="worker")
@click.argument("target", metavar="MODULE:ATTR")
@_options
@click.option("--concurrency", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--lease", default=30.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--grace", default=10.0, show_default=True, type=click.FloatRange(min=0))
def worker(
    target: str, url: str | None, as_json: bool, concurrency: int, lease: float, grace: float
) -> None:
    """Run a jobs worker until SIGTERM or Ctrl-C (then a graceful shutdown; a second one skips
    the grace time)."""
    found = _load(target)
    counts = _run(_serve(url, found, concurrency, lease, grace, as_json))
    _print_stopped(counts, as_json)


# -- awaitdb jobs ... ----------------------------------------------------------------------------


@click.group(name="jobs")
def jobs_group() -> None:
    """Look at and control the jobs of a queue."""


async def _with_queue(url: str | None, queue_name: str, work: Callable[[Queue], Awaitable[T]]) -> T:
    async with connect(url) as db:
        return await work(Queue(db, queue_name))


def _checked_queue(queue_name: str) -> str:
    try:
        return check_queue_name(queue_name)
    except Error as exc:
        raise click.BadParameter(str(exc), param_hint="--queue") from None


def _job_table(items: list[JobInfo]) -> Table:
    table = Table("id", "task", "status", "attempts", "priority", "run at", "error")
    for job in items:
        run_at = job.run_at.isoformat(timespec="seconds") if job.run_at else ""
        table.add_row(
            str(job.id),
            job.task,
            job.status,
            f"{job.attempts}/{job.max_attempts}",
            str(job.priority),
            run_at,
            (job.error or "")[:60],
        )
    return table


@jobs_group.command(name="status")
@_options
@_queue_option
def status_command(url: str | None, as_json: bool, queue_name: str) -> None:
    """Counts by status and task, the oldest ready job's wait, done per second."""
    name = _checked_queue(queue_name)
    stats = _run(_with_queue(url, name, lambda q: q.stats()))

    def render() -> None:
        table = Table("task", *stats.by_status)
        table.add_row("[bold]all[/]", *(str(n) for n in stats.by_status.values()))
        for task, by in sorted(stats.by_task.items()):
            table.add_row(task, *(str(by.get(s, 0)) for s in stats.by_status))
        out.print(table)
        age = stats.oldest_queued_age
        out.print(
            f"queue {stats.queue}: oldest ready job waited "
            f"{'-' if age is None else f'{age:.1f}s'}, {stats.done_per_second:.1f} done/s "
            "(last minute)"
        )

    _print(as_json, stats.as_dict(), render)


@jobs_group.command(name="list")
@_options
@_queue_option
@click.option("--status", default=None, help="Only jobs with this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
def list_command(
    url: str | None, as_json: bool, queue_name: str, status: str | None, limit: int
) -> None:
    """The newest jobs of the queue."""
    name = _checked_queue(queue_name)
    from ._jobs.models import STATUSES

    if status is not None and status not in STATUSES:
        raise click.BadParameter(f"one of {', '.join(STATUSES)}", param_hint="--status")
    items = _run(_with_queue(url, name, lambda q: q.list(status, limit)))
    _print(as_json, [j.as_dict() for j in items], lambda: out.print(_job_table(items)))


@jobs_group.command(name="show")
@click.argument("job_id", type=int)
@_options
def show_command(job_id: int, url: str | None, as_json: bool) -> None:
    """Everything about one job, with its error and traceback."""
    info = _run(_with_queue(url, "default", lambda q: q.get(job_id)))
    if info is None:
        err.print(f"[bold red]error:[/] no job {job_id}", highlight=False)
        raise SystemExit(1)

    def render() -> None:
        for key, value in info.as_dict().items():
            if key != "traceback":
                out.print(f"[bold]{key:>12}[/] {value}", highlight=False)
        if info.traceback:
            out.print(info.traceback, highlight=False)

    _print(as_json, info.as_dict(), render)


def _control(action: str, job_id: int, url: str | None, as_json: bool) -> None:
    async def work(q: Queue) -> bool:
        ok: bool = await getattr(q, action)(job_id)
        return ok

    ok = _run(_with_queue(url, "default", work))
    verb = {"cancel": "cancelled", "retry": "queued again"}[action]
    message = f"job {job_id} {verb}" if ok else f"job {job_id} was not {verb}"
    _print(as_json, {"id": job_id, action: ok}, lambda: out.print(message))
    if not ok:
        raise SystemExit(1)


@jobs_group.command(name="retry")
@click.argument("job_id", type=int)
@_options
def retry_command(job_id: int, url: str | None, as_json: bool) -> None:
    """Queue a failed or cancelled job again (its attempts reset); exit 1 if it is neither."""
    _control("retry", job_id, url, as_json)


@jobs_group.command(name="cancel")
@click.argument("job_id", type=int)
@_options
def cancel_command(job_id: int, url: str | None, as_json: bool) -> None:
    """Cancel a queued, scheduled or running job; exit 1 if it had already ended."""
    _control("cancel", job_id, url, as_json)


@jobs_group.command(name="purge")
@_options
@_queue_option
@click.option(
    "--older-than",
    default=7 * 86400.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds since the job ended.",
)
def purge_command(url: str | None, as_json: bool, queue_name: str, older_than: float) -> None:
    """Delete ended jobs (done, failed, cancelled) older than --older-than seconds."""
    name = _checked_queue(queue_name)
    deleted = _run(_with_queue(url, name, lambda q: q.purge(older_than)))
    _print(as_json, {"deleted": deleted}, lambda: out.print(f"deleted {deleted} job(s)"))
