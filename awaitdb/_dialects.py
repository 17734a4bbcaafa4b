"""Which backend package serves a URL scheme: the one table, and the ``Dialect`` each package has.

Everything database-specific lives in a backend package (``awaitdb/_<pkg>/``); the core above
it asks that package's ``Dialect`` and never names a database. Adding a backend is one new
package with a ``dialect.py`` exposing ``DIALECT``, plus one line in ``_PACKAGES``::

    URL scheme ──► _PACKAGES ──► awaitdb._<pkg>.dialect.DIALECT   (imported on first use)
                                   ├── name, example_url           the canonical scheme
                                   ├── options, split_url()        URL options, their parsers
                                   ├── text_rules                  what the SQL scanner adds
                                   ├── placeholder(), max_params   how ``:name`` is sent
                                   ├── list_style, bind_limit(),   how ``IN :ids`` is bound
                                   │   array_match(), expand_mark
                                   ├── begin_sql()                 transaction SQL
                                   ├── open_async(), open_sync()   the backend of each face
                                   └── load(feature)               jobs / events / wakeup /
                                                                   migration support
                                                                   (``awaitdb._<pkg>.<module>``)

A dialect module imports no driver: drivers are imported when a backend opens, so an
application that never uses PostgreSQL never needs asyncpg or psycopg.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ._errors import InterfaceError

if TYPE_CHECKING:
    from ._async.backend import Backend
    from ._config import Config, UrlParts
    from ._sql import TextRules
    from ._sync.backend import SyncBackend

__all__ = [
    "DEFAULT_URL",
    "default_url_at",
    "Dialect",
    "all_dialects",
    "dialect_for",
    "find_dialect",
    "known_schemes",
    "load_feature",
    "require",
]

# URL scheme -> backend package. THE table: one line per scheme, aliases included.
_PACKAGES: Mapping[str, str] = {
    "sqlite": "awaitdb._sqlite",
    "postgresql": "awaitdb._postgres",
    "postgres": "awaitdb._postgres",
}

# The database ``connect()`` opens when given no URL and no $AWAITDB_URL.
DEFAULT_URL = "sqlite:///awaitdb.sqlite3"


def default_url_at(path: object) -> str:
    """The URL of the default backend's database at the file ``path`` (the tour, examples)."""
    return f"sqlite:///{path}"


_loaded: dict[str, Dialect] = {}


def find_dialect(scheme: str) -> Dialect | None:
    """The dialect serving ``scheme`` (a URL scheme or ``db.backend``), or None."""
    dialect = _loaded.get(scheme)
    if dialect is None:
        package = _PACKAGES.get(scheme.lower())
        if package is None:
            return None
        dialect = importlib.import_module(f"{package}.dialect").DIALECT
        _loaded[scheme] = dialect
    return dialect


def dialect_for(scheme: str) -> Dialect:
    """The dialect serving ``scheme`` (a URL scheme or ``db.backend``), else ``InterfaceError``."""
    dialect = find_dialect(scheme)
    if dialect is None:
        names = " or ".join(repr(name) for name in known_schemes())
        raise InterfaceError(f"no backend for the {scheme!r} scheme: use {names}")
    return dialect


def load_feature(backend: str, feature: str) -> Any:
    """``dialect.load(feature)`` for ``db.backend``; None when the backend lacks the feature."""
    dialect = find_dialect(backend)
    return None if dialect is None else dialect.load(feature)


def known_schemes() -> tuple[str, ...]:
    """The canonical scheme of every registered backend (aliases left out), in table order."""
    seen: dict[str, str] = {}
    for scheme, package in _PACKAGES.items():
        seen.setdefault(package, scheme)
    return tuple(seen.values())


def all_dialects() -> tuple[Dialect, ...]:
    """Every registered dialect, once each (the scanner applies all their text rules)."""
    return tuple(dialect_for(scheme) for scheme in known_schemes())


class Dialect:
    """What one database needs above its backends; each backend package subclasses it once."""

    #: The canonical URL scheme, also ``db.backend`` and ``stats().backend``.
    name: ClassVar[str] = ""
    #: The database's name in messages.
    title: ClassVar[str] = ""
    #: The backend package, e.g. ``awaitdb._sqlite``.
    package: ClassVar[str] = ""
    #: A URL that works, for error messages.
    example_url: ClassVar[str] = ""
    #: Options this database takes beside the common ones, with the parser of each.
    options: ClassVar[Mapping[str, Callable[[object], Any]]] = {}
    #: The most distinct parameters one statement may have (None: the driver reports its own).
    max_params: ClassVar[int | None] = None
    #: How a list parameter (``IN :ids``) is bound: "expand" (one ``expand_mark`` per value,
    #: every parameter bound by position) or "array" (``array_match``, the list as one array).
    list_style: ClassVar[str] = "expand"
    #: The positional placeholder the "expand" list style writes.
    expand_mark: ClassVar[str] = "?"
    #: ``load(feature)``: feature -> ``"module:attribute"`` inside ``package``.
    features: ClassVar[Mapping[str, str]] = {}

    @property
    def text_rules(self) -> TextRules:
        """What this database adds to the generic SQL scanner (see ``_sql.TextRules``)."""
        from ._sql import TextRules

        return TextRules()

    def placeholder(self, number: int, name: str) -> str:
        """How the driver is given parameter ``name`` (``number``: 1-based, first-use order);
        the default sends ``:name`` as written."""
        return f":{name}"

    def array_match(self, name: str, negated: bool) -> str:
        """What ``IN :name`` (``NOT IN`` if ``negated``) becomes with ``list_style`` "array",
        written with ``:name`` (then rendered by ``placeholder``)."""
        raise NotImplementedError

    def split_url(self, url: str, rest: str, redacted: str, known: frozenset[str]) -> UrlParts:
        """Split the part after ``scheme://``: location, option pairs, the URL for the driver."""
        raise NotImplementedError

    def bind_limit(self) -> int | None:
        """How many values one statement may bind, when the driver has a lower limit."""
        return None

    def begin_sql(self, isolation: str | None, readonly: bool) -> str:
        """The statement that opens a transaction with these characteristics."""
        raise NotImplementedError

    async def open_async(self, config: Config) -> Backend:
        """Open the backend of the async face."""
        raise NotImplementedError

    def open_sync(self, config: Config) -> SyncBackend:
        """Open the backend of the sync face."""
        raise NotImplementedError

    def load(self, feature: str) -> Any:
        """What ``feature`` ("jobs", "events", "wakeup", "migration") needs, or None.

        The module is imported on first use: ``awaitdb._<pkg>.<module>``.
        """
        spec = self.features.get(feature)
        if spec is None:
            return None
        module, _, attribute = spec.partition(":")
        return getattr(importlib.import_module(f"{self.package}.{module}"), attribute)

    def __repr__(self) -> str:
        return f"<Dialect {self.name}>"


def require(module: str, extra: str, what: str) -> None:
    """A clear error when a backend's driver is not installed (checked before importing it)."""
    if importlib.util.find_spec(module) is None:
        raise InterfaceError(f"{what} needs the {module!r} package: pip install 'awaitdb[{extra}]'")
