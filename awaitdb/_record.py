"""``Record``: one result row, a tuple of values that is also a read-only mapping by column name.

Each distinct set of column names gets a small subclass of ``Record`` holding the name-to-index
map, so building a record is one ``tuple.__new__`` call: no per-row dict, no per-row name list.

For libraries that must pick one face, a record is an object keyed by column name: it is a
virtual ``collections.abc.Mapping`` (pydantic builds models from it) and pydantic, hence
FastAPI, serialises it as ``{"id": 1, "name": "ada"}`` (``__get_pydantic_core_schema__``,
looked up by pydantic only when a ``Record`` appears in a type: nothing is paid per row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, SupportsIndex, TypeVar, overload

from ._errors import InterfaceError

__all__ = ["Record", "as_dict", "cached_record_class", "column_index", "convert", "record_class"]

T = TypeVar("T")


class _PydanticSerializer:
    """``Record.__pydantic_serializer__``: how pydantic serialises a record it meets where the
    declared type is ``Any`` (a ``dict[str, Any]`` envelope, say). Built once, on pydantic's
    first look; without pydantic the attribute is simply absent."""

    serializer: Any = None

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if _PydanticSerializer.serializer is None:
            try:
                from pydantic_core import SchemaSerializer
            except ImportError:  # pragma: no cover - only pydantic asks, and it has pydantic_core
                raise AttributeError("__pydantic_serializer__") from None
            _PydanticSerializer.serializer = SchemaSerializer(_pydantic_schema())
        return _PydanticSerializer.serializer


class Record(tuple[Any, ...]):
    """A result row: ``rec["name"]``, ``rec[0]``, ``keys()``, ``items()``, ``dict(rec)``...

    Iteration yields values and ``==`` compares values (like a tuple); ``in`` tests column names
    and unknown names raise ``KeyError`` (like a mapping, as in asyncpg).
    """

    __slots__ = ()
    _keys: ClassVar[tuple[str, ...]] = ()
    _index: ClassVar[dict[str, int]] = {}
    __pydantic_serializer__: ClassVar[Any] = _PydanticSerializer()

    @overload
    def __getitem__(self, key: str | SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, key: slice) -> tuple[Any, ...]: ...
    def __getitem__(self, key: Any) -> Any:
        if type(key) is str:
            try:
                key = self._index[key]
            except KeyError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def get(self, key: str, default: Any = None) -> Any:
        index = self._index.get(key)
        return default if index is None else tuple.__getitem__(self, index)

    def keys(self) -> tuple[str, ...]:
        return self._keys

    def values(self) -> tuple[Any, ...]:
        return tuple(self)

    def items(self) -> Iterator[tuple[str, Any]]:
        return zip(self._keys, self, strict=True)

    def __repr__(self) -> str:
        fields = " ".join(f"{k}={v!r}" for k, v in zip(self._keys, self, strict=True))
        return f"<Record {fields}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._keys, tuple(self)))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """pydantic/FastAPI: validate from a record or a mapping, serialise as a JSON object."""
        return _pydantic_schema()


Mapping.register(Record)  # read by column name wherever a mapping is accepted


def _pydantic_schema() -> Any:
    from pydantic_core import core_schema

    as_object = core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())
    return core_schema.no_info_plain_validator_function(
        _from_mapping,
        json_schema_input_schema=as_object,
        serialization=core_schema.plain_serializer_function_ser_schema(
            as_dict, return_schema=as_object
        ),
    )


def as_dict(record: Record) -> dict[str, Any]:
    """The record as a plain ``{column: value}`` dict (the first of duplicate names wins)."""
    return {key: tuple.__getitem__(record, index) for key, index in record._index.items()}


def _from_mapping(value: Any) -> Record:
    if isinstance(value, Record):
        return value
    if isinstance(value, dict):
        return record_class(tuple(value))(value.values())
    raise ValueError(f"expected a Record or a dict, not {type(value).__name__}")


def _rebuild(keys: tuple[str, ...], values: tuple[Any, ...]) -> Record:
    return record_class(keys)(values)


_classes: dict[tuple[str, ...], type[Record]] = {}


def record_class(keys: tuple[str, ...]) -> type[Record]:
    """The ``Record`` subclass for these column names (cached)."""
    cls = _classes.get(keys)
    if cls is None:
        index: dict[str, int] = {}
        for i, key in enumerate(keys):
            index.setdefault(key, i)  # duplicate names: the first one wins, as in sqlite3.Row
        cls = type("Record", (Record,), {"__slots__": (), "_keys": keys, "_index": index})
        if len(_classes) > 4096:
            _classes.clear()
        _classes[keys] = cls
    return cls


MAX_SHAPES = 512  # statements whose result shape one connection remembers


def cached_record_class(
    shapes: dict[str, tuple[Any, type[Record]]],
    sql: str,
    key: Any,
    names: Callable[[Any], tuple[str, ...]],
) -> type[Record]:
    """The Record class for a result of ``sql``, cached in ``shapes`` (one connection's).

    Kept per connection, never on the shared ``SqlInfo``: two databases may give the same
    text different columns. ``key`` is whatever the driver hands back per result (a cursor
    description, a key tuple); it is compared by equality, which is cheaper than hashing it,
    and stored with the class in one tuple so a thread never sees one without the other.
    ``names(key)`` gives the column
    names on a miss (a plain function, so the hit path allocates nothing).
    """
    shape = shapes.get(sql)
    if shape is not None and shape[0] == key:
        cls: type[Record] = shape[1]
        return cls
    cls = record_class(names(key))
    if len(shapes) >= MAX_SHAPES:
        shapes.clear()
    shapes[sql] = (key, cls)
    return cls


def column_index(names: Sequence[str], column: int | str) -> int:
    """The index of ``column`` (an index or a name) among ``names``; ``InterfaceError`` if none.

    Shared by every backend so that ``fetch_val(..., column=...)`` fails the same way.
    """
    if type(column) is int:
        if -len(names) <= column < len(names):
            return column
        raise InterfaceError(f"column index {column} out of range: the result has {len(names)}")
    try:
        return list(names).index(column)  # type: ignore[arg-type]
    except ValueError:
        raise InterfaceError(
            f"no column {column!r} in the result (columns: {', '.join(names)})"
        ) from None


def convert(record: Record, model: type[T]) -> T:
    """Build ``model`` (dataclass, NamedTuple, pydantic model, any kwargs class) from a record."""
    try:
        if dataclasses.is_dataclass(model):
            names = [f.name for f in dataclasses.fields(model) if f.init]
            return model(**{name: record[name] for name in names if name in record})
        fields: Sequence[str] | None = getattr(model, "_fields", None)  # NamedTuple
        if fields is not None:
            return model(**{name: record[name] for name in fields if name in record})
        return model(**dict(zip(record._keys, record, strict=True)))
    except (TypeError, ValueError) as exc:
        raise InterfaceError(f"cannot build {model.__name__} from {record!r}: {exc}") from exc
