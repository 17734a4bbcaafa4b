"""The dialect registry and the typed backend seam (issue 8).

- one table maps URL schemes to backend packages; each package's dialect answers for its
  database (options, transaction SQL, list binding, the jobs/events/wake-up halves);
- operation codes are an enum whose order means nothing;
- the checks every backend used to repeat are made once above the seam: a closed database,
  transaction control outside a block, and close() waiting for running work (both faces).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from typing import Any

import pytest

import awaitdb
from awaitdb._config import parse_config
from awaitdb._dialects import all_dialects, dialect_for, find_dialect, known_schemes
from awaitdb._ops import FETCH_ONE, Op
from awaitdb._sql import analyze, split_statements
from awaitdb._sqlite.worker import Control

# -- the registry ----------------------------------------------------------------------------


def test_one_dialect_per_backend_found_by_scheme() -> None:
    assert known_schemes() == ("sqlite", "postgresql")
    assert dialect_for("postgres") is dialect_for("postgresql") is dialect_for("PostgreSQL")
    assert [d.name for d in all_dialects()] == list(known_schemes())
    assert find_dialect("mysql") is None
    with pytest.raises(awaitdb.InterfaceError, match="'sqlite' or 'postgresql'"):
        dialect_for("mysql")
    assert parse_config("postgres://u@h/d").scheme == "postgresql"
    assert parse_config("sqlite:///:memory:").is_memory
    assert not parse_config("sqlite:///x.db").is_memory


def test_each_dialect_owns_its_options() -> None:
    with pytest.raises(awaitdb.InterfaceError, match="unknown option 'readers' for a postgresql"):
        parse_config("postgresql://u@h/d", readers=2)
    with pytest.raises(awaitdb.InterfaceError, match="unknown option 'ssl' for a sqlite"):
        parse_config("sqlite:///x.db", ssl=True)
    assert parse_config("sqlite:///x.db?readers=2").options["readers"] == 2
    assert parse_config("postgresql://u@h/d?ssl=true").options["ssl"] == "require"


def test_transaction_sql_comes_from_the_dialect() -> None:
    assert dialect_for("sqlite").begin_sql(None, readonly=False) == "BEGIN IMMEDIATE"
    assert dialect_for("sqlite").begin_sql("serializable", readonly=True) == "BEGIN"
    assert (
        dialect_for("postgresql").begin_sql("repeatable_read", readonly=True)
        == "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    )


def test_features_load_from_the_backend_package() -> None:
    for dialect in all_dialects():
        for feature in ("jobs", "events", "wakeup", "migration"):
            loaded = dialect.load(feature)
            assert loaded is not None, (dialect.name, feature)
            module = loaded.__module__ if feature != "migration" else type(loaded).__module__
            assert module == f"{dialect.package}.{feature}"
        assert dialect.load("no-such-feature") is None


def test_the_scanner_applies_every_dialects_text_rules() -> None:
    # Analysis is shared by every database in the process, so every dialect's rules apply.
    assert analyze("SELECT pg_advisory_lock(1)").changes_session
    assert analyze("SET search_path TO x").changes_session
    assert not analyze("SELECT 1").changes_session
    assert analyze("SELECT * FROM [weird :name]").names == frozenset()
    assert analyze("SELECT arr[:i] FROM t").names == frozenset({"i"})
    trigger = "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (1); END; SELECT 1;"
    assert len(split_statements(trigger)) == 2


# -- the typed seam --------------------------------------------------------------------------


def test_operation_codes_have_no_order() -> None:
    with pytest.raises(TypeError):
        _ = Op.EXECUTE < Op.FETCH_ONE  # type: ignore[operator]
    assert {op for op in Op if op.returns_rows} == {Op.FETCH_ONE, Op.FETCH_ALL, Op.FETCH_VAL}
    assert FETCH_ONE is Op.FETCH_ONE
    # The SQLite worker's own jobs are a separate enum, never confused with a statement's op.
    assert not set(Control) & set(Op)  # type: ignore[comparison-overlap]


# -- shared checks, written once above the seam ------------------------------------------------


async def test_close_waits_for_a_running_transaction(aconnect: Any) -> None:
    db = await aconnect()
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    entered, release = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (id) VALUES (1)")
            entered.set()
            await release.wait()

    worker = asyncio.create_task(work())
    await entered.wait()
    closing = asyncio.create_task(db.close(timeout=60))
    for _ in range(20):
        await asyncio.sleep(0)
    assert db.closed and not closing.done()  # new work refused, running work still allowed
    with pytest.raises(awaitdb.InterfaceError, match="closed"):
        await db.fetch_val("SELECT 1")
    release.set()
    await worker  # its COMMIT ran while close() waited
    await closing
    again = await aconnect()
    assert await again.fetch_val("SELECT count(*) FROM t") == 1


def test_sync_close_waits_for_another_threads_transaction(sconnect: Any) -> None:
    db = sconnect()
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    entered, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with db.transaction() as tx:
                tx.execute("INSERT INTO t (id) VALUES (1)")
                entered.set()
                release.wait()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    entered.wait()
    closer = threading.Thread(target=db.close, kwargs={"timeout": 60})
    closer.start()
    while not db.closed:
        threading.Event().wait(0.001)
    assert closer.is_alive()  # waiting for the transaction
    release.set()
    thread.join()
    closer.join()
    assert errors == []
    again = sconnect()
    assert again.fetch_val("SELECT count(*) FROM t") == 1


async def test_transaction_control_outside_a_block_is_refused_on_every_backend(
    aconnect: Any,
) -> None:
    db = await aconnect()
    for sql in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT s", "RELEASE s"):
        with pytest.raises(awaitdb.InterfaceError, match="need a pinned connection"):
            await db.execute(sql)
    assert await db.fetch_val("SELECT 1") == 1
    assert db.stats().pool_in_use == 0


def test_dialects_import_no_driver() -> None:
    # Scanning SQL and parsing any URL loads every dialect; no driver may come with them.
    code = (
        "import sys\n"
        "from awaitdb._config import parse_config\n"
        "from awaitdb._sql import analyze\n"
        "analyze('SELECT 1'); parse_config('postgresql://u@h/d'); parse_config('sqlite:///x')\n"
        "print(sorted(m for m in ('asyncpg', 'psycopg') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
