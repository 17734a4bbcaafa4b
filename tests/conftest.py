"""Fixtures shared by every test: real databases only.

``adb``/``sdb`` give an async/sync ``Database`` on each backend under test: a SQLite file in a
temporary folder, and (when ``AWAITDB_TEST_PG_URL`` is set) a fresh schema on a real
PostgreSQL server. ``aconnect``/``sconnect`` open more databases on the same target with
extra options. ``dialect`` holds the few SQL snippets that differ between backends.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import awaitdb

PG_URL = os.environ.get("AWAITDB_TEST_PG_URL", "")
REQUIRE_PG = os.environ.get("AWAITDB_REQUIRE_PG", "") == "1"
BACKENDS = ["sqlite", "postgresql"]


@dataclass(frozen=True)
class Dialect:
    """SQL that differs between backends, so one conformance test covers both."""

    name: str
    types: dict[str, str]  # type-table row -> column type
    overflow_sql: str  # a SELECT that raises DataError
    slow_sql: str  # a SELECT that runs for seconds (for timeouts and cancellation)


SQLITE = Dialect(
    name="sqlite",
    types={
        "int": "INTEGER",
        "float": "REAL",
        "str": "TEXT",
        "bytes": "BLOB",
        "bool": "BOOLEAN",
        "datetime_aware": "TIMESTAMPTZ",
        "datetime_naive": "TIMESTAMP",
        "date": "DATE",
        "decimal": "NUMERIC",
        "uuid": "UUID",
        "json": "JSON",
    },
    overflow_sql="SELECT abs(-9223372036854775807 - 1)",
    slow_sql=(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000000) "
        "SELECT count(*) FROM c"
    ),
)


POSTGRES = Dialect(
    name="postgresql",
    types={
        "int": "BIGINT",
        "float": "DOUBLE PRECISION",
        "str": "TEXT",
        "bytes": "BYTEA",
        "bool": "BOOLEAN",
        "datetime_aware": "TIMESTAMPTZ",
        "datetime_naive": "TIMESTAMP",
        "date": "DATE",
        "decimal": "NUMERIC",
        "uuid": "UUID",
        "json": "JSONB",
    },
    overflow_sql="SELECT 9223372036854775807::bigint + 1",
    slow_sql="SELECT pg_sleep(30)",
)


def pg_url_or_skip() -> str:
    """The PostgreSQL test server's URL; skip (or fail, in CI) when there is none."""
    if not PG_URL:
        message = "AWAITDB_TEST_PG_URL is not set: PostgreSQL tests NOT RUN"
        if REQUIRE_PG:
            pytest.fail(message + " (AWAITDB_REQUIRE_PG=1)")
        pytest.skip(message)
    return PG_URL


def reset_pg_schema(url: str) -> None:
    """Give a test an empty ``public`` schema (tests run one at a time)."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name LIKE 'awaitdb-test%'"
            )
            conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
            conn.execute("CREATE SCHEMA public")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at AWAITDB_TEST_PG_URL is unreachable ({exc}): tests NOT RUN"
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)


def with_app_name(url: str, name: str = "awaitdb-test") -> str:
    return url + ("&" if "?" in url else "?") + f"application_name={name}"


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend_name: str, tmp_path: Path) -> str:
    if backend_name == "postgresql":
        url = pg_url_or_skip()
        reset_pg_schema(url)
        return with_app_name(url)
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def pg_url() -> str:
    """A PostgreSQL URL with an empty schema, for PostgreSQL-only tests."""
    url = pg_url_or_skip()
    reset_pg_schema(url)
    return with_app_name(url)


@pytest.fixture
def dialect(backend_name: str) -> Dialect:
    return POSTGRES if backend_name == "postgresql" else SQLITE


@pytest.fixture
async def aconnect(db_url: str) -> AsyncIterator[Callable[..., Any]]:
    opened: list[awaitdb.Database] = []

    async def connect(**options: Any) -> awaitdb.Database:
        db = await awaitdb.connect(db_url, **options)
        opened.append(db)
        return db

    yield connect
    for db in opened:
        await db.close()


@pytest.fixture
def sconnect(db_url: str) -> Iterator[Callable[..., Any]]:
    opened: list[awaitdb.SyncDatabase] = []

    def connect(**options: Any) -> awaitdb.SyncDatabase:
        db = awaitdb.connect_sync(db_url, **options)
        opened.append(db)
        return db

    yield connect
    for db in opened:
        db.close()


@pytest.fixture
async def adb(aconnect: Callable[..., Any]) -> awaitdb.Database:
    db: awaitdb.Database = await aconnect()
    return db


@pytest.fixture
def sdb(sconnect: Callable[..., Any]) -> awaitdb.SyncDatabase:
    db: awaitdb.SyncDatabase = sconnect()
    return db


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file URL, for tests of SQLite-only behaviour."""
    return f"sqlite:///{tmp_path / 'sqlite-only.db'}"


def write(folder: Path, name: str, text: str) -> Path:
    """Write a (dedented) file, creating its folder: migrations and scripts in tests."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


async def cancellation_storm(
    op: Callable[[int], Any],
    kinds: int,
    *,
    seed: int,
    total: int = 2000,
    batch: int = 24,
    max_delay: float = 0.003,
) -> int:
    """Start ``batch`` random ``op(kind)`` tasks, cancel about 60 % of them at a random moment,
    and repeat until ``total`` were cancelled. Anything but a cancellation or a QueryTimeout
    escaping an operation fails the test. Returns how many were cancelled."""
    import asyncio
    import random

    import awaitdb

    rng = random.Random(seed)
    cancelled = 0
    while cancelled < total:
        tasks = [asyncio.create_task(op(rng.randrange(kinds))) for _ in range(batch)]
        await asyncio.sleep(rng.random() * max_delay)
        for task in tasks:
            if rng.random() < 0.6:
                task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled += sum(1 for t in tasks if t.cancelled())
        for result in results:
            if isinstance(result, BaseException) and not isinstance(
                result, asyncio.CancelledError | awaitdb.QueryTimeout
            ):
                raise result
    return cancelled


def pytest_report_header(config: pytest.Config) -> str:
    if PG_URL:
        return f"awaitdb: PostgreSQL tests run against {PG_URL}"
    banner = "!" * 78
    return (
        f"{banner}\nawaitdb: AWAITDB_TEST_PG_URL is not set: every PostgreSQL test is SKIPPED.\n"
        f"Set it (e.g. postgresql://postgres@127.0.0.1:5432/test) to run them.\n{banner}"
    )
