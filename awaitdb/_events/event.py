"""``Event`` and the name patterns listeners and subscribers use.

A name is dotted words (``order.paid``). A pattern is a name, a dotted prefix followed by
``.*`` (``order.*`` matches ``order.paid`` and ``order.paid.late``, not ``order``), or ``*``
(everything).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

from .._errors import InterfaceError

__all__ = [
    "Event",
    "check_count",
    "check_group",
    "check_name",
    "check_pattern",
    "check_seconds",
    "encode_data",
    "matches",
    "pattern_prefix",
]

_NAME = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*\Z")


class Event:
    """One event: ``name``, ``data``, ``id`` (stream position or per-process counter), ``at``."""

    __slots__ = ("_ts", "data", "id", "name", "publisher")

    def __init__(
        self, name: str, data: Any, id: int, ts: float, publisher: str | None = None
    ) -> None:
        self.name = name
        self.data = data
        self.id = id
        self._ts = ts
        self.publisher = publisher

    @property
    def at(self) -> dt.datetime:
        """When the event was emitted or published (UTC)."""
        return dt.datetime.fromtimestamp(self._ts, dt.UTC)

    def __repr__(self) -> str:
        return f"<Event {self.id} {self.name} {self.data!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.id, self.name, self.data) == (other.id, other.name, other.data)

    __hash__ = None  # type: ignore[assignment]


def check_name(name: str) -> str:
    """``name`` if it is a valid event name; ``InterfaceError`` naming the problem otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InterfaceError(
            f"invalid event name {name!r}: use dotted words of letters, digits, '_' or '-' "
            "(e.g. 'order.paid'); wildcards belong in listener patterns"
        )
    return name


def check_seconds(value: Any, what: str) -> float:
    """``value`` if it is a finite number of seconds above 0; ``InterfaceError`` otherwise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InterfaceError(f"{what} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def check_count(value: Any, what: str) -> int:
    """``value`` if it is an integer of at least 1; ``InterfaceError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InterfaceError(f"{what} must be an integer of at least 1, got {value!r}")
    return value


def check_group(group: Any) -> str:
    """``group`` if it is a usable group name (a non-empty string)."""
    if not isinstance(group, str) or not group:
        raise InterfaceError(f"a group name must be a non-empty string, got {group!r}")
    return group


# A JSON ``\u0000`` escape (an odd run of backslashes before it): PostgreSQL's jsonb refuses it.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode_data(name: str, data: Any) -> str:
    """``data`` as JSON text that both backends store alike; ``InterfaceError`` otherwise.

    NaN and infinities are not JSON, and PostgreSQL cannot store the character U+0000.
    """
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InterfaceError(f"event data for {name!r} is not JSON-serialisable: {exc}") from exc
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise InterfaceError(
            f"event data for {name!r} is not storable as JSON: it contains the character U+0000"
        )
    return text


def check_pattern(pattern: str) -> str:
    """``pattern`` if valid: a name, ``prefix.*`` or ``*``."""
    if pattern == "*":
        return pattern
    if isinstance(pattern, str) and pattern.endswith(".*") and _NAME.match(pattern[:-2]):
        return pattern
    if isinstance(pattern, str) and _NAME.match(pattern):
        return pattern
    raise InterfaceError(
        f"invalid event pattern {pattern!r}: use a name ('order.paid'), a dotted prefix "
        "wildcard ('order.*') or '*'"
    )


def pattern_prefix(pattern: str) -> tuple[str, bool]:
    """``(text, is_prefix)``: the text a name must equal, or start with when ``is_prefix``."""
    if pattern == "*":
        return "", True
    if pattern.endswith(".*"):
        return pattern[:-1], True
    return pattern, False


def matches(pattern: str, name: str) -> bool:
    """Whether ``name`` matches ``pattern``."""
    text, prefix = pattern_prefix(pattern)
    return name.startswith(text) if prefix else name == text
