"""Parse a database URL and its options into one validated, immutable ``Config``.

Options may come from keyword arguments or from the URL's query string; keyword arguments win.
Every value is converted to its declared type here, so backends never see strings they must parse
again, and a misspelt option fails at ``connect()`` with a message that names it.
Passwords never leave this module except inside ``Config.url`` for the driver: ``redacted_url``
hides them (``user:password@`` up to the last ``@``, and ``?password=``), and ``Config.hide``
scrubs them from driver messages. Timeouts are finite numbers >= 0 (``check_timeout`` applies
the same rule to every per-call ``timeout=``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

from ._dialects import DEFAULT_URL, all_dialects, find_dialect, known_schemes
from ._errors import InterfaceError
from ._hooks import parse_hook

__all__ = [
    "Config",
    "UrlParts",
    "check_timeout",
    "hide_secrets",
    "parse_config",
    "redact_url",
    "url_secrets",
]


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
    """A finite number of seconds (or milliseconds) >= 0, or None; URL values arrive as text."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none"}):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError("must be a finite number")
    if result < 0:
        raise ValueError("must not be negative")
    return result


def check_timeout(value: object, name: str = "timeout") -> float | None:
    """A per-call timeout: ``None`` or a finite number of seconds >= 0, else ``InterfaceError``.

    NaN or infinity handed to the event loop's timers corrupts them, and a string or a bool
    is always a mistake, so they are refused here, once, for every backend and face.
    """
    if value is None:
        return None
    if type(value) is float or type(value) is int:
        if 0 <= value < math.inf:  # False for NaN
            return value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
        if 0 <= result < math.inf:
            return result
    raise InterfaceError(
        f"bad {name}={value!r}: a timeout is a finite number of seconds >= 0, or None"
    )


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


class UrlParts(NamedTuple):
    """What a dialect reads from the part of a URL after ``scheme://``."""

    path: str  # a file database's path ("" for a server)
    query: list[tuple[str, str]]  # awaitdb options found in the query string, as text
    driver_url: str  # the URL handed to the driver (driver-only parameters kept)
    is_memory: bool = False  # a database that lives and dies with its connections


@dataclass(frozen=True, slots=True)
class Config:
    """Everything ``connect`` was told, validated. ``repr`` never shows a password."""

    scheme: str  # the dialect's name (its canonical URL scheme): ``db.backend``
    url: str = field(repr=False)  # the original URL, password included: for drivers only
    redacted_url: str
    path: str = ""  # a file database's path
    options: Mapping[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = field(default=(), repr=False)  # passwords, to hide in messages
    is_memory: bool = False  # the dialect says the database lives only in its connections

    def hide(self, text: str) -> str:
        """``text`` with this URL's passwords replaced by ``***`` (for error messages)."""
        return hide_secrets(text, self.secrets)

    def get(self, name: str, default: Any) -> Any:
        """An option's value, or ``default`` when the user did not give it."""
        return self.options.get(name, default)

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


_QUERY_PASSWORD = re.compile(r"(?P<pre>[?&](?:ssl)?password=)(?P<pw>[^&#]*)", re.IGNORECASE)


def _url_password(url: str) -> tuple[int, int] | None:
    """Where the password in ``scheme://user:password@host`` starts and ends, if there is one.

    A password may hold an unencoded ``@``, ``/`` or ``?``: it runs from the first ``:`` of the
    user part to the LAST ``@``. Erring that way hides too much, never too little.
    """
    start = url.find("://")
    if start < 0:
        return None
    start += 3
    at = url.rfind("@", start)
    if at < 0:
        return None
    colon = url.find(":", start, at)
    if colon < 0 or "/" in url[start:colon] or "@" in url[start:colon]:
        return None  # no password; the ":" is a port's, the "@" in a path or query
    return colon + 1, at


def redact_url(url: str) -> str:
    """The URL with any password (``user:password@``, ``?password=``) replaced by ``***``."""
    span = _url_password(url)
    if span is not None:
        url = url[: span[0]] + "***" + url[span[1] :]
    return _QUERY_PASSWORD.sub(r"\g<pre>***", url)


def url_secrets(url: str) -> tuple[str, ...]:
    """Every password in ``url``, as written and percent-decoded, longest first."""
    found: set[str] = set()
    span = _url_password(url)
    if span is not None:
        found.add(url[span[0] : span[1]])
    found.update(m.group("pw") for m in _QUERY_PASSWORD.finditer(url))
    found |= {unquote(secret) for secret in found}
    found |= {quote(secret, safe="") for secret in found}
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def hide_secrets(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` (a driver's error message) with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def parse_config(url: str | None = None, **options: Any) -> Config:
    """Validate ``url`` and ``options``; raise ``InterfaceError`` naming what is wrong."""
    if url is None:
        url = os.environ.get("AWAITDB_URL") or DEFAULT_URL
    if not isinstance(url, str):
        raise InterfaceError(f"the database URL must be a string, got {type(url).__name__}")
    redacted = redact_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        examples = " or ".join(repr(d.example_url) for d in all_dialects())
        raise InterfaceError(f"bad database URL {redacted!r}: expected {examples}")
    dialect = find_dialect(scheme.lower())
    if dialect is None:
        names = " or ".join(repr(name) for name in known_schemes())
        raise InterfaceError(f"unknown URL scheme {scheme!r} in {redacted!r}: use {names}")
    scheme, table = dialect.name, dialect.options
    parts = dialect.split_url(url, rest, redacted, frozenset(_COMMON) | frozenset(table))

    merged: dict[str, Any] = dict(parts.query)
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
    return Config(
        scheme=scheme,
        url=parts.driver_url,
        redacted_url=redacted,
        path=parts.path,
        options=parsed,
        secrets=url_secrets(url),
        is_memory=parts.is_memory,
    )
