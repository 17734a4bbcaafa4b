"""SQLite's dialect: its URL form and options, what it adds to the SQL scanner, its rules.

``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` or ``sqlite:///:memory:``; the
backends are ``async_backend.py`` (worker threads) and ``sync_backend.py`` (direct calls).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, unquote

from .._config import UrlParts, _choice, _parse_bool, _parse_float, _parse_int
from .._dialects import Dialect
from .._errors import InterfaceError
from .._sql import TextRules

if TYPE_CHECKING:
    from .._async.backend import Backend
    from .._config import Config
    from .._sync.backend import SyncBackend

__all__ = ["DIALECT", "SQLiteDialect"]

MEMORY = ":memory:"

_TRIGGER = re.compile(r"^\s*create\s+(?:temp\s+|temporary\s+)?trigger\b", re.IGNORECASE)


def _unfinished_trigger(text: str) -> bool:
    """A ``CREATE TRIGGER`` whose ``BEGIN ... END`` body is not closed yet (it holds ``;``)."""
    import sqlite3

    from .._sql import _strip_leading_comments

    return bool(_TRIGGER.match(_strip_leading_comments(text))) and not (
        sqlite3.complete_statement(text)
    )


_variable_limit: list[int] = []


class SQLiteDialect(Dialect):
    """SQLite through the standard library's ``sqlite3``."""

    name = "sqlite"
    title = "SQLite"
    package = "awaitdb._sqlite"
    example_url = "sqlite:///path.db"
    options: ClassVar[Mapping[str, Callable[[object], Any]]] = {
        "readers": _parse_int,
        "synchronous": _choice("normal", "full", "off", "extra"),
        "busy_timeout": _parse_float,
        "foreign_keys": _parse_bool,
        "journal_mode": _choice("wal", "delete", "truncate", "persist", "memory", "off"),
        "inline_reads": _parse_bool,
        "inline_transactions": _parse_bool,
    }
    # Named placeholders resolve in quadratic time: lists become one ``?`` per value.
    list_style = "expand"
    features: ClassVar[Mapping[str, str]] = {
        "jobs": "jobs:SQLiteJobs",
        "events": "events:SQL",
        "wakeup": "wakeup:SQLiteWaker",
        "migration": "migration:SUPPORT",
    }

    @property
    def text_rules(self) -> TextRules:
        # ``[identifier]`` quoting, and trigger bodies whose semicolons do not end the statement.
        return TextRules(bracket_identifiers=True, unfinished=_unfinished_trigger)

    def split_url(self, url: str, rest: str, redacted: str, known: frozenset[str]) -> UrlParts:
        location, _, query_string = rest.partition("?")
        if not location.startswith("/"):
            raise InterfaceError(
                f"bad SQLite URL {redacted!r}: write 'sqlite:///relative.db', "
                "'sqlite:////absolute/path.db' or 'sqlite:///:memory:'"
            )
        path = unquote(location[1:])
        if not path:
            raise InterfaceError(f"bad SQLite URL {redacted!r}: no file name")
        query = parse_qsl(query_string, keep_blank_values=True)
        return UrlParts(path, query, url, is_memory=path == MEMORY)

    def bind_limit(self) -> int:
        """How many ``?`` one statement may bind in this process's SQLite (250,000 or 32,766)."""
        if not _variable_limit:
            import sqlite3

            conn = sqlite3.connect(MEMORY)
            try:
                _variable_limit.append(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
            finally:
                conn.close()
        return _variable_limit[0]

    def begin_sql(self, isolation: str | None, readonly: bool) -> str:
        # SQLite transactions are always serializable; every isolation level is accepted.
        return "BEGIN" if readonly else "BEGIN IMMEDIATE"

    async def open_async(self, config: Config) -> Backend:
        from .async_backend import SQLiteBackend

        return await SQLiteBackend.open(config)

    def open_sync(self, config: Config) -> SyncBackend:
        from .sync_backend import SyncSQLiteBackend

        return SyncSQLiteBackend.open(config)


DIALECT = SQLiteDialect()
