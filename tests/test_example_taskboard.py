"""The task-board example end to end: uvicorn in a subprocess on a free loopback port, real HTTP
through httpx, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = dict(os.environ, AWAITDB_URL=db_url, PYTHONPATH=str(ROOT))
    log_path = tmp_path / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.taskboard", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to ~30 s on a loaded machine
            if proc.poll() is not None:
                pytest.fail(f"the server exited: {log_path.read_text()}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the server did not answer /health")
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_taskboard_over_http(server: tuple[str, subprocess.Popen[str]]) -> None:
    base, proc = server
    with httpx.Client(base_url=base, timeout=10) as client:
        created = [client.post("/tasks", json={"title": f"task {i}"}) for i in range(25)]
        assert all(r.status_code == 201 for r in created)
        first = created[0].json()
        assert set(first) == {"id", "title", "status", "version", "created_at", "updated_at"}
        assert first["title"] == "task 0" and first["status"] == "todo"
        assert client.post("/tasks", json={"title": ""}).status_code == 422

        # keyset pagination walks every task once
        seen, after = [], 0
        while after is not None:
            page = client.get("/tasks", params={"limit": 10, "after": after}).json()
            seen += [task["id"] for task in page["items"]]
            after = page["next_after"]
        assert len(seen) == 25 and seen == sorted(set(seen))

        task_id = first["id"]
        renamed = client.patch(f"/tasks/{task_id}", json={"title": "write the report"})
        assert renamed.json()["title"] == "write the report" and renamed.json()["version"] == 2

        # status rules
        assert client.post(f"/tasks/{task_id}/status", json={"status": "done"}).status_code == 409
        assert client.post(f"/tasks/{task_id}/status", json={"status": "doing"}).status_code == 200
        done = client.post(f"/tasks/{task_id}/status", json={"status": "done"})
        assert done.status_code == 200 and done.json()["status"] == "done"
        refused = client.post(f"/tasks/{task_id}/status", json={"status": "todo"})
        assert refused.status_code == 409 and "cannot become todo" in refused.json()["detail"]
        assert client.post(f"/tasks/{task_id}/status", json={"status": "??"}).status_code == 422
        doing = client.get("/tasks", params={"status": "done"}).json()["items"]
        assert [t["id"] for t in doing] == [task_id]

        # the audit log is written by a stream consumer: poll until it caught up
        events = [
            "task.created",
            "task.renamed",
            "task.status_changed",
            "task.status_changed",
        ]  # the refused changes left no trace
        for _ in range(200):
            audit = client.get(f"/tasks/{task_id}/audit").json()
            if len(audit) >= len(events):
                break
            time.sleep(0.05)
        assert [row["event"] for row in audit] == events

        other = created[1].json()["id"]
        assert client.delete(f"/tasks/{other}").status_code == 204
        assert client.get(f"/tasks/{other}").status_code == 404
        assert client.delete(f"/tasks/{other}").status_code == 404

        # one job per change, all worked through by the jobs worker
        expected_jobs = 25 + 1 + 2 + 1
        for _ in range(200):
            jobs = client.get("/jobs").json()
            if jobs.get("done") == expected_jobs:
                break
            time.sleep(0.05)
        assert jobs == {"done": expected_jobs}

        assert client.get("/health/ready").json() == {"status": "ready"}
        pool = client.get("/health/db-pool").json()
        assert pool["queries"] > 0
        metrics = client.get("/metrics").text
        assert f'awaitdb_jobs{{queue="taskboard",status="done"}} {expected_jobs}.0' in metrics
        assert 'awaitdb_stream_lag{group="audit",stream="taskboard"} 0.0' in metrics
        for kind, name in (
            ("worker", "taskboard"),
            ("worker", "Worker"),
            ("consumer", "audit-consumer"),
        ):
            assert f'awaitdb_service_up{{kind="{kind}",name="{name}"}} 1.0' in metrics
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0  # a clean shutdown: workers stopped, database closed
