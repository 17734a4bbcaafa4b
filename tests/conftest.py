"""Fixtures shared by every test: real databases only.

``adb``/``sdb`` give an async/sync ``Database`` on each backend under test: a SQLite file in a
temporary folder, and (when ``AWAITDB_TEST_PG_URL`` is set) an empty schema in a database this
run creates on that PostgreSQL server and drops at the end (``pg_test_database.py``): nothing in
the database the URL names is ever touched. ``aconnect``/``sconnect`` open more databases on the
same target with extra options. ``dialect`` holds the few SQL snippets that differ between backends.
"""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest
from pg_test_database import PREFIX, PgDatabaseError, RedactedUrl, RunDatabase

import awaitdb
from awaitdb._config import hide_secrets, url_secrets

# A shell starts background jobs (`cmd &`) with SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler: the Ctrl-C tests would wait for an interrupt that never comes.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

PG_URL = os.environ.get("AWAITDB_TEST_PG_URL", "")
REQUIRE_PG = os.environ.get("AWAITDB_REQUIRE_PG", "") == "1"
# this run's own database on the server in PG_URL, created by the first PostgreSQL test
PG_DATABASE = RunDatabase(PG_URL) if PG_URL else None
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


def _no_pg(message: str) -> NoReturn:
    if REQUIRE_PG:
        pytest.fail(message + " (AWAITDB_REQUIRE_PG=1)")
    pytest.skip(message)


def pg_url_or_skip() -> str:
    """The URL of this run's own PostgreSQL database (created on first use on the server in
    AWAITDB_TEST_PG_URL); skip (or fail, in CI) when there is no server."""
    if PG_DATABASE is None:
        _no_pg("AWAITDB_TEST_PG_URL is not set: PostgreSQL tests NOT RUN")
    try:
        return PG_DATABASE.ensure()
    except PgDatabaseError as exc:
        _no_pg(f"{exc}: PostgreSQL tests NOT RUN")


def reset_pg_schema(url: str) -> None:
    """Give a test an empty ``public`` schema (tests run one at a time), only ever in a database
    this run created: the database AWAITDB_TEST_PG_URL names is never changed."""
    import psycopg

    dbname = urlsplit(url).path.lstrip("/")
    if not dbname.startswith(PREFIX):
        raise RuntimeError(
            f"refusing to reset the schema of database {dbname!r}: tests only reset the "
            f"databases they create ({PREFIX}...); use pg_url_or_skip() or the pg_url fixture"
        )
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
        text = hide_secrets(str(exc), url_secrets(url))
        _no_pg(f"PostgreSQL at AWAITDB_TEST_PG_URL is unreachable ({text}): tests NOT RUN")


def with_app_name(url: str, name: str = "awaitdb-test") -> str:
    return RedactedUrl(url + ("&" if "?" in url else "?") + f"application_name={name}")


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop this run's PostgreSQL database, whatever the outcome (failures, Ctrl-C)."""
    if PG_DATABASE is not None:
        PG_DATABASE.drop()


def pytest_report_header(config: pytest.Config) -> str:
    if PG_DATABASE is not None:
        return f"awaitdb: PostgreSQL tests run on {PG_DATABASE.describe()} (created, then dropped)"
    banner = "!" * 78
    return (
        f"{banner}\nawaitdb: AWAITDB_TEST_PG_URL is not set: every PostgreSQL test is SKIPPED.\n"
        f"Set it (e.g. postgresql://postgres@127.0.0.1:5432/test) to run them.\n{banner}"
    )
