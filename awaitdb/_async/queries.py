"""The query methods shared by ``Database``, transactions and pinned connections.

Each method is a thin shape over one ``_run`` call: one hand-off or one round trip per call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .._ops import EXECUTE, EXECUTE_MANY, FETCH_ALL, FETCH_ONE, FETCH_VAL, Column, Op
from .._record import Record, convert

if TYPE_CHECKING:
    from .rows import Rows

__all__ = ["Queries"]

T = TypeVar("T")
Params = Mapping[str, Any] | None


class Queries:
    """``execute``, ``execute_many``, ``fetch_one``, ``fetch_all``, ``fetch_val``, ``iterate``."""

    __slots__ = ()

    async def _run(
        self, kind: Op, sql: str, params: Any, arg: Column, timeout: float | None
    ) -> Any:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def iterate(
        self,
        sql: str,
        params: Params = None,
        *,
        batch_size: int = 500,
        timeout: float | None = None,
    ) -> Rows:  # pragma: no cover - implemented by subclasses
        """Stream the rows of ``sql`` in batches of ``batch_size``; memory stays bounded."""
        raise NotImplementedError

    async def execute(
        self, sql: str, params: Params = None, *, timeout: float | None = None
    ) -> int:
        """Run a statement; return the number of rows it changed."""
        result: int = await self._run(EXECUTE, sql, params, None, timeout)
        return result

    async def execute_many(
        self,
        sql: str,
        params_seq: Iterable[Mapping[str, Any]],
        *,
        timeout: float | None = None,
    ) -> int:
        """Run a statement once per parameter mapping; return the total rows changed."""
        result: int = await self._run(EXECUTE_MANY, sql, list(params_seq), None, timeout)
        return result

    @overload
    async def fetch_one(
        self, sql: str, params: Params = None, *, as_: None = None, timeout: float | None = None
    ) -> Record | None: ...
    @overload
    async def fetch_one(
        self, sql: str, params: Params = None, *, as_: type[T], timeout: float | None = None
    ) -> T | None: ...
    async def fetch_one(
        self,
        sql: str,
        params: Params = None,
        *,
        as_: type[Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The first row, or ``None``; built into ``as_`` (a dataclass, NamedTuple...) if given."""
        record = await self._run(FETCH_ONE, sql, params, None, timeout)
        if as_ is None or record is None:
            return record
        return convert(record, as_)

    @overload
    async def fetch_all(
        self, sql: str, params: Params = None, *, as_: None = None, timeout: float | None = None
    ) -> list[Record]: ...
    @overload
    async def fetch_all(
        self, sql: str, params: Params = None, *, as_: type[T], timeout: float | None = None
    ) -> list[T]: ...
    async def fetch_all(
        self,
        sql: str,
        params: Params = None,
        *,
        as_: type[Any] | None = None,
        timeout: float | None = None,
    ) -> list[Any]:
        """Every row, as records or built into ``as_``."""
        records: list[Record] = await self._run(FETCH_ALL, sql, params, None, timeout)
        if as_ is None:
            return records
        return [convert(record, as_) for record in records]

    async def fetch_val(
        self,
        sql: str,
        params: Params = None,
        *,
        column: int | str = 0,
        timeout: float | None = None,
    ) -> Any:
        """One value of the first row (``column``: index or name), or ``None`` without rows."""
        return await self._run(FETCH_VAL, sql, params, column, timeout)
