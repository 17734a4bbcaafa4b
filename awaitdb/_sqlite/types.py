"""Python values in and out of SQLite: the type table of the core contract.

Binding: ``int``, ``float``, ``str``, ``bytes``, ``bool`` and ``None`` go to sqlite3 untouched;
``datetime``, ``date``, ``time``, ``Decimal`` and ``UUID`` become ISO/text, ``dict``/``list`` JSON
text. Anything else raises ``InterfaceError`` naming the parameter. We adapt per call instead of
registering sqlite3 adapters so binding never depends on process-wide state.

Values SQLite would silently change are refused with a ``DataError`` naming the parameter, never
stored altered: a float NaN (SQLite stores NULL), ``-0.0`` (a REAL column stores ``0.0``), and a
``Decimal`` that a NUMERIC column cannot give back exactly (SQLite keeps 15 significant digits
of a non-integer, and turns ``1E+999999`` into Infinity and ``1E-999999`` into 0). An integral
decimal within 64 bits that a REAL would round is bound as an int; ``NaN``/``Infinity`` as text.

Reading: converters keyed by the column's declared type (BOOLEAN, TIMESTAMPTZ, TIMESTAMP,
DATETIME, DATE, NUMERIC, DECIMAL, UUID, JSON, JSONB). sqlite3 only offers these process-wide;
registering ours also replaces sqlite3's deprecated default ``date``/``timestamp`` converters.
A stored value the converter cannot parse comes back as the text SQLite holds.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .._errors import DataError, InterfaceError
from .._sql import Positional

__all__ = ["adapt_params", "adapt_value", "register_converters"]

_NATIVE: frozenset[type] = frozenset({int, str, bytes, bool, type(None)})  # floats: see _exact
_INT64 = (-(2**63), 2**63 - 1)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_ADAPTERS: dict[type, Callable[[Any], Any]] = {
    dt.datetime: lambda v: v.isoformat(sep=" "),
    dt.date: lambda v: v.isoformat(),
    dt.time: lambda v: v.isoformat(),
    uuid.UUID: str,
    dict: _json,
    list: _json,
    bytearray: bytes,
    memoryview: bytes,
}


def _exact_float(value: float) -> bool:
    """False for the floats SQLite cannot store as given: NaN (becomes NULL) and -0.0."""
    return not math.isnan(value) and (value != 0.0 or math.copysign(1.0, value) > 0)


def _float(name: str, value: float) -> float:
    if _exact_float(value):
        return value
    what = "NaN (SQLite stores NULL)" if math.isnan(value) else "-0.0 (a REAL column stores 0.0)"
    raise DataError(f"cannot bind parameter :{name}: {what}; refused, not stored altered",
                    sqlstate="22000")  # fmt: skip


def _decimal_param(name: str, value: decimal.Decimal) -> Any:
    if not value.is_finite():
        return str(value)  # stored and read back as the text 'NaN' / 'Infinity'
    in_int64 = _INT64[0] <= value <= _INT64[1]
    if in_int64 and value.as_tuple().exponent == 0:
        return str(value)  # a plain integer: NUMERIC stores it as an exact INTEGER
    as_float = float(value)
    if math.isfinite(as_float) and decimal.Decimal(format(as_float, ".15g")) == value:
        return str(value)
    if in_int64 and value == value.to_integral_value():
        return int(value)  # '1234567890123456789.00' would become a REAL: bind the integer
    raise DataError(
        f"cannot bind parameter :{name}: Decimal {value} does not survive SQLite's NUMERIC "
        "(15 significant digits, 64-bit integers, the float range); bind str(value) to a "
        "TEXT column to keep it exactly",
        sqlstate="22003",
    )


def adapt_value(name: str, value: Any) -> Any:
    """One value in a form sqlite3 binds; ``InterfaceError`` naming ``name`` if there is none."""
    kind = type(value)
    if kind in _NATIVE:
        return value
    if isinstance(value, float):
        return _float(name, value)
    if isinstance(value, decimal.Decimal):
        return _decimal_param(name, value)
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        for base, candidate in _ADAPTERS.items():
            if isinstance(value, base):
                adapter = candidate
                break
        else:
            if isinstance(value, int | str | bytes):
                return value
            raise InterfaceError(
                f"cannot bind parameter :{name}: values of type {kind.__name__} are not supported"
            )
    try:
        return adapter(value)
    except (TypeError, ValueError) as exc:
        raise InterfaceError(f"cannot bind parameter :{name}: {exc}") from exc
    except RecursionError:
        raise DataError(
            f"cannot bind parameter :{name}: the {kind.__name__} is nested too deeply to encode "
            "as JSON",
            sqlstate="22000",
        ) from None


def adapt_params(params: Mapping[str, Any] | None) -> Mapping[str, Any] | tuple[Any, ...]:
    """``params`` unchanged when every value is native (the common case), else a new dict."""
    if type(params) is dict:  # the common case first: one pass, no isinstance
        for value in params.values():
            if type(value) not in _NATIVE:
                break
        else:
            return params
    if params is None:
        return ()
    if isinstance(params, Positional):  # ``IN :ids``: every placeholder bound by position
        names = params.names
        return tuple([adapt_value(names[i], v) for i, v in enumerate(params)])
    for value in params.values():
        kind = type(value)
        if kind not in _NATIVE and not (kind is float and _exact_float(value)):
            return {name: adapt_value(name, v) for name, v in params.items()}
    return params


# -- converters -------------------------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


# Each converter is one call per value (sqlite3 calls it for every non-NULL value of a column
# with that declared type): the fallback to the text SQLite holds is inside, not in a wrapper.
_UNPARSED = (ValueError, TypeError, decimal.InvalidOperation)


def _boolean(raw: bytes) -> Any:
    if raw == b"1":
        return True
    if raw == b"0":
        return False
    try:
        text = raw.decode().strip().lower()
        if text in {"true", "t", "yes"}:
            return True
        if text in {"false", "f", "no"}:
            return False
        return bool(float(text))
    except _UNPARSED:
        return _text(raw)


def _timestamptz(raw: bytes) -> Any:
    try:
        value = dt.datetime.fromisoformat(raw.decode())
    except _UNPARSED:
        return _text(raw)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _timestamp(raw: bytes) -> Any:
    try:
        return dt.datetime.fromisoformat(raw.decode())
    except _UNPARSED:
        return _text(raw)


def _date(raw: bytes) -> Any:
    try:
        text = raw.decode()
        return dt.date.fromisoformat(text[:10]) if len(text) > 10 else dt.date.fromisoformat(text)
    except _UNPARSED:
        return _text(raw)


def _decimal(raw: bytes) -> Any:
    try:
        return decimal.Decimal(raw.decode())
    except _UNPARSED:
        return _text(raw)


def _uuid(raw: bytes) -> Any:
    try:
        if len(raw) == 16:
            try:
                return uuid.UUID(raw.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                return uuid.UUID(bytes=raw)
        return uuid.UUID(raw.decode())
    except _UNPARSED:
        return _text(raw)


def _jsonvalue(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except _UNPARSED:
        return _text(raw)


CONVERTERS: dict[str, Callable[[bytes], Any]] = {
    "BOOLEAN": _boolean,
    "BOOL": _boolean,
    "TIMESTAMPTZ": _timestamptz,
    "TIMESTAMP": _timestamp,
    "DATETIME": _timestamp,
    "DATE": _date,
    "NUMERIC": _decimal,
    "DECIMAL": _decimal,
    "UUID": _uuid,
    "JSON": _jsonvalue,
    "JSONB": _jsonvalue,
}

_registered = False


def register_converters() -> None:
    """Install the converters (once per process)."""
    global _registered
    if not _registered:
        for name, converter in CONVERTERS.items():
            sqlite3.register_converter(name, converter)
        _registered = True
