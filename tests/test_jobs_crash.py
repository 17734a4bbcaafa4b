"""Workers killed with SIGKILL at random instants lose nothing; SIGTERM stops one within its grace.

Worker processes run ``tests/jobs_crash_app.py``. Both backends, real databases.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import awaitdb
from awaitdb import jobs

APP = Path(__file__).parent / "jobs_crash_app.py"


def spawn(
    url: str, lease: float = 1.0, grace: float = 0.5, *, pipe: bool = False
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), url, str(lease), str(grace)],
        stdout=subprocess.PIPE if pipe else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def reap(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def counts(db: awaitdb.SyncDatabase) -> dict[str, int]:
    rows = db.fetch_all(
        "SELECT status, count(*) FROM awaitdb_jobs WHERE queue = 'crash' GROUP BY status"
    )
    return {row[0]: int(row[1]) for row in rows}


class Proc:
    """A worker process and whether it said it is serving (read on a thread)."""

    def __init__(self, url: str) -> None:
        self.popen = spawn(url, pipe=True)
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if line.strip() == "ready":
                self.ready.set()

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait()
        self.reader.join(5)  # it reads to the end of the pipe, then we close it
        assert self.popen.stdout is not None
        self.popen.stdout.close()


def enqueue_wave(queue: jobs.SyncQueue, start: int, size: int) -> tuple[int, int, int]:
    plain = [{"n": i} for i in range(start, start + size // 2)]
    effect = [{"n": i} for i in range(start, start + size * 2 // 5)]
    flaky = [{"n": i} for i in range(start, start + size // 10)]
    queue.enqueue_many("plain", plain, retries=1000)
    queue.enqueue_many("effect", effect, retries=1000)
    queue.enqueue_many("flaky", flaky, retries=1000)
    return len(plain), len(effect), len(flaky)


def test_sigkill_workers_at_random_instants(db_url: str) -> None:
    rng = random.Random(20261122)
    db = awaitdb.connect_sync(db_url)
    procs: list[Proc] = []
    try:
        db.execute("CREATE TABLE runs (n INTEGER NOT NULL)")
        db.execute("CREATE TABLE effects (n INTEGER NOT NULL)")
        db.execute("CREATE TABLE flaky_seen (n INTEGER PRIMARY KEY)")
        queue = jobs.SyncQueue(db, "crash")
        plain = effect = flaky = 0
        next_n = 0

        def wave(size: int) -> None:
            nonlocal plain, effect, flaky, next_n
            p, e, f = enqueue_wave(queue, next_n, size)
            plain, effect, flaky, next_n = plain + p, effect + e, flaky + f, next_n + size

        wave(2000)
        procs = [Proc(db_url) for _ in range(4)]
        kills = 0
        procs[0].ready.wait(20)
        deadline = time.monotonic() + 40
        while kills < 22 and time.monotonic() < deadline:
            serving = [i for i, proc in enumerate(procs) if proc.ready.is_set()]
            if not serving:
                time.sleep(0.05)
                continue
            victim = rng.choice(serving)
            time.sleep(rng.uniform(0.05, 0.3))  # a random instant of its work
            procs[victim].kill()
            procs[victim] = Proc(db_url)
            kills += 1
            if counts(db).get("queued", 0) < 300:  # keep them busy until the last kill
                wave(400)
        total = plain + effect + flaky
        while counts(db).get("done", 0) < total and time.monotonic() < deadline + 20:
            time.sleep(0.1)
        final = counts(db)
        assert kills >= 20
        assert total >= 2000
        assert final == {"done": total}, final  # none lost, none stuck, none failed
        # Plain tasks ran at least once each; transactional effects are there exactly once.
        assert db.fetch_val("SELECT count(DISTINCT n) FROM runs") == plain
        duplicates = db.fetch_val(
            "SELECT count(*) FROM (SELECT n FROM effects GROUP BY n HAVING count(*) > 1) d"
        )
        assert duplicates == 0
        assert db.fetch_val("SELECT count(DISTINCT n) FROM effects") == effect
        # Every flaky job failed once and was retried per its policy.
        retried = db.fetch_val(
            "SELECT count(*) FROM awaitdb_jobs WHERE task = 'flaky' AND attempts >= 2"
        )
        assert retried == flaky
        assert db.fetch_val("SELECT count(*) FROM flaky_seen") == flaky
        # The kills hit workers in the middle of jobs: attempts were lost and run again.
        rerun = db.fetch_val(
            "SELECT count(*) FROM awaitdb_jobs WHERE task <> 'flaky' AND attempts >= 2"
        )
        print(f"kills={kills} jobs={total} re-run after a kill={rerun}")
        assert rerun > 0
    finally:
        for proc in procs:
            proc.kill()
        db.close()


def test_sigterm_stops_a_worker_within_its_grace(db_url: str) -> None:
    db = awaitdb.connect_sync(db_url)
    proc = None
    try:
        queue = jobs.SyncQueue(db, "crash")
        ids = queue.enqueue_many("sleepy", [{"seconds": 60} for _ in range(3)])
        proc = spawn(db_url, lease=30, grace=1.0, pipe=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 20
        while counts(db).get("running", 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counts(db).get("running", 0) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0  # stopped: grace 1 s, then the jobs were cancelled
        for job_id in ids:  # released at once for another worker, attempt not counted
            info = queue.get(job_id)
            assert info is not None and info.status == "queued" and info.attempts == 0
    finally:
        if proc is not None:
            reap(proc)
        db.close()
