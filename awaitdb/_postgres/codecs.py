"""asyncpg codecs that keep every value exact, as psycopg (the sync face) does.

- ``date``, ``timestamp``, ``timestamptz``: asyncpg maps ``date.max``/``datetime.max`` to
  ``infinity`` (and ``min`` to ``-infinity``) by default, so year 9999 and year 1 were stored
  as infinities. These codecs use asyncpg's ``tuple`` format (days or microseconds since
  2000-01-01) and map every Python value to itself. A value Python cannot hold (``infinity``,
  a BC date) raises ``DataError``, as on the sync face.
- An aware ``datetime`` bound to a ``timestamp`` (without time zone) is converted to the
  session's ``TimeZone`` and stored as that wall-clock time: PostgreSQL's own
  ``timestamptz -> timestamp`` rule, which is what psycopg gives.
- ``json``/``jsonb``: text in and out; a document nested past Python's recursion limit raises
  ``DataError`` instead of ``RecursionError``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from .._errors import DataError

__all__ = ["install_codecs"]

_EPOCH_ORDINAL = dt.date(2000, 1, 1).toordinal()
_EPOCH = dt.datetime(2000, 1, 1)
_EPOCH_UTC = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_INFINITE_DAYS = (2**31 - 1, -(2**31))
_INFINITE_MICROS = (2**63 - 1, -(2**63))
_US = dt.timedelta(microseconds=1)


def _cannot_hold(what: str, raw: int, infinite: tuple[int, int]) -> DataError:
    if raw in infinite:
        text = "infinity" if raw == infinite[0] else "-infinity"
        return DataError(f"{what} {text} has no Python value (years 1 to 9999)", sqlstate="22008")
    return DataError(f"{what} outside Python's years 1 to 9999", sqlstate="22008")


def _encode_date(value: dt.date) -> tuple[int]:
    return (value.toordinal() - _EPOCH_ORDINAL,)


def _decode_date(data: tuple[int]) -> dt.date:
    try:
        return dt.date.fromordinal(data[0] + _EPOCH_ORDINAL)
    except (ValueError, OverflowError):
        raise _cannot_hold("the date", data[0], _INFINITE_DAYS) from None


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _decode_timestamp(data: tuple[int]) -> dt.datetime:
    try:
        return _EPOCH + data[0] * _US
    except OverflowError:
        raise _cannot_hold("the timestamp", data[0], _INFINITE_MICROS) from None


def _encode_timestamptz(value: dt.datetime) -> tuple[int]:
    if type(value) is dt.date:
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:  # naive: local time, as asyncpg's own codec
        value = value.astimezone(dt.UTC)
    return (_micros(value - _EPOCH_UTC),)  # no conversion: year 1 at +05:00 stays exact


def _decode_timestamptz(data: tuple[int]) -> dt.datetime:
    try:
        return _EPOCH_UTC + data[0] * _US
    except OverflowError:
        raise _cannot_hold("the timestamp", data[0], _INFINITE_MICROS) from None


def _json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json_loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise DataError(
            "a JSON value in the result is nested too deeply for Python to decode",
            sqlstate="22000",
        ) from None


async def install_codecs(conn: asyncpg.Connection) -> None:
    """Register awaitdb's codecs on a new connection (once, before it joins the pool)."""

    def encode_timestamp(value: dt.datetime) -> tuple[int]:
        if type(value) is dt.date:
            value = dt.datetime(value.year, value.month, value.day)
        elif value.tzinfo is not None:  # aware: to the session's wall clock, as PostgreSQL does
            zone = ZoneInfo(conn.get_settings().TimeZone)
            value = value.astimezone(zone).replace(tzinfo=None)
        return (_micros(value - _EPOCH),)

    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_json_dumps, decoder=_json_loads, schema="pg_catalog"
        )
    await conn.set_type_codec(
        "uuid", encoder=str, decoder=uuid.UUID, schema="pg_catalog", format="text"
    )
    codecs: list[tuple[str, Any, Any]] = [
        ("date", _encode_date, _decode_date),
        ("timestamp", encode_timestamp, _decode_timestamp),
        ("timestamptz", _encode_timestamptz, _decode_timestamptz),
    ]
    for name, encoder, decoder in codecs:
        await conn.set_type_codec(
            name, encoder=encoder, decoder=decoder, schema="pg_catalog", format="tuple"
        )
