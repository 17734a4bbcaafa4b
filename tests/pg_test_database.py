"""The PostgreSQL database a test run owns: created by its first PostgreSQL test, dropped at end.

The database that ``AWAITDB_TEST_PG_URL`` names is only used to reach the server: nothing in it
is created, changed or dropped. Every PostgreSQL test, schema reset and subprocess works in::

    AWAITDB_TEST_PG_URL ──(CREATE DATABASE, first PG test)──► awaitdb_test_<pid>_<hex>
        (server only)                                            │ reset per test, subprocesses
                                                                 ▼
                                          DROP DATABASE ... (FORCE) at session end, failed or not

A run killed with SIGKILL leaves its database behind: harmless, and found by its prefix
(``SELECT datname FROM pg_database WHERE datname LIKE 'awaitdb_test_%'``).
"""

from __future__ import annotations

import os
import secrets
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit

from awaitdb._config import hide_secrets, redact_url, url_secrets

PREFIX = "awaitdb_test_"

__all__ = ["PREFIX", "PgDatabaseError", "RedactedUrl", "RunDatabase", "database_url"]


class RedactedUrl(str):
    """A URL whose ``repr`` hides its password: pytest prints a failing test's arguments."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact_url(str(self)))


class PgDatabaseError(Exception):
    """The server could not be reached, or refused to create the run's database."""


def database_url(url: str, name: str) -> str:
    """``url`` pointed at database ``name`` (the path, and any ``dbname=`` in the query)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dbname"]
    return parts._replace(path="/" + name, query=urlencode(query)).geturl()


def _server_url(url: str) -> str:
    """The URL for an admin connection: awaitdb's own options (``max_size=``...) left out."""
    from awaitdb._config import parse_config

    return parse_config(url).url


class RunDatabase:
    """One run's database on the server in ``server_url``; ``url`` is what tests connect to."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        self.url = RedactedUrl(database_url(server_url, self.name))
        self.created = False

    def describe(self) -> str:
        """The server (password hidden) and the run's database, for the test header."""
        return f"{redact_url(self.server_url)} in database {self.name}"

    def ensure(self) -> str:
        """Create the database (once) and return its URL; PgDatabaseError if that fails.

        A failure is not remembered: a server that was busy ("too many clients") for one test
        may serve the next. A database that already exists is ours (the name is random)."""
        if self.created:
            return self.url
        import psycopg
        from psycopg import sql

        create = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(self.name))
        try:
            with psycopg.connect(_server_url(self.server_url), autocommit=True) as conn:
                conn.execute(create)
        except psycopg.errors.DuplicateDatabase:
            pass  # created by an earlier attempt whose answer was lost
        except psycopg.Error as exc:
            text = hide_secrets(str(exc).strip(), url_secrets(self.server_url))
            denied = isinstance(exc, psycopg.errors.InsufficientPrivilege)
            raise PgDatabaseError(
                f"cannot create the test database {self.name} on the server at "
                f"{redact_url(self.server_url)} ({type(exc).__name__}: {text})"
                + ("; the role needs CREATEDB" if denied else "")
            ) from None
        self.created = True
        return self.url

    def drop(self) -> None:
        """Drop the database (ending any connection still in it); a no-op if never created."""
        if not self.created:
            return
        import psycopg
        from psycopg import sql

        name = sql.Identifier(self.name)
        try:
            with psycopg.connect(_server_url(self.server_url), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        except psycopg.Error as exc:
            text = hide_secrets(str(exc).strip(), url_secrets(self.server_url))
            print(f"awaitdb tests: could not drop {self.name}: {text}", file=sys.stderr)
            return
        self.created = False
