"""The sync face's row path side by side with raw sqlite3 (target S5, issue 9).

    .venv/bin/python bench/syncface_bench.py              # 7 repetitions (~40 s)
    .venv/bin/python bench/syncface_bench.py --reps 3 --ops 5000

Rows are (id INTEGER, name TEXT, value REAL) for S5 itself, and a typed table (TIMESTAMP,
NUMERIC, BOOLEAN, JSON) whose anchor is raw sqlite3 with ``PARSE_DECLTYPES`` and the same
converters, so the typed rows compare like with like. Contenders run interleaved (order rotated
each repetition); the table gives medians and ranges of ops/s, the ratio to the anchor of the
same repetition, and CPU µs per operation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import awaitdb
from awaitdb._sqlite.types import register_converters

ROWS = 20_000
POINT = "SELECT id, name, value FROM items WHERE id = :id"
POINT_QMARK = "SELECT id, name, value FROM items WHERE id = ?"
TYPED = "SELECT id, at, price, done, doc FROM typed WHERE id = :id"
TYPED_QMARK = "SELECT id, at, price, done, doc FROM typed WHERE id = ?"
PAGE = "SELECT id, name, value FROM items WHERE id BETWEEN :lo AND :lo + 99"
PAGE_QMARK = "SELECT id, name, value FROM items WHERE id BETWEEN ? AND ? + 99"


def setup(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, value REAL)")
    conn.execute(
        "CREATE TABLE typed (id INTEGER PRIMARY KEY, at TIMESTAMP, price NUMERIC, "
        "done BOOLEAN, doc JSON)"
    )
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO items VALUES (?, ?, ?)",
        ((i, f"item-{i}", i * 0.5) for i in range(1, ROWS + 1)),
    )
    base = dt.datetime(2026, 1, 1, 12, 0, 0)
    conn.executemany(
        "INSERT INTO typed VALUES (?, ?, ?, ?, ?)",
        (
            (i, (base + dt.timedelta(seconds=i)).isoformat(sep=" "), f"{i}.25", i % 2,
             f'{{"k":{i}}}')
            for i in range(1, ROWS + 1)
        ),
    )  # fmt: skip
    conn.execute("COMMIT")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--ops", type=int, default=20_000)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="awaitdb-syncface-")
    path = os.path.join(folder, "bench.db")
    setup(path)
    rng = random.Random(7)
    keys = [rng.randrange(1, ROWS - 100) for _ in range(args.ops)]
    pages = keys[: max(1, args.ops // 50)]
    register_converters()
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    typed_raw = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, detect_types=sqlite3.PARSE_DECLTYPES
    )
    db = awaitdb.connect_sync(f"sqlite:///{path}")

    def raw_point() -> None:
        for key in keys:
            raw.execute(POINT_QMARK, (key,)).fetchone()

    def face_point() -> None:
        for key in keys:
            db.fetch_one(POINT, {"id": key})

    def raw_typed() -> None:
        for key in keys:
            typed_raw.execute(TYPED_QMARK, (key,)).fetchone()

    def face_typed() -> None:
        for key in keys:
            db.fetch_one(TYPED, {"id": key})

    def raw_page() -> None:
        for lo in pages:
            raw.execute(PAGE_QMARK, (lo, lo)).fetchall()

    def face_page() -> None:
        for lo in pages:
            db.fetch_all(PAGE, {"lo": lo})

    # name -> (workload, anchor, ops)
    contenders: dict[str, tuple[Callable[[], None], str, int]] = {
        "point: sync sqlite3": (raw_point, "", len(keys)),
        "point: awaitdb sync face (S5)": (face_point, "point: sync sqlite3", len(keys)),
        "typed point: sqlite3 PARSE_DECLTYPES": (raw_typed, "", len(keys)),
        "typed point: awaitdb sync face": (
            face_typed, "typed point: sqlite3 PARSE_DECLTYPES", len(keys)),
        "100-row page: sync sqlite3": (raw_page, "", len(pages)),
        "100-row page: awaitdb sync face": (face_page, "100-row page: sync sqlite3", len(pages)),
    }  # fmt: skip
    names = list(contenders)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for name in names:
        contenders[name][0]()  # warm-up
    for rep in range(args.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            fn, _, count = contenders[name]
            cpu0, wall0 = time.process_time(), time.perf_counter()
            fn()
            wall = time.perf_counter() - wall0
            runs[name].append((count / wall, (time.process_time() - cpu0) / count * 1e6))
    print(
        f"# SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, "
        f"{args.ops:,} ops x {args.reps} reps (medians, [min-max] of per-rep ratios)\n"
    )
    print("| contender | ops/s | x anchor | ratio range | CPU us/op |")
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        _, anchor, _ = contenders[name]
        ops = statistics.median(r[0] for r in runs[name])
        cpu = statistics.median(r[1] for r in runs[name])
        ratio = spread = ""
        if anchor:
            ratios = [a[0] / b[0] for a, b in zip(runs[name], runs[anchor], strict=True)]
            ratio = f"{statistics.median(ratios):.2f}"
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(f"| {name} | {ops:,.0f} | {ratio or '1.00'} | {spread} | {cpu:.2f} |")
    db.close()
    raw.close()
    typed_raw.close()


if __name__ == "__main__":
    main()
