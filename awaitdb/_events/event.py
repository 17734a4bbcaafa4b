"""``Event`` and the name patterns listeners and subscribers use.

A name is dotted words (``order.paid``). A pattern is a name, a dotted prefix followed by
``.*`` (``order.*`` matches ``order.paid`` and ``order.paid.late``, not ``order``), or ``*``
(everything).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .._errors import InterfaceError

__all__ = ["Event", "check_name", "check_pattern", "matches", "pattern_prefix"]

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
