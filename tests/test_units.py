"""I/O-free pieces: the SQL scanner, URL and option parsing, the export list, the generator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import awaitdb
from awaitdb._config import parse_config, redact_url
from awaitdb._dialects import Dialect, dialect_for
from awaitdb._sql import DML, OTHER, READ, TXCONTROL, analyze

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("sql", "names", "numbered"),
    [
        ("SELECT :a, :b, :a", ("a", "b"), "SELECT $1, $2, $1"),
        ("SELECT x::text FROM t WHERE y = :y", ("y",), "SELECT x::text FROM t WHERE y = $1"),
        ("SELECT ':no', \"a:b\", `c:d` FROM t WHERE z = :z", ("z",), None),
        ("SELECT 1 -- :no\n, :yes", ("yes",), "SELECT 1 -- :no\n, $1"),
        ("SELECT /* :no */ :yes", ("yes",), "SELECT /* :no */ $1"),
        ("SELECT $$ :no $$, $tag$ :no $tag$, :yes", ("yes",), None),
        ("SELECT E'it\\'s :no', :yes", ("yes",), None),
        ("SELECT 'it''s :no', :yes", ("yes",), None),
        ("SELECT arr[1:2] FROM t", (), "SELECT arr[1:2] FROM t"),
        ("SELECT * FROM [my:table] WHERE a = :a", ("a",), None),
        ("SELECT :_under_9", ("_under_9",), "SELECT $1"),
    ],
)
def test_scanner_finds_only_real_placeholders(
    sql: str, names: tuple[str, ...], numbered: str | None
) -> None:
    info = analyze(sql)
    assert info.order == names
    if numbered is not None:
        assert info.text_for(dialect_for("postgresql")) == numbered


class _FormatDialect(Dialect):
    """A made-up database whose driver takes ``%s`` and binds lists as ``= ANY(%s)``."""

    name = "formatdb"
    title = "FormatDB"
    list_style = "array"

    def placeholder(self, number: int, name: str) -> str:
        return "%s"

    def array_match(self, name: str, negated: bool) -> str:
        return f"!= ALL(:{name})" if negated else f"= ANY(:{name})"


def test_a_dialect_renders_placeholders_in_its_own_style() -> None:
    # The dialect owns placeholders (issue 8): a new paramstyle needs no edit of ``_sql.py``,
    # and the shared analysis renders per dialect without one leaking into another.
    info = analyze("SELECT :a, :b, :a FROM t WHERE c IN :cs;")
    postgres, sqlite, other = dialect_for("postgresql"), dialect_for("sqlite"), _FormatDialect()
    assert info.text_for(other) == "SELECT %s, %s, %s FROM t WHERE c = ANY(%s)"
    assert info.text_for(postgres) == "SELECT $1, $2, $1 FROM t WHERE c = ANY($3)"
    assert info.text_for(sqlite) == "SELECT :a, :b, :a FROM t WHERE c IN :cs"
    assert analyze("SELECT :a, :b, :a FROM t WHERE c IN :cs;") is info
    fresh = analyze("SELECT :x WHERE y NOT IN :ys")
    assert fresh.text_for(other) == "SELECT %s WHERE y != ALL(%s)"
    assert fresh.text_for(postgres) == "SELECT $1 WHERE y <> ALL($2)"


def test_splitter_and_scanner_agree_on_escaped_strings() -> None:
    from awaitdb._sql import split_statements

    script = "SELECT E'it\\'s; fine' AS a, :p; SELECT 2;"
    assert [sql for _line, sql in split_statements(script)] == [
        "SELECT E'it\\'s; fine' AS a, :p;",
        "SELECT 2;",
    ]
    assert analyze("SELECT E'it\\'s :no', :yes").order == ("yes",)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("  select 1", READ),
        ("(SELECT 1)", READ),
        ("-- comment\nVALUES (1)", READ),
        ("WITH x AS (SELECT 1) SELECT * FROM x", READ),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x RETURNING id", DML),
        ("WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x", DML),
        ("with recursive c(n) as (select 1) delete from t where id in (select n from c)", DML),
        ("WITH x AS (SELECT 1 AS a) UPDATE t SET a = (SELECT a FROM x)", DML),
        ("WITH x(a) AS (SELECT 1) REPLACE INTO t SELECT a FROM x", DML),
        ("WITH x AS (SELECT replace(a, 'b', 'c') AS r FROM t) SELECT r FROM x", READ),
        ("WITH x AS (SELECT 'insert' AS \"update\", t.delete, up_update FROM t) SELECT 1", READ),
        ("WITH x AS (SELECT 1 /* delete */) SELECT * FROM x -- update", READ),
        ("WITH x AS (SELECT :insert AS a, `delete`, [update] FROM t) SELECT 1", READ),
        ("WITH x AS (SELECT $$ delete $$ AS a) SELECT 1", READ),
        ("insert into t values (1)", DML),
        ("UPDATE t SET a = 1", DML),
        ("DELETE FROM t", DML),
        ("REPLACE INTO t VALUES (1)", DML),
        ("CREATE TABLE t (a)", OTHER),
        ("PRAGMA user_version", OTHER),
        ("BEGIN IMMEDIATE", TXCONTROL),
        ("/* x */ commit", TXCONTROL),
        ("SAVEPOINT a", TXCONTROL),
    ],
)
def test_statement_kinds(sql: str, kind: int) -> None:
    assert analyze(sql).kind == kind


def test_config_parses_url_options_and_keyword_options() -> None:
    config = parse_config("sqlite:///app.db?max_size=20&synchronous=FULL&readers=2", readers=3)
    assert config.scheme == "sqlite" and config.path == "app.db"
    assert config.options == {"max_size": 20, "synchronous": "full", "readers": 3}
    assert parse_config("sqlite:////abs/path.db").path == "/abs/path.db"
    assert parse_config("sqlite:///:memory:").is_memory
    pg = parse_config("postgres://u:secret@h:5432/db?sslmode=require&max_size=5")
    assert pg.scheme == "postgresql" and pg.options == {"max_size": 5}
    assert "sslmode=require" in pg.url and "max_size" not in pg.url


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("mysql://x/y", {}, "unknown URL scheme 'mysql'"),
        ("nonsense", {}, "bad database URL"),
        ("sqlite://relative.db", {}, "bad SQLite URL"),
        ("sqlite:///", {}, "no file name"),
        ("sqlite:///a.db?colour=blue", {}, "unknown option 'colour'"),
        ("sqlite:///a.db", {"max_size": "many"}, "bad value 'many' for option 'max_size'"),
        ("sqlite:///a.db", {"synchronous": "sometimes"}, "option 'synchronous'"),
        ("sqlite:///a.db", {"min_size": 5, "max_size": 2}, "larger than 'max_size'"),
        ("sqlite:///a.db", {"readers": -1}, "must not be negative"),
        ("postgresql://u:pw@h:notaport/db", {}, "bad PostgreSQL URL"),
    ],
)
def test_bad_input_is_named(url: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(awaitdb.InterfaceError, match=message):
        awaitdb.connect(url, **options)
    with pytest.raises(awaitdb.InterfaceError, match=message):
        awaitdb.connect_sync(url, **options)


def test_passwords_never_appear() -> None:
    url = "postgresql://alice:s3cr3t@db.example:5432/app?bogus=1"
    assert redact_url(url) == "postgresql://alice:***@db.example:5432/app?bogus=1"
    with pytest.raises(awaitdb.InterfaceError) as info:
        awaitdb.connect(url)
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(awaitdb.InterfaceError) as info2:
        awaitdb.connect("postgresql://alice:s3cr3t@h:bad/app")
    assert "s3cr3t" not in str(info2.value)
    config = parse_config("postgresql://alice:s3cr3t@h/app")
    assert "s3cr3t" not in repr(config) and "***" in config.redacted_url


def test_public_exports_are_pinned() -> None:
    assert sorted(awaitdb.__all__) == sorted(
        [
            "CannotConnect", "CheckViolation", "Connecting", "ConnectionLost", "DataError",
            "Database", "DatabaseBusy", "DatabaseError", "DeadlockDetected", "Error",
            "ForeignKeyViolation", "IntegrityError", "InterfaceError", "MigrationError",
            "LoopMonitor", "LoopStats", "NotNullViolation", "OffloadStats", "Offloader",
            "Overloaded",
            "OperationalError", "PinnedConnection", "PoolOverloaded", "PoolTimeout",
            "ProgrammingError", "QueryTimeout", "Record", "Rows", "SerializationFailure",
            "StatsSnapshot", "SyncDatabase", "SyncPinnedConnection", "SyncRows",
            "SyncTransaction", "SyncView", "Transaction", "TransactionAborted", "TransactionState",
            "TransientError", "UniqueViolation", "__version__", "connect", "connect_sync",
            "current_transaction", "off_loop", "offload",
        ]
    )  # fmt: skip
    for name in awaitdb.__all__:
        assert hasattr(awaitdb, name), name
    assert (ROOT / "awaitdb" / "py.typed").exists()


def test_generated_sync_face_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "async_to_sync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 2:  # not the pinned Python/ruff: CI's own --check step fails there
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    for path in (ROOT / "awaitdb" / "_sync").glob("*.py"):
        assert "DO NOT EDIT" in path.read_text().splitlines()[0]


def test_list_parameters_are_found_only_where_sql_counts() -> None:
    from awaitdb._sql import bind_lists

    info = analyze("SELECT * FROM t WHERE a IN :ids AND b NOT IN :bs AND c = :c")
    assert info.lists is not None and info.lists.names == ("ids", "bs")
    assert info.text_for(dialect_for("postgresql")) == (
        "SELECT * FROM t WHERE a = ANY($1) AND b <> ALL($2) AND c = $3"
    )
    params = {"ids": (1, 2, 3), "bs": [], "c": 7}
    expanded, bound = bind_lists(info, params, "sqlite")
    # every placeholder becomes a positional ``?``: SQLite resolves named ones in quadratic time
    assert expanded.sql == "SELECT * FROM t WHERE a IN (?, ?, ?, ?) AND b NOT IN () AND c = ?"
    assert bound == (1, 2, 3, 3, 7) and bound.names == ("ids",) * 4 + ("c",)
    same, arrays = bind_lists(info, params, "postgresql")
    assert same is info and arrays["ids"] == [1, 2, 3] and arrays["bs"] == []
    for text in (
        "SELECT 'x IN :a' AS t",
        "SELECT 1 -- IN :a\n",
        'SELECT 1 AS "IN :a"',
        "SELECT * FROM t JOIN :a",
        "SELECT * FROM t WHERE x = :in",
    ):
        assert analyze(text).lists is None, text
    paren = analyze("SELECT * FROM t WHERE x IN (:a, f(:b)) AND y IN (SELECT :c)").lists
    assert paren is not None and paren.in_paren == ("a", "b") and paren.names == ()


def test_list_padding_never_passes_the_variable_limit() -> None:
    # review of issue 13: 131,073 values were padded to 262,144, past SQLite's limit of 250,000
    from awaitdb._sql import _bucket

    assert [_bucket(n, 10**6) for n in (0, 1, 3, 5, 1000, 1025, 131_073)] == [
        0,
        1,
        4,
        8,
        1024,
        1025,
        131_073,
    ]
    assert _bucket(700, 800) == 800 and _bucket(700, 700) == 700
