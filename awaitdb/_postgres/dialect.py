"""PostgreSQL's dialect: its URL options, what it adds to the SQL scanner, its rules.

``postgresql://user:password@host:port/dbname?options`` (``postgres://`` too); libpq's own
parameters (``sslmode``, ``application_name``...) ride along to the driver. The backends are
``async_backend.py`` (asyncpg) and ``sync_backend.py`` (psycopg 3); this module imports
neither driver.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, quote, urlsplit

from .._config import UrlParts, _parse_int, _parse_list
from .._dialects import Dialect, require
from .._errors import InterfaceError
from .._sql import TextRules

if TYPE_CHECKING:
    from .._async.backend import Backend
    from .._config import Config
    from .._sync.backend import SyncBackend

__all__ = ["DIALECT", "LIBPQ_PARAMS", "SSLMODES", "PostgresDialect"]

# libpq connection parameters that may ride in a postgresql:// URL's query string.
LIBPQ_PARAMS = frozenset(
    {
        "application_name", "channel_binding", "client_encoding", "connect_timeout",
        "fallback_application_name", "gssencmode", "keepalives", "keepalives_count",
        "keepalives_idle", "keepalives_interval", "options", "passfile", "require_auth",
        "sslcert", "sslcrl", "sslkey", "sslmode", "sslpassword", "sslrootcert", "sslsni",
        "target_session_attrs", "tcp_user_timeout", "host", "hostaddr", "port", "dbname",
        "user", "password", "service",
    }
)  # fmt: skip

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _parse_ssl(value: object) -> str | ssl.SSLContext | None:
    """``True`` -> ``"require"``, ``False`` -> ``"disable"``, a mode, or an ``SSLContext``
    (kept as is: asyncpg takes it; the sync face refuses it when it opens)."""
    if value is None or isinstance(value, ssl.SSLContext):
        return value
    if isinstance(value, bool):
        return "require" if value else "disable"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in SSLMODES:
            return text
        if text in {"true", "false"}:
            return "require" if text == "true" else "disable"
    raise ValueError(
        f"expected True, False, an ssl.SSLContext or one of {', '.join(SSLMODES)}, got {value!r}"
    )


# Statements after which a pooled connection needs a reset before another caller gets it.
# DO blocks and procedures can run anything (``EXECUTE 'SET ...'``): assume they change it.
_SESSION_WORDS = frozenset(
    {"set", "reset", "listen", "unlisten", "discard", "load", "declare", "do", "call"}
)
_SESSION_TEXT = re.compile(
    r"pg_advisory_lock|pg_advisory_lock_shared|pg_try_advisory_lock|set_config\s*\(|"
    r"create\s+(?:(?:global|local)\s+)?temp(?:orary)?\b|prepare\s+\w",
    re.IGNORECASE,
)
# Plain substrings, tried before the pattern: the regex alone takes ~0.9 s on a 5 MB text.
_SESSION_HINTS = ("advisory", "set_config", "temp", "prepare")


class PostgresDialect(Dialect):
    """PostgreSQL through asyncpg (async face) and psycopg 3 (sync face)."""

    name = "postgresql"
    title = "PostgreSQL"
    package = "awaitdb._postgres"
    example_url = "postgresql://user@host/dbname"
    options: ClassVar[Mapping[str, Callable[[object], Any]]] = {
        "statement_cache_size": _parse_int,
        "ssl": _parse_ssl,
        "replicas": _parse_list,
    }
    # ``x = ANY($n)`` with the list bound as one array.
    list_style = "array"
    max_params = 32767  # the protocol's limit on bound values
    features: ClassVar[Mapping[str, str]] = {
        "jobs": "jobs:PostgresJobs",
        "events": "events:SQL",
        "wakeup": "wakeup:PostgresWaker",
        "migration": "migration:SUPPORT",
    }

    @property
    def text_rules(self) -> TextRules:
        return TextRules(
            session_words=_SESSION_WORDS,
            session_hints=_SESSION_HINTS,
            session_text=_SESSION_TEXT,
            dollar_quotes=True,
        )

    def placeholder(self, number: int, name: str) -> str:
        return f"${number}"

    def array_match(self, name: str, negated: bool) -> str:
        return f"<> ALL(:{name})" if negated else f"= ANY(:{name})"

    def split_url(self, url: str, rest: str, redacted: str, known: frozenset[str]) -> UrlParts:
        try:
            parts = urlsplit(url)
            _ = parts.port  # validates the port
        except ValueError as exc:
            hint = str(exc) if redacted == url else "percent-encode the password (@ is %40)"
            raise InterfaceError(f"bad PostgreSQL URL {redacted!r}: {hint}") from None
        query: list[tuple[str, str]] = []
        passthrough = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in known:
                query.append((key, value))
            elif key in LIBPQ_PARAMS:  # sslmode, application_name...: for the driver
                if key == "sslmode" and value not in SSLMODES:
                    raise InterfaceError(
                        f"bad sslmode {value!r} in {redacted!r}: expected one of "
                        f"{', '.join(SSLMODES)}"
                    )
                passthrough.append(f"{quote(key)}={quote(value)}")
            else:
                query.append((key, value))  # reported by parse_config as an unknown option
        driver_url = parts._replace(scheme=self.name, query="&".join(passthrough)).geturl()
        return UrlParts("", query, driver_url)

    def begin_sql(self, isolation: str | None, readonly: bool) -> str:
        from .common import begin_sql

        return begin_sql(isolation, readonly)

    async def open_async(self, config: Config) -> Backend:
        require("asyncpg", "postgresql", "PostgreSQL")
        from .async_backend import PostgresBackend

        return await PostgresBackend.open(config)

    def open_sync(self, config: Config) -> SyncBackend:
        require("psycopg", "postgresql", "PostgreSQL")
        from .sync_backend import SyncPostgresBackend

        return SyncPostgresBackend.open(config)


DIALECT = PostgresDialect()
