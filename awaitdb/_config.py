"""Parse a database URL and its options into one validated, immutable ``Config``.

Options may come from keyword arguments or from the URL's query string; keyword arguments win.
Every value is converted to its declared type here, so backends never see strings they must parse
again, and a misspelt option fails at ``connect()`` with a message that names it.
Passwords never leave this module except inside ``Config.dsn`` for the driver.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ._errors import InterfaceError
from ._hooks import parse_hook

__all__ = ["Config", "parse_config", "redact_url"]

DEFAULT_URL = "sqlite:///awaitdb.sqlite3"


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _parse_optional_float(value: object) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none"}):
        return None
    result = float(value)  # type: ignore[arg-type]
    if result < 0:
        raise ValueError("must not be negative")
    return result


def _parse_float(value: object) -> float:
    result = _parse_optional_float(value)
    if result is None:
        raise ValueError("a number is required")
    return result


def _parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    result: int = int(value)  # type: ignore[call-overload]
    if result < 0:
        raise ValueError("must not be negative")
    return result


def _parse_optional_int(value: object) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none"}):
        return None
    return _parse_int(value)


def _choice(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def _parse_str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _parse_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part for part in value.split(",") if part)
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    raise ValueError(f"expected a list of URLs, got {value!r}")


_COMMON: dict[str, Callable[[object], Any]] = {
    "min_size": _parse_int,
    "max_size": _parse_int,
    "acquire_timeout": _parse_float,
    "max_waiting": _parse_optional_int,
    "max_idle": _parse_optional_float,
    "max_lifetime": _parse_optional_float,
    "statement_timeout": _parse_optional_float,
    "slow_query_ms": _parse_optional_float,
    "migrations": _parse_str_or_none,
    "on_connect": parse_hook,
}

_SQLITE: dict[str, Callable[[object], Any]] = {
    "readers": _parse_int,
    "synchronous": _choice("normal", "full", "off", "extra"),
    "busy_timeout": _parse_float,
    "foreign_keys": _parse_bool,
    "journal_mode": _choice("wal", "delete", "truncate", "persist", "memory", "off"),
    "inline_reads": _parse_bool,
}

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

_POSTGRES: dict[str, Callable[[object], Any]] = {
    "statement_cache_size": _parse_int,
    "ssl": _parse_str_or_none,
    "replicas": _parse_list,
}


@dataclass(frozen=True, slots=True)
class Config:
    """Everything ``connect`` was told, validated. ``repr`` never shows a password."""

    scheme: str  # "sqlite" or "postgresql"
    url: str = field(repr=False)  # the original URL, password included: for drivers only
    redacted_url: str
    path: str = ""  # sqlite: file path or ":memory:"
    options: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any) -> Any:
        """An option's value, or ``default`` when the user did not give it."""
        return self.options.get(name, default)

    @property
    def is_memory(self) -> bool:
        return self.scheme == "sqlite" and self.path == ":memory:"

    # Common options with their documented defaults.
    @property
    def acquire_timeout(self) -> float:
        return float(self.get("acquire_timeout", 30.0))

    @property
    def max_waiting(self) -> int | None:
        value = self.get("max_waiting", None)
        return None if value is None else int(value)

    @property
    def statement_timeout(self) -> float | None:
        value = self.get("statement_timeout", None)
        return None if value is None else float(value)

    @property
    def slow_query_ms(self) -> float | None:
        value = self.get("slow_query_ms", None)
        return None if value is None else float(value)


_PASSWORD = re.compile(r"(?P<pre>://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<post>@)")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    return _PASSWORD.sub(r"\g<pre>***\g<post>", url)


def parse_config(url: str | None = None, **options: Any) -> Config:
    """Validate ``url`` and ``options``; raise ``InterfaceError`` naming what is wrong."""
    if url is None:
        url = os.environ.get("AWAITDB_URL") or DEFAULT_URL
    if not isinstance(url, str):
        raise InterfaceError(f"the database URL must be a string, got {type(url).__name__}")
    redacted = redact_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise InterfaceError(
            f"bad database URL {redacted!r}: expected 'sqlite:///path.db' or "
            "'postgresql://user@host/dbname'"
        )
    scheme = scheme.lower()
    if scheme in {"postgres", "postgresql"}:
        scheme, table = "postgresql", _POSTGRES
    elif scheme == "sqlite":
        table = _SQLITE
    else:
        raise InterfaceError(
            f"unknown URL scheme {scheme!r} in {redacted!r}: use 'sqlite' or 'postgresql'"
        )

    path = ""
    query: list[tuple[str, str]]
    driver_url = url
    if scheme == "sqlite":
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
    else:
        try:
            parts = urlsplit(url)
            _ = parts.port  # validates the port
        except ValueError as exc:
            raise InterfaceError(f"bad PostgreSQL URL {redacted!r}: {exc}") from None
        known = set(_COMMON) | set(table)
        query = []
        passthrough = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in known:
                query.append((key, value))
            elif key in LIBPQ_PARAMS:  # sslmode, application_name...: for the driver
                passthrough.append(f"{quote(key)}={quote(value)}")
            else:
                query.append((key, value))  # reported below as an unknown option
        driver_url = parts._replace(scheme="postgresql", query="&".join(passthrough)).geturl()

    merged: dict[str, Any] = dict(query)
    merged.update(options)
    parsed: dict[str, Any] = {}
    for name, value in merged.items():
        parser = _COMMON.get(name) or table.get(name)
        if parser is None:
            allowed = ", ".join(sorted(set(_COMMON) | set(table)))
            raise InterfaceError(
                f"unknown option {name!r} for a {scheme} database; known options: {allowed}"
            )
        try:
            parsed[name] = parser(value)
        except (TypeError, ValueError) as exc:
            raise InterfaceError(f"bad value {value!r} for option {name!r}: {exc}") from None
    min_size, max_size = parsed.get("min_size"), parsed.get("max_size")
    if max_size is not None and max_size < 1:
        raise InterfaceError("option 'max_size' must be at least 1")
    if min_size is not None and max_size is not None and min_size > max_size:
        raise InterfaceError(
            f"option 'min_size' ({min_size}) is larger than 'max_size' ({max_size})"
        )
    return Config(scheme=scheme, url=driver_url, redacted_url=redacted, path=path, options=parsed)
