"""Driver exceptions (asyncpg and psycopg) to the awaitdb tree, keyed by SQLSTATE."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from typing import Any

from .._errors import (
    ConnectionLost,
    DataError,
    Error,
    InterfaceError,
    QueryTimeout,
    error_for_sqlstate,
)
from .._sql import SqlInfo

__all__ = [
    "command_count",
    "is_connection_error",
    "never_sent",
    "nul_in_text",
    "param_named",
    "too_deep",
    "translate",
    "unencodable",
]

_ARG = re.compile(r"query argument \$(\d+)")


def _name_params(message: str, info: SqlInfo | None) -> str:
    """Replace ``$n`` in a driver message with the user's ``:name``."""
    if info is None or not info.order:
        return message

    def name(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        if 0 <= index < len(info.order):
            return f"parameter :{info.order[index]}"
        return match.group(0)

    return _ARG.sub(name, message)


def is_connection_error(exc: BaseException) -> bool:
    """The connection is gone (or its state unknown): discard it."""
    if isinstance(exc, ConnectionLost | ConnectionError | OSError | EOFError):
        return True
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and (state.startswith("08") or state in {"57P01", "57P02"}):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return (
        "connection is closed" in text
        or "connectiondoesnotexist" in text
        or ("connection was closed" in text)
    )


def translate(exc: BaseException, info: SqlInfo | None = None) -> Error:
    """The awaitdb error for a driver exception; callers chain it with ``from``."""
    if isinstance(exc, Error):
        return exc
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return QueryTimeout(
            "the statement ran past its timeout and was cancelled", sqlstate="57014"
        )
    message = str(exc)
    if _ARG.search(message):  # a value the driver could not encode: the caller's mistake
        return InterfaceError(
            "cannot bind " + _name_params(message, info).replace("invalid input for ", "")
        )
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        diag = getattr(exc, "diag", None)  # psycopg
        if diag is not None:
            message = diag.message_primary or str(exc)
            constraint = diag.constraint_name
        else:  # asyncpg
            message = getattr(exc, "message", None) or str(exc)
            constraint = getattr(exc, "constraint_name", None)
        detail = getattr(exc, "detail", None) or (diag.message_detail if diag is not None else None)
        if detail:
            message = f"{message} ({detail})"
        cls = error_for_sqlstate(sqlstate)
        return cls(message, sqlstate=sqlstate, constraint=constraint)
    if is_connection_error(exc):
        return ConnectionLost(f"the connection was lost: {exc}")
    if never_sent(exc):
        return ConnectionLost(f"the connection broke before the statement was sent: {exc}")
    return InterfaceError(_name_params(message, info))


def never_sent(exc: BaseException) -> bool:
    """asyncpg refused to start the statement: the connection's protocol state was broken
    (for example by a FATAL the server sent while it sat idle). Nothing reached the server."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "InternalClientError":
            return True
        seen = seen.__cause__
    return False


def command_count(status: str | None) -> int:
    """Rows affected from a command tag: ``INSERT 0 5`` -> 5, ``CREATE TABLE`` -> 0."""
    if not status:
        return 0
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def param_named(info: SqlInfo | None, params: Any, test: Callable[[Any], bool]) -> str:
    """``:name`` of the first parameter whose value passes ``test``, for error messages."""
    if info is not None and isinstance(params, Mapping):
        for name in info.order:
            try:
                if test(params.get(name)):
                    return f":{name}"
            except RecursionError:
                return f":{name}"
    return "a parameter"


def _has_surrogate(value: Any) -> bool:
    return isinstance(value, str) and any("\ud800" <= ch <= "\udfff" for ch in value)


def unencodable(info: SqlInfo | None, params: Any, exc: UnicodeEncodeError) -> InterfaceError:
    """A string PostgreSQL cannot store as UTF-8 (a lone surrogate): name the parameter."""
    name = param_named(info, params, _has_surrogate)
    return InterfaceError(f"cannot bind {name}: its text cannot be encoded as UTF-8 ({exc.reason})")


def too_deep(info: SqlInfo | None, params: Any, *, decoding: bool) -> Error:
    """A JSON value nested past Python's recursion limit, going in or coming out."""
    if decoding:
        return DataError(
            "a JSON value in the result is nested too deeply for Python to decode", sqlstate="22000"
        )
    name = param_named(info, params, lambda v: isinstance(v, dict | list))
    return InterfaceError(f"cannot bind {name}: the JSON value is nested too deeply to encode")


def nul_in_text(info: SqlInfo | None, params: Any) -> DataError:
    """psycopg refuses text holding NUL before sending it: name the parameter."""
    name = param_named(info, params, lambda v: isinstance(v, str) and "\0" in v)
    return DataError(
        f"cannot store {name}: PostgreSQL text cannot contain NUL (0x00) characters",
        sqlstate="22021",
    )
