"""W1: the task board under 100 concurrent HTTP clients, awaitdb beside SQLAlchemy async.

Both services are FastAPI apps served by uvicorn (one process, asyncio loop, access log off),
each started fresh on an empty database for every run; the same httpx client drives both:
100 concurrent clients, a mix of 50 % reads of one task, 20 % page reads, 15 % creates and
15 % status changes (a refused change, 409, counts as a normal answer). Before measuring, each
run seeds 300 tasks and warms up with 200 requests. Runs alternate between the contenders
(order rotated each repetition); the table gives medians and ranges of requests/s, p50/p99
latency and the server process's CPU per request (from /proc, so client noise stays out).

    .venv/bin/python bench/web_bench.py                        # SQLite
    .venv/bin/python bench/web_bench.py --pg postgresql://postgres@127.0.0.1:5432/db
    .venv/bin/python bench/web_bench.py --reps 5 --requests 3000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CONCURRENCY = 100
SEEDED = 300
STATUSES = ["todo", "doing", "done", "cancelled"]


def serve(contender: str, url: str, port: int) -> None:
    """Run one contender's app under uvicorn (in the child process)."""
    import uvicorn

    if contender == "awaitdb":
        from examples.taskboard.app import create_app

        app = create_app(url, background=False)
    else:
        from taskboard_sqlalchemy import create_app as create_sqlalchemy_app

        app = create_sqlalchemy_app(url)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=120,  # a loaded machine must not close the clients' idle connections
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_pg(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


async def drive(base: str, requests: int, max_id: int, rng: random.Random) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    remaining = requests
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def one() -> None:
            nonlocal errors
            roll = rng.random()
            task_id = rng.randint(1, max_id)
            start = time.perf_counter()
            try:
                if roll < 0.50:
                    response = await client.get(f"/tasks/{task_id}")
                elif roll < 0.70:
                    response = await client.get("/tasks", params={"after": rng.randint(0, max_id)})
                elif roll < 0.85:
                    response = await client.post("/tasks", json={"title": f"task {task_id}"})
                else:
                    status = rng.choice(STATUSES)
                    response = await client.post(
                        f"/tasks/{task_id}/status", json={"status": status}
                    )
            except httpx.TransportError:
                errors += 1
                return
            latencies.append(time.perf_counter() - start)
            if response.status_code >= 400 and response.status_code != 409:
                errors += 1

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one()

        wall0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - wall0
    latencies.sort()
    return {
        "rps": requests / wall,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
        "errors": errors,
    }


def run_once(
    contender: str, backend: str, pg_url: str | None, requests: int, seed: int
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        if backend == "postgresql":
            assert pg_url
            reset_pg(pg_url)
            url = pg_url
        else:
            url = f"sqlite:///{folder}/board.db"
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", contender, "--url", url, "--port", str(port)],
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise RuntimeError(f"{contender} did not start")
            rng = random.Random(seed)

            async def seed_and_measure() -> dict[str, float]:
                async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                    for chunk in range(0, SEEDED, 20):
                        await asyncio.gather(
                            *(
                                client.post("/tasks", json={"title": f"seed {chunk + i}"})
                                for i in range(20)
                            )
                        )
                await drive(base, 200, SEEDED, rng)  # warm-up
                cpu0 = cpu_seconds(proc.pid)
                result = await drive(base, requests, SEEDED, rng)
                result["cpu_us"] = (cpu_seconds(proc.pid) - cpu0) / requests * 1e6
                return result

            return asyncio.run(seed_and_measure())
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=None, help="also run on this PostgreSQL URL")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--serve", choices=["awaitdb", "sqlalchemy"])
    parser.add_argument("--url")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.url, args.port)
        return
    backends = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.pg else [])
    contenders = ["awaitdb", "sqlalchemy"]
    print(
        f"W1 task board, {CONCURRENCY} concurrent httpx clients, {args.requests} requests a run, "
        f"{args.reps} interleaved reps; uvicorn, FastAPI; {os.cpu_count()} CPUs (shared machine)"
    )
    for backend in backends:
        results: dict[str, list[dict[str, float]]] = {c: [] for c in contenders}
        for rep in range(args.reps):
            for contender in contenders[rep % 2 :] + contenders[: rep % 2]:
                results[contender].append(
                    run_once(contender, backend, args.pg, args.requests, seed=rep)
                )
        print(f"\n## {backend}\n")
        print(
            "| contender | req/s median (range) | p50 ms | p99 ms median (range) "
            "| server CPU us/req | errors |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        for contender in contenders:
            runs = results[contender]
            rps = [r["rps"] for r in runs]
            p99 = [r["p99"] for r in runs]
            print(
                f"| {contender} | {statistics.median(rps):,.0f} ({min(rps):,.0f}-{max(rps):,.0f}) "
                f"| {statistics.median(r['p50'] for r in runs):.1f} "
                f"| {statistics.median(p99):.1f} ({min(p99):.1f}-{max(p99):.1f}) "
                f"| {statistics.median(r['cpu_us'] for r in runs):,.0f} "
                f"| {sum(int(r['errors']) for r in runs)} |"
            )
        ratios = sorted(
            a["rps"] / s["rps"]
            for a, s in zip(results["awaitdb"], results["sqlalchemy"], strict=True)
        )
        cpu = statistics.median(r["cpu_us"] for r in results["sqlalchemy"]) / statistics.median(
            r["cpu_us"] for r in results["awaitdb"]
        )
        print(
            f"\nawaitdb / SQLAlchemy req/s per rep: {', '.join(f'{x:.2f}' for x in ratios)}; "
            f"server CPU per request: SQLAlchemy uses {cpu:.2f} x awaitdb's"
        )


if __name__ == "__main__":
    main()
