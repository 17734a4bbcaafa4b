"""Read a SQL string once: its ``:name`` parameters, what kind of statement it is, its pieces.

The scanner skips string literals (``'...'``, ``E'...'``), quoted identifiers (``"..."``,
```...```), comments (``--`` and ``/* */``), ``::`` casts and what the dialects' ``TextRules``
add (``[...]`` identifiers, dollar quoting), so only real placeholders are found. Results are
cached per SQL text, shared by every database of the process: the hot path pays a dict lookup.

The analysis is neutral: the text split at its placeholders (``parts``, ``numbers``). Each
dialect renders it once into what its driver takes (``SqlInfo.text_for``: its ``placeholder``
and, for list parameters bound as arrays, its ``array_match``), kept per dialect::

    sql ──analyze()──► SqlInfo (neutral, shared) ──text_for(dialect)──► driver text (per dialect)

A text must hold exactly one statement (a trailing ``;`` and comments are fine) with at most
the smallest ``max_params`` of the registered dialects distinct parameters; anything else is
refused here, once, for every backend and face. The scanner jumps between the few characters
that matter with a regular expression, so it stays linear and fast on multi-megabyte texts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ._errors import InterfaceError

if TYPE_CHECKING:
    from ._dialects import Dialect

__all__ = [
    "DML",
    "OTHER",
    "READ",
    "BIG_SQL",
    "Positional",
    "TXCONTROL",
    "SqlArray",
    "SqlInfo",
    "TextRules",
    "analyze",
    "bind_lists",
    "check_params",
    "split_statements",
]

# Statement kinds: where a statement may run and whether it can join a group commit.
READ: Final = 0  # SELECT / VALUES / WITH ... SELECT / EXPLAIN: a reader connection can run it
DML: Final = 1  # INSERT / UPDATE / DELETE / REPLACE: the writer; may share a group commit
OTHER: Final = 2  # DDL, PRAGMA, VACUUM, ATTACH...: the writer, alone, in autocommit
TXCONTROL: Final = 3  # BEGIN / COMMIT / ROLLBACK / SAVEPOINT / RELEASE / END

_KINDS = {
    "select": READ,
    "values": READ,
    "with": READ,  # unless its body has INSERT/UPDATE/DELETE/REPLACE: then DML (see _scan)
    "explain": READ,
    "insert": DML,
    "update": DML,
    "delete": DML,
    "replace": DML,
    "begin": TXCONTROL,
    "commit": TXCONTROL,
    "end": TXCONTROL,
    "rollback": TXCONTROL,
    "savepoint": TXCONTROL,
    "release": TXCONTROL,
}


class TextRules:
    """What one database adds to the generic scanner; each backend's dialect gives its own.

    A text is analysed once for every database in the process (``_cache``), so the scanner
    applies the rules of every registered dialect together (``_rules``): each rule must be
    harmless where its database's syntax does not occur.
    """

    __slots__ = (
        "bracket_identifiers",
        "dollar_quotes",
        "max_params",
        "max_params_of",
        "session_hints",
        "session_text",
        "session_words",
        "unfinished",
    )

    def __init__(
        self,
        *,
        session_words: frozenset[str] = frozenset(),
        session_hints: tuple[str, ...] = (),
        session_text: re.Pattern[str] | None = None,
        bracket_identifiers: bool = False,
        unfinished: Callable[[str], bool] | None = None,
        dollar_quotes: bool = False,
        max_params: int | None = None,
        max_params_of: str = "",
    ) -> None:
        # First words after which a pooled connection needs a reset before another caller.
        self.session_words = session_words
        # Lower-case substrings one of which must occur before ``session_text`` is tried: the
        # regex alone can hold the GIL for a second on a multi-megabyte text.
        self.session_hints = session_hints
        # Text anywhere in the statement that changes session state (advisory locks...).
        self.session_text = session_text
        # ``[name]`` after FROM/JOIN/INTO or ``,(.`` is a quoted identifier, not a subscript.
        self.bracket_identifiers = bracket_identifiers
        # ``unfinished(piece)``: a script piece ending at ``;`` is a compound statement whose
        # body goes on (a trigger's ``BEGIN ... END``): join it to the next piece.
        self.unfinished = unfinished
        # ``$$...$$`` / ``$tag$...$tag$`` is a string literal.
        self.dollar_quotes = dollar_quotes
        # The most distinct parameters a statement may have (merged: the smallest, and whose).
        self.max_params = max_params
        self.max_params_of = max_params_of


_merged: list[TextRules] = []


def _rules() -> TextRules:
    """Every registered dialect's text rules in one (computed once)."""
    if not _merged:
        from ._dialects import all_dialects

        words: set[str] = set()
        hints: list[str] = []
        patterns: list[re.Pattern[str]] = []
        brackets = dollars = False
        limit: tuple[int, str] | None = None
        unfinished: list[Callable[[str], bool]] = []
        for dialect in all_dialects():
            if dialect.max_params is not None and (limit is None or dialect.max_params < limit[0]):
                limit = (dialect.max_params, dialect.title)
            rules = dialect.text_rules
            dollars = dollars or rules.dollar_quotes
            words |= rules.session_words
            hints.extend(rules.session_hints)
            if rules.session_text is not None:
                patterns.append(rules.session_text)
            brackets = brackets or rules.bracket_identifiers
            if rules.unfinished is not None:
                unfinished.append(rules.unfinished)

        def any_unfinished(text: str) -> bool:
            return any(rule(text) for rule in unfinished)

        _merged.append(
            TextRules(
                session_words=frozenset(words),
                session_hints=tuple(hints),
                session_text=_either(patterns),
                bracket_identifiers=brackets,
                unfinished=any_unfinished if unfinished else None,
                dollar_quotes=dollars,
                max_params=None if limit is None else limit[0],
                max_params_of="" if limit is None else limit[1],
            )
        )
    return _merged[0]


def _either(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One pattern matching where any of ``patterns`` does (the same object if only one)."""
    if len(patterns) <= 1:
        return patterns[0] if patterns else None
    flags = 0
    for pattern in patterns:
        flags |= pattern.flags
    return re.compile("|".join(f"(?:{p.pattern})" for p in patterns), flags)


def _mentions_session_state(sql: str, rules: TextRules) -> bool:
    if rules.session_text is None:
        return False
    # Plain substring tests first: the regex alone takes ~0.9 s on a 5 MB text, in one C call
    # that holds the GIL (and so the event loop, even from a worker thread).
    lowered = sql.lower()
    if not any(hint in lowered for hint in rules.session_hints):
        return False
    return bool(rules.session_text.search(sql))


_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_WRITE_WORDS = frozenset({"insert", "update", "delete", "replace"})


class SqlInfo:
    """What one SQL text needs: parameter names, statement kind, its text split at placeholders.

    Immutable once analysed and shared by every database: what a backend learns at run time
    (result shapes, a WITH ... INSERT that writes) is kept by that backend. ``texts`` only
    caches each dialect's rendering of the same neutral parse (``text_for``).
    """

    __slots__ = (
        "changes_session",
        "inline_ok",
        "is_write",
        "kind",
        "lists",
        "names",
        "numbers",
        "order",
        "parts",
        "single",
        "sql",
        "texts",
    )

    def __init__(
        self,
        sql: str,
        order: tuple[str, ...],
        kind: int,
        parts: tuple[str, ...],
        numbers: tuple[int, ...],
        changes_session: bool = False,
        inline_ok: bool = True,
    ) -> None:
        self.sql = sql
        self.order = order  # distinct names in order of first appearance (numbered 1, 2, ...)
        self.names = frozenset(order)
        self.single = order[0] if len(order) == 1 else None  # checked without a keys view
        self.kind = kind
        # The text without its trailing ``;``, split at each placeholder: ``parts[k]`` comes
        # before the placeholder of parameter number ``numbers[k]`` (1-based, into ``order``).
        self.parts = parts
        self.numbers = numbers
        self.texts: dict[str, str] = {}  # dialect name -> the text its driver is given
        # What the text says, fixed once: shared by every database of the process. What a
        # backend learns at run time (a WITH ... INSERT writes, a read is too slow for the
        # loop) is kept by that backend (SQLite: ``_sqlite/inline.py``), never written here.
        self.is_write = kind != READ  # the first keyword's guess
        self.inline_ok = inline_ok  # False: too many bound values to ever run on the loop
        self.changes_session = changes_session  # SET, LISTEN, advisory locks, temp tables...
        self.lists: ListParams | None = None  # ``IN :ids`` list parameters, see bind_lists

    def text_for(self, dialect: Dialect) -> str:
        """The text ``dialect``'s driver is given: placeholders in its style (rendered once)."""
        text = self.texts.get(dialect.name)
        if text is None:
            text = self.texts[dialect.name] = _render(self, dialect)
        return text

    def positional(self, params: Mapping[str, Any] | None) -> tuple[Any, ...]:
        """Values in parameter-number order, for drivers that take positional parameters."""
        if not self.order:
            return ()
        assert params is not None
        return tuple([params[name] for name in self.order])


_cache: dict[str, SqlInfo] = {}
_CACHE_LIMIT = 4096


def analyze(sql: str) -> SqlInfo:
    """The cached ``SqlInfo`` for ``sql``; ``InterfaceError`` if it is not one SQL statement."""
    try:
        info = _cache.get(sql)
    except TypeError:  # unhashable: a list, a dict...
        info = None
    if info is None:
        if not isinstance(sql, str):
            raise InterfaceError(f"SQL must be a string, got {type(sql).__name__}")
        info = _mark_lists(_scan(sql))
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[sql] = info
    return info


# The next character the scanner must look at: before the first word, letters count too.
_NEXT = re.compile(r"[:;'\"`$\[/-]")
_NEXT_OR_WORD = re.compile(r"[:;'\"`$\[/A-Za-z-]")


def _scan(sql: str) -> SqlInfo:
    rules = _rules()
    brackets = rules.bracket_identifiers
    parts: list[str] = []
    order: list[str] = []
    slots: list[int] = []
    numbers: dict[str, int] = {}
    first_word: str | None = None
    writes = False  # a WITH whose body inserts, updates, deletes or replaces
    semicolon = -1  # the first top-level ``;``
    i, n, last = 0, len(sql), 0
    find = _NEXT_OR_WORD.search
    while i < n:
        found = find(sql, i)  # jump over text where nothing can start (C speed on big texts)
        if found is None:
            break
        i = found.start()
        ch = sql[i]
        skipped = _skip_opaque(sql, i)
        if skipped:
            i = skipped
        elif ch == "[" and brackets and first_word is not None and _bracket_is_identifier(sql, i):
            end = sql.find("]", i + 1)
            i = n if end < 0 else end + 1
        elif ch == ":":
            if i + 1 < n and sql[i + 1] == ":":
                i += 2  # a ``::`` cast
            elif i + 1 < n and _IDENT_START.match(sql, i + 1) and not (i > 0 and sql[i - 1] == ":"):
                match = _IDENT.match(sql, i + 1)
                assert match is not None
                name = match.group(0)
                if name not in numbers:
                    numbers[name] = len(order) + 1
                    order.append(name)
                parts.append(sql[last:i])
                slots.append(numbers[name])
                i = last = match.end()
            else:
                i += 1
        elif ch == ";":
            if semicolon < 0:
                semicolon = i
            i += 1
        elif first_word is None and ch.isalpha():
            match = _FIRST_WORD.match(sql, i)
            assert match is not None
            first_word = match.group(0).lower()
            if first_word != "with" or not _names_a_write_word(sql):
                find = _NEXT.search  # a WITH naming a write word reads on, word by word
            i = match.end()
        elif ch.isalpha():  # a word of a WITH statement (outside strings, comments, quotes)
            match = _IDENT.match(sql, i)
            assert match is not None
            if not writes and not _GLUED.match(sql, i - 1):
                writes = _is_write_word(sql, match.group(0), match.end())
            i = match.end()
        else:
            i += 1
    if _check_statement(sql, semicolon, first_word, len(order), rules):
        parts.append(sql[last:semicolon])  # drop the trailing ``;`` and comments
    else:
        parts.append(sql[last:])
    kind = DML if writes else _KINDS.get(first_word or "", OTHER)
    changes_session = first_word in rules.session_words or _mentions_session_state(sql, rules)
    return SqlInfo(sql, tuple(order), kind, tuple(parts), tuple(slots), changes_session)


def _render(info: SqlInfo, dialect: Dialect) -> str:
    """``info``'s text for ``dialect``: list parameters in its array form if it binds them so,
    each placeholder as its ``placeholder(number, name)`` writes it."""
    lists = info.lists
    if lists is not None and lists.spans and dialect.list_style == "array":
        form = dialect.array_match
        info = _scan(_rewrite(info.sql, lists.spans, lambda _k, name, neg: form(name, neg)))
    parts, order, mark = info.parts, info.order, dialect.placeholder
    out = [parts[0]]
    for number, part in zip(info.numbers, parts[1:], strict=True):
        out.append(mark(number, order[number - 1]))
        out.append(part)
    return "".join(out)


_GLUED = re.compile(r"[A-Za-z0-9_$.]")  # before a word: the word is part of a name (t.update)
_CALL = re.compile(r"\s*\(")


def _names_a_write_word(sql: str) -> bool:
    """A quick no for most WITH ... SELECT texts (a yes is checked word by word)."""
    lowered = sql.lower()
    return any(word in lowered for word in _WRITE_WORDS)


def _is_write_word(sql: str, word: str, end: int) -> bool:
    """True for INSERT/UPDATE/DELETE, and REPLACE that is not the ``replace(...)`` function."""
    word = word.lower()
    if word not in _WRITE_WORDS:
        return False
    return word != "replace" or _CALL.match(sql, end) is None


# -- one statement, a bounded number of parameters (issue 7, defects 2, 10 and 14) ---------------

BIG_SQL: Final = 16 * 1024  # longer texts are scanned off the event loop (~0.2 us a byte)


def _check_statement(
    sql: str, semicolon: int, first_word: str | None, n_params: int, rules: TextRules
) -> bool:
    """Refuse empty SQL, several statements and too many parameters with ``InterfaceError``.

    Returns whether the text ends at its first top-level ``;`` (only blanks, comments and
    semicolons follow), so the driver can be given the statement without that tail.
    """
    if first_word is None and _only_comments(sql.replace(";", " ")):
        raise InterfaceError("no SQL statement: the text is empty or only comments")
    limit = rules.max_params
    if limit is not None and n_params > limit:
        raise InterfaceError(
            f"{n_params:,} distinct parameters in one statement; at most {limit:,} are "
            f"allowed ({rules.max_params_of}'s limit): split the work or pass the values as "
            "one array/JSON"
        )
    if semicolon < 0:
        return False
    if _only_comments(sql[semicolon:].replace(";", " ")):
        return True
    if len(split_statements(sql)) > 1:  # not a compound statement whose body holds semicolons
        raise InterfaceError(
            "the SQL text holds more than one statement: execute() and fetch_*() run one "
            f"statement at a time (migrations split scripts themselves): {short_sql(sql)!r}"
        )
    return False


def _skip_opaque(sql: str, i: int) -> int:
    """If a string literal, quoted identifier, comment or dollar quote starts at ``i``, the
    index just past it; else 0. The one definition of "text where SQL syntax does not count",
    shared by the parameter scanner and the statement splitter."""
    ch = sql[i]
    if ch == "'":
        escaped = i > 0 and sql[i - 1] in "eE" and (i < 2 or not sql[i - 2].isalnum())
        return _skip_quoted(sql, i, "'", backslash=escaped)
    if ch in {'"', "`"}:
        return _skip_quoted(sql, i, ch, backslash=False)
    n = len(sql)
    if ch == "-" and sql.startswith("--", i):
        end = sql.find("\n", i)
        return n if end < 0 else end + 1
    if ch == "/" and sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return n if end < 0 else end + 2
    if (
        ch == "$"
        and not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_"))
        and _rules().dollar_quotes
    ):
        match = _DOLLAR_TAG.match(sql, i)
        if match:
            end = sql.find(match.group(0), match.end())
            return n if end < 0 else end + len(match.group(0))
    return 0


_BACKSLASH_OR_QUOTE = re.compile(r"\\.|'", re.DOTALL)


def _skip_quoted(sql: str, i: int, quote: str, *, backslash: bool) -> int:
    j, n = i + 1, len(sql)
    if backslash:  # E'...': a backslash escapes the next character
        while True:
            match = _BACKSLASH_OR_QUOTE.search(sql, j)
            if match is None:
                return n
            j = match.end()
            if match.group() == quote:
                if j < n and sql[j] == quote:
                    j += 1
                    continue
                return j
    while True:
        end = sql.find(quote, j)
        if end < 0:
            return n
        if end + 1 < n and sql[end + 1] == quote:
            j = end + 2
            continue
        return end + 1


def _bracket_is_identifier(sql: str, i: int) -> bool:
    # ``[identifier]`` quoting (``TextRules.bracket_identifiers``) where an array subscript
    # (``arr[1:2]``) cannot stand: after FROM/JOIN/INTO or ``,(.``.
    j = i - 1
    while j >= 0 and sql[j].isspace():
        j -= 1
    return j >= 0 and (sql[j] in ",(." or sql[j - 3 : j + 1].lower() in {"from", "join", "into"})


def check_params(info: SqlInfo, params: Mapping[str, Any] | None) -> None:
    """Raise ``InterfaceError`` naming the missing or extra parameters, if any."""
    if params is None:
        if info.names:
            missing = ", ".join(f":{name}" for name in info.order)
            raise InterfaceError(f"missing parameter(s) {missing}: no parameters were given")
        return
    if not isinstance(params, Mapping):
        raise InterfaceError(
            f"parameters must be a mapping of names to values (for :name placeholders), "
            f"got {type(params).__name__}"
        )
    if params.keys() == info.names:
        return
    missing_names = [name for name in info.order if name not in params]
    extra_names = sorted(str(key) for key in params if key not in info.names)
    problems = []
    if missing_names:
        problems.append("missing parameter(s) " + ", ".join(f":{k}" for k in missing_names))
    if extra_names:
        problems.append("unexpected parameter(s) " + ", ".join(f":{k}" for k in extra_names))
    raise InterfaceError("; ".join(problems) + f" in {short_sql(info.sql)!r}")


def short_sql(sql: str, limit: int = 120) -> str:
    """``sql`` on one line, cut to ``limit`` characters, for messages and logs."""
    text = " ".join(sql.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def split_statements(script: str) -> list[tuple[int, str]]:
    """Split a SQL script into ``(line, statement)`` pairs at top-level semicolons.

    Semicolons inside string literals, quoted identifiers, comments and dollar quotes do not
    split. A compound statement (a trigger body, ``BEGIN ... END``) holds semicolons of its
    own: a piece is joined to the next while a dialect's ``TextRules.unfinished`` says its
    body goes on. ``line`` is 1-based.
    """
    unfinished = _rules().unfinished
    pieces: list[tuple[int, str]] = []
    i, n, start = 0, len(script), 0
    while i < n:
        skipped = _skip_opaque(script, i)
        if skipped:
            i = skipped
        elif script[i] == ";":
            pieces.append((start, script[start : i + 1]))
            start = i = i + 1
        else:
            i += 1
    if script[start:].strip():
        pieces.append((start, script[start:]))
    statements: list[tuple[int, str]] = []
    pending_at, pending = -1, ""
    for offset, piece in [*pieces, (len(script), "")]:
        if piece and not pending:
            pending_at = offset
        pending += piece
        if piece and unfinished is not None and unfinished(pending):
            continue  # a compound statement's body: keep joining until its END;
        if pending and not _only_comments(pending):
            body = len(pending) - len(_strip_leading_comments(pending))
            line = script.count("\n", 0, pending_at + body) + 1
            statements.append((line, _strip_leading_comments(pending).strip()))
        pending = ""
    return statements


def _strip_leading_comments(text: str) -> str:
    while True:
        stripped = text.lstrip()
        if stripped.startswith("--"):
            end = stripped.find("\n")
            text = "" if end < 0 else stripped[end + 1 :]
        elif stripped.startswith("/*"):
            end = stripped.find("*/")
            text = "" if end < 0 else stripped[end + 2 :]
        else:
            return stripped


def _only_comments(text: str) -> bool:
    return not _strip_leading_comments(text).rstrip(";").strip()


# -- list parameters: ``x IN :ids`` ------------------------------------------------------------
#
# One spelling for every backend; its dialect's ``list_style`` says how it is bound.
# "expand" gives ``x IN (?, ?, ...)``: every placeholder of the statement becomes a plain ``?``
# bound by position (a driver may resolve *named* parameters in quadratic time: 10,000 named
# values stalled the loop for seconds). Short lists are padded to a power-of-two length by
# repeating the last value (harmless for IN) so a statement has few expanded forms; padding
# never passes the dialect's ``bind_limit()``. "array" gives the dialect's ``array_match``
# (PostgreSQL: ``x = ANY($n)``, ``NOT IN`` becomes ``<> ALL($n)``) with the list bound as one
# array, and a list given to ``= ANY(:x)`` / ``<> ALL(:x)`` is bound as an array on both faces.
# An empty list matches nothing (``NOT IN`` then matches everything) in both styles. A list
# anywhere inside a parenthesised ``IN (...)`` list, or a list name used both after ``IN`` and
# elsewhere, is refused.

_LIST_HINT = re.compile(r"\b(?:in|any|all)\b", re.IGNORECASE)
_LIST_TYPES = (list, tuple)
_PAD_UP_TO: Final = 1024  # lists longer than this are bound at their exact length
_INLINE_VARIABLES: Final = 512  # more bound values than this: never run on the event loop
_SUBQUERY_WORDS = frozenset({"select", "with", "values"})
_WORD = re.compile(r"[A-Za-z0-9_$]+")


class SqlArray(list[Any]):
    """A list parameter bound as one SQL array (the dialect's ``array_match``), never as JSON."""

    __slots__ = ()


class Positional(tuple[Any, ...]):
    """Values for a statement whose placeholders were all rewritten to ``?`` (expanded lists);
    ``names`` gives each position's parameter name for error messages."""

    names: tuple[str, ...]


class ListParams:
    """Where a statement takes list parameters, and its expanded template of ``?`` slots."""

    __slots__ = ("arrays", "elsewhere", "expanded", "in_paren", "names", "pieces", "slots", "spans")

    def __init__(
        self,
        spans: list[tuple[int, int, str, bool]],
        in_paren: list[str],
        arrays: list[str],
        pieces: list[str],
        slots: list[tuple[str, int]],
    ) -> None:
        self.spans = tuple(spans)  # (start, end, name, negated) in the original SQL
        self.names = tuple(dict.fromkeys(name for _s, _e, name, _n in spans))
        self.in_paren = tuple(dict.fromkeys(in_paren))  # names inside ``IN ( ... )``
        self.arrays = tuple(dict.fromkeys(arrays))  # names in ``ANY(:x)`` / ``ALL(:x)``
        self.pieces = tuple(pieces)  # SQL text between slots (the expanded form)
        self.slots = tuple(slots)  # (name, 0 scalar / 1 IN list / 2 NOT IN list)
        scalar = {name for name, how in slots if not how}
        self.elsewhere = tuple(name for name in self.names if name in scalar)
        # Expanded forms by (the dialect's positional mark, the padded lengths).
        self.expanded: dict[tuple[str, tuple[int, ...]], SqlInfo] = {}


def _tokens(sql: str) -> list[tuple[str, int, int]]:
    """Significant tokens as ``(text, start, end)``: lower-cased words, ``:name`` placeholders
    (text starting with ``:``), ``(``/``)`` and other characters; comments and literals are
    skipped (a literal is one ``'`` token), with the same placeholder rules as ``_scan``."""
    out: list[tuple[str, int, int]] = []
    brackets = _rules().bracket_identifiers
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        skipped = _skip_opaque(sql, i)
        if skipped:
            if ch not in "-/":
                out.append(("'", i, skipped))
            i = skipped
        elif ch.isspace():
            i += 1
        elif ch == "[" and out and brackets and _bracket_is_identifier(sql, i):
            end = sql.find("]", i + 1)
            end = n if end < 0 else end + 1
            out.append(("'", i, end))
            i = end
        elif ch == ":":
            if i + 1 < n and sql[i + 1] == ":":
                i += 2
            elif i + 1 < n and _IDENT_START.match(sql, i + 1) and not (i > 0 and sql[i - 1] == ":"):
                match = _IDENT.match(sql, i + 1)
                assert match is not None
                out.append((":" + match.group(0), i, match.end()))
                i = match.end()
            else:
                out.append((ch, i, i + 1))
                i += 1
        elif ch.isalpha() or ch == "_":
            match = _WORD.match(sql, i)
            assert match is not None
            out.append((match.group(0).lower(), i, match.end()))
            i = match.end()
        else:
            out.append((ch, i, i + 1))
            i += 1
    return out


def _mark_lists(info: SqlInfo) -> SqlInfo:
    """Find ``[NOT] IN :name``, names inside ``IN ( ... )`` and ``ANY(:name)`` / ``ALL(:name)``
    outside literals and comments; build the expanded template of ``?`` slots."""
    sql = info.sql
    if not info.names or not _LIST_HINT.search(sql):
        return info
    tokens = _tokens(sql)
    spans: list[tuple[int, int, str, bool]] = []
    in_paren: list[str] = []
    arrays: list[str] = []
    pieces: list[str] = []
    slots: list[tuple[str, int]] = []
    stack: list[bool] = []  # per open parenthesis: is it an ``IN ( ... )`` value list?
    last = 0
    for k, (text, start, end) in enumerate(tokens):
        before = tokens[k - 1][0] if k else ""
        if text == "(":
            after = tokens[k + 1][0] if k + 1 < len(tokens) else ""
            stack.append(before == "in" and after not in _SUBQUERY_WORDS)
        elif text == ")":
            if stack:
                stack.pop()
        elif text[0] == ":":
            name = text[1:]
            if before == "in":
                negated = k >= 2 and tokens[k - 2][0] == "not"
                begin = tokens[k - 2][1] if negated else tokens[k - 1][1]
                spans.append((begin, end, name, negated))
                pieces.append(sql[last:begin])
                slots.append((name, 2 if negated else 1))
            else:
                if any(stack):
                    in_paren.append(name)
                after = tokens[k + 1][0] if k + 1 < len(tokens) else ""
                if before == "(" and after == ")" and k >= 2 and tokens[k - 2][0] in {"any", "all"}:
                    arrays.append(name)
                pieces.append(sql[last:start])
                slots.append((name, 0))
            last = end
    pieces.append(sql[last:])
    if not spans and not in_paren and not arrays:
        return info
    if {name for name, _how in slots} != info.names:
        return info  # the two scanners disagree: leave the statement as written
    info.lists = ListParams(spans, in_paren, arrays, pieces, slots)
    return info


def _rewrite(sql: str, spans: tuple[tuple[int, int, str, bool], ...] | list[Any], form: Any) -> str:
    out, last = [], 0
    for index, (start, end, name, negated) in enumerate(spans):
        out.append(sql[last:start])
        out.append(form(index, name, negated))
        last = end
    out.append(sql[last:])
    return "".join(out)


def _bucket(length: int, room: int) -> int:
    """The padded length of an expanded list: 0, 1, 2, 4, ... 1024, then the exact length;
    never more than ``room`` (what the dialect's bind limit leaves)."""
    if length == 0 or length > _PAD_UP_TO:
        return length
    return max(length, min(1 << (length - 1).bit_length(), room))


def _expanded(info: SqlInfo, lists: ListParams, sizes: tuple[int, ...], mark: str) -> SqlInfo:
    key = (mark, sizes)
    expanded = lists.expanded.get(key)
    if expanded is None:
        size_of = dict(zip(lists.names, sizes, strict=True))
        out = [lists.pieces[0]]
        for (name, how), piece in zip(lists.slots, lists.pieces[1:], strict=True):
            if how:
                marks = ", ".join([mark] * size_of[name])
                out.append(f"{'NOT IN' if how == 2 else 'IN'} ({marks})")
            else:
                out.append(mark)
            out.append(piece)
        sql = "".join(out)
        inline_ok = info.inline_ok and len(lists.slots) + sum(sizes) <= _INLINE_VARIABLES
        expanded = SqlInfo(sql, (), info.kind, (sql,), (), info.changes_session, inline_ok)
        if max(sizes, default=0) <= _PAD_UP_TO:  # longer lists have exact, one-off shapes
            if len(lists.expanded) >= 64:
                lists.expanded.clear()
            lists.expanded[key] = expanded
    return expanded


def _refuse_misplaced_lists(info: SqlInfo, lists: ListParams, row: Any) -> None:
    for name in lists.in_paren:
        value = row.get(name)
        if isinstance(value, _LIST_TYPES):
            raise InterfaceError(
                f"parameter :{name} is a {type(value).__name__} inside a parenthesised IN list, "
                f"where it would be compared as one JSON value: to match any of its values "
                f"write 'IN :{name}' (no parentheses, nothing else in the list) in "
                f"{short_sql(info.sql)!r}"
            )
    for name in lists.elsewhere:
        raise InterfaceError(
            f"parameter :{name} is a list after 'IN :{name}' and is also used elsewhere in "
            f"{short_sql(info.sql)!r}; pass the other use under its own name"
        )


def bind_lists(
    info: SqlInfo, params: Any, backend: str, *, many: bool = False
) -> tuple[SqlInfo, Any]:
    """The statement and parameters to run for a statement with list parameters on ``backend``
    (``db.backend``: its dialect's ``list_style`` decides).

    Refuses a list inside ``IN (...)`` (it would silently compare with one JSON value), a list
    name also used elsewhere, a non-list after a bare ``IN :name``, and list parameters in
    ``execute_many``.
    """
    lists = info.lists
    assert lists is not None
    from ._dialects import dialect_for

    dialect = dialect_for(backend)
    style = dialect.list_style
    for row in params if many else (params,):
        _refuse_misplaced_lists(info, lists, row)
    if not lists.spans:
        if style == "array" and not many and lists.arrays:
            bound = dict(params)
            for name in lists.arrays:
                if isinstance(bound[name], _LIST_TYPES):
                    bound[name] = SqlArray(bound[name])
            return info, bound
        return info, params
    if many:
        raise InterfaceError(
            f"list parameters ('IN :{lists.names[0]}') are not supported by execute_many; "
            "call execute once per list"
        )
    values = {}
    for name in lists.names:
        value = params[name]
        if not isinstance(value, _LIST_TYPES):
            raise InterfaceError(
                f"parameter :{name} (after IN) must be a list or tuple of values, got "
                f"{type(value).__name__}; for a single value write '= :{name}'"
            )
        values[name] = value
    if style == "array":
        bound = dict(params)
        for name in (*values, *lists.arrays):
            if isinstance(bound[name], _LIST_TYPES):
                bound[name] = SqlArray(bound[name])
        return info, bound
    limit = dialect.bind_limit() or _rules().max_params
    total = len(lists.slots) - len(lists.spans) + sum(len(v) for v in values.values())
    if limit is not None and total > limit:
        raise InterfaceError(
            f"list parameter(s) {', '.join(f':{n}' for n in values)} hold {total} values in "
            f"all, more than {dialect.title}'s limit of {limit} bound values per statement; "
            "load them into a (temporary) table and join it instead"
        )
    room = _PAD_UP_TO * len(lists.names) if limit is None else limit - total
    sizes = []
    for name in lists.names:
        size = _bucket(len(values[name]), len(values[name]) + room)
        room -= size - len(values[name])
        sizes.append(size)
    expanded = _expanded(info, lists, tuple(sizes), dialect.expand_mark)
    size_of = dict(zip(lists.names, sizes, strict=True))
    out: list[Any] = []
    names: list[str] = []
    for name, how in lists.slots:
        if how:
            value = values[name]
            size = size_of[name]
            out.extend(value)
            if size > len(value):
                out.extend([value[-1]] * (size - len(value)))
            names.extend([name] * size)
        else:
            out.append(params[name])
            names.append(name)
    positional = Positional(out)
    positional.names = tuple(names)
    return expanded, positional
