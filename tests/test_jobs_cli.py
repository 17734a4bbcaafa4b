"""``awaitdb worker`` and ``awaitdb jobs ...`` on both backends: output, JSON, exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

import awaitdb
from awaitdb import jobs
from awaitdb.cli import main as cli

APP = """
    from awaitdb import jobs

    def make(db):
        queue = jobs.Queue(db)

        @queue.task(name="add", retries=0)
        async def add(a: int, b: int) -> int:
            return a + b

        @queue.task(name="boom", retries=0)
        def boom() -> None:
            raise ValueError("boom")

        return queue
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_jobs_commands(db_url: str) -> None:
    db = awaitdb.connect_sync(db_url)
    try:
        queue = jobs.SyncQueue(db)
        first = queue.enqueue("add", a=1, b=2)
        second = queue.enqueue("add", a=2, b=3, delay=3600)
        result = invoke("jobs", "status", "--url", db_url, "--json")
        assert result.exit_code == 0, result.output
        stats = json.loads(result.output)
        assert stats["by_status"]["queued"] == 1 and stats["by_status"]["scheduled"] == 1
        assert invoke("jobs", "status", "--url", db_url).exit_code == 0

        result = invoke("jobs", "list", "--url", db_url, "--json", "--status", "scheduled")
        assert [j["id"] for j in json.loads(result.output)] == [second]
        assert "add" in invoke("jobs", "list", "--url", db_url).output

        result = invoke("jobs", "show", str(first), "--url", db_url, "--json")
        assert json.loads(result.output)["args"] == {"a": 1, "b": 2}
        assert invoke("jobs", "show", "999999", "--url", db_url).exit_code == 1

        assert invoke("jobs", "cancel", str(first), "--url", db_url).exit_code == 0
        assert invoke("jobs", "cancel", str(first), "--url", db_url).exit_code == 1
        result = invoke("jobs", "retry", str(first), "--url", db_url, "--json")
        assert result.exit_code == 0 and json.loads(result.output) == {"id": first, "retry": True}
        assert invoke("jobs", "retry", str(first), "--url", db_url).exit_code == 1

        result = invoke("jobs", "purge", "--url", db_url, "--older-than", "0", "--json")
        assert result.exit_code == 0 and json.loads(result.output) == {"deleted": 0}
        assert invoke("jobs", "list", "--url", db_url, "--status", "nope").exit_code == 2
        assert invoke("jobs", "status", "--url", db_url, "--queue", "bad name").exit_code == 2
    finally:
        db.close()


def test_worker_command_runs_jobs_and_stops_on_sigterm(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "cli_app.py").write_text(textwrap.dedent(APP))
    db = awaitdb.connect_sync(db_url)
    proc: subprocess.Popen[str] | None = None
    try:
        queue = jobs.SyncQueue(db)
        ok = queue.enqueue("add", a=20, b=22)
        bad = queue.enqueue("boom")
        command = [sys.executable, "-m", "awaitdb.cli", "worker", "cli_app:make", "--url"]
        command += [db_url, "--json", "--concurrency", "2", "--grace", "1"]
        proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            a, b = queue.get(ok), queue.get(bad)
            if a and b and a.status == "done" and b.status == "failed":
                break
            time.sleep(0.05)
        info = queue.get(ok)
        assert info is not None and info.status == "done" and info.result == 42
        failed = queue.get(bad)
        assert failed is not None and failed.error == "ValueError: boom"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
        assert proc.returncode == 0, stderr
        last: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        assert last["stopped"] is True and last["done"] == 1 and last["failed"] == 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
        db.close()


def test_worker_command_bad_target_is_bad_usage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert invoke("worker", "nocolon", "--url", url).exit_code == 2
    assert invoke("worker", "no_such_module_xyz:queue", "--url", url).exit_code == 2
