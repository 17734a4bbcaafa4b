#!/usr/bin/env python3
"""Generate the sync face from the async source: edits to the source text, found by its tree.

    python tools/async_to_sync.py          # write every generated file, remove orphans
    python tools/async_to_sync.py --check  # exit 1 if a generated file is stale or orphaned

The pairs (source -> generated) are listed once, in ``PAIRS``.

Approach. Each source is parsed (``ast``) and tokenized (``tokenize``) only to find *where* it
must change; the changes are applied as edits to the source text itself. Everything the tree
does not carry therefore survives untouched: comments (explanations, ``# noqa``, ``# pragma``),
blank lines, implicitly joined strings and the author's parentheses, so a generated file is a
line-by-line twin of its source and passes ruff like hand-written code. The alternative,
``ast.unparse`` plus a comment-keeping library such as ``ast-comments``, regenerates every line
(joins strings past the line limit, drops parentheses, re-attaches comments by guesswork) and
adds a dev dependency; this needs the standard library only.

    source text --ast + tokenize--> edits --apply--> sync text --ruff--> generated file
                                      |
                                      +--> refusals (file:line), nothing is written

The edits, all located in the source (so an error names the source line):

1. ``if ASYNC:`` -> its ``else:`` branch, dedented, or nothing; ``if not ASYNC:`` -> its body.
2. The keywords ``async`` (def, with, for, comprehensions) and ``await`` are deleted.
3. Identifiers in ``RENAMES`` are renamed: NAME tokens only, so a string literal never changes;
   also the identifiers of f-string fields, the names listed in ``__all__`` and quoted
   annotations, which are code written in quotes.
4. ``Awaitable[T]`` -> ``T``; ``[x async for x in it]`` -> ``list(it)``; ``ASYNC``,
   ``Awaitable`` and names made duplicate by a rename leave their import.
5. Docstrings and comments speak to sync users: ``async with``/``async for``/``async def`` lose
   ``async``, ``await f(...)`` becomes ``f(...)``, "an async iterator" becomes "an iterator".
6. ``ruff format``, ``ruff check --fix`` on imports only (``I``, ``F401``: an import only the
   async branch used goes), ``ruff format`` again.

Refused, with ``file:line``: anything async-specific left outside ``if ASYNC:`` after the renames
(``asyncio.timeout``, ``asyncio.sleep``, any use of ``asyncio`` or an async driver, an async API
such as ``AsyncIterable``, ``Coroutine``, ``asynccontextmanager`` or ``anext`` without a
``RENAMES`` entry, ``await`` inside an f-string, ``ASYNC`` outside an ``if`` test), and the
forms the edits cannot keep faithful (a nested or ``elif`` ``ASYNC`` test, a branch on the
``if``/``else`` line itself). Asking whether something is async (``inspect.iscoroutinefunction``)
is no async construct and is allowed.

Pinned: the output depends on the Python minor version (ast positions and tokenize change
between minors; 3.12 tokenizes f-strings) and on ruff's formatting, so the generator runs only on
Python ``PYTHON`` and on the exact ruff the ``dev`` extra of ``pyproject.toml`` pins; anything
else is refused, so two developers never produce two different sync faces.
"""

from __future__ import annotations

import argparse
import ast
import bisect
import difflib
import io
import re
import subprocess
import sys
import tokenize
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Source glob -> generated glob, relative to the repository; ``*`` is the same text in both.
PAIRS: list[tuple[str, str]] = [
    ("awaitdb/_async/*.py", "awaitdb/_sync/*.py"),
    ("tests/conformance/*_async.py", "tests/conformance/*_sync.py"),
    ("awaitdb/_migrate/runner.py", "awaitdb/_migrate/runner_sync.py"),
]

PYTHON = (3, 11)  # the minor version whose ast/tokenize positions the edits were checked with

RENAMES: dict[str, str] = {
    # async dunders and protocol names
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "aclose": "close",
    "StopAsyncIteration": "StopIteration",
    "AsyncIterator": "Iterator",
    "AsyncGenerator": "Generator",
    # compat primitives (awaitdb/_compat.py)
    "AWaiter": "Waiter",
    "ANoLock": "RLock",
    "asleep": "sleep",
    # public and internal classes of the async face
    "Database": "SyncDatabase",
    "Transaction": "SyncTransaction",
    "PinnedConnection": "SyncPinnedConnection",
    "Rows": "SyncRows",
    "Pool": "SyncPool",
    "Backend": "SyncBackend",
    "Session": "SyncSession",
    "Scope": "SyncScope",
    "open_database": "open_database_sync",
    "open_backend": "open_backend_sync",
    "ASYNC_FACE": "SYNC_FACE",
    # tests
    "adb": "sdb",
    "aconnect": "sconnect",
    "adb_factory": "sdb_factory",
    "helpers_async": "helpers_sync",
    # the migrator (awaitdb/_migrate/runner.py -> runner_sync.py) and its imports of the core
    "Migrator": "SyncMigrator",
    "_async.database": "_sync.database",
    "_async.transaction": "_sync.transaction",
}

# Async-only APIs: refused outside ``if ASYNC:`` unless RENAMES maps them to a sync twin. Asking
# whether something is async (``inspect.iscoroutinefunction``) is fine in sync code: the sync face
# uses it to refuse an ``async def`` handed to it.
ASYNC_MODULES = frozenset({"asyncio", "asyncpg", "aiosqlite", "anyio", "trio"})
ASYNC_NAMES = frozenset(
    {
        "aiter",
        "anext",
        "asynccontextmanager",
        "__await__",
        "__aenter__",
        "__aexit__",
        "__aiter__",
        "__anext__",
    }
)
ASYNC_CLASSES = re.compile(r"Async(?=[A-Z_]|$)|^(?:Awaitable|Coroutine)$")  # AsyncIterable...
AWAITABLE = "Awaitable"  # ``Awaitable[T]`` becomes ``T``; a bare ``Awaitable`` is refused

HEADER = (
    "# WARNING: generated by tools/async_to_sync.py; DO NOT EDIT.\n"
    "# Source: {source}\n"
    "# Edit the source, then run `python tools/async_to_sync.py`.\n"
)
HEADER_MARK = HEADER.splitlines()[0]

# Docstrings and comments: what tells a reader to ``await`` becomes what a sync user writes.
PROSE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\basync (with|for|def)\b"), r"\1"),
    (re.compile(r"\bawait (?=[A-Za-z_][\w.]*(?:[(\[`]|$))"), ""),
    (re.compile(r"\b([Aa])n async (iterator|iterable)\b"), r"\1n \2"),
    (re.compile(r"\b([Aa])n async (context manager|generator)\b"), r"\1 \2"),
    (re.compile(r"\basync (iterator|iterable|context manager|generator)\b"), r"\1"),
]
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


Located = ast.expr | ast.stmt | ast.arg | ast.keyword | ast.alias  # nodes with positions


class GeneratorError(Exception):
    """The source cannot be turned into a faithful sync twin; the message names file:line."""


def sync_prose(text: str) -> str:
    """Rewrite a docstring or comment for sync users (``await db.f()`` -> ``db.f()``).

    A code span whose sync spelling is also in the text is contrasting the two faces
    ("``async def up`` or ``def up``") and stays as written.
    """
    spans = {match.group(2) for match in CODE_SPAN.finditer(text)}
    out, position = [], 0
    for match in CODE_SPAN.finditer(text):
        out.append(_sync_words(text[position : match.start()]))
        ticks, code = match.group(1), match.group(2)
        synced = _sync_words(code)
        out.append(match.group(0) if synced in spans - {code} else ticks + synced + ticks)
        position = match.end()
    out.append(_sync_words(text[position:]))
    return "".join(out)


def _sync_words(text: str) -> str:
    for pattern, replacement in PROSE:
        text = pattern.sub(replacement, text)
    return text


# -- locating things in the source ---------------------------------------------------------------


class Source:
    """One source text with its tree, tokens and a (line, column) -> offset map."""

    def __init__(self, text: str, name: str) -> None:
        self.text = text
        self.name = name
        try:
            self.tree = ast.parse(text, name)
        except SyntaxError as exc:
            raise GeneratorError(f"{name}:{exc.lineno}: not valid Python: {exc.msg}") from exc
        self.tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
        self.starts = [0]  # offset of the start of each line; line n starts at starts[n - 1]
        for index, char in enumerate(text):
            if char == "\n":
                self.starts.append(index + 1)
        self.starts.append(len(text))
        self.in_string: set[int] = set()  # lines inside a multi-line string: never dedented
        for tok in self.tokens:
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                self.in_string.update(range(tok.start[0] + 1, tok.end[0] + 1))
        self.token_starts = [self.offset(*tok.start) for tok in self.tokens]

    def line_text(self, line: int) -> str:
        return self.text[self.starts[line - 1] : self.starts[line]]

    def offset(self, line: int, col: int) -> int:
        """Offset of a character column (tokenize's unit)."""
        return self.starts[line - 1] + col

    def _char_col(self, line: int, byte_col: int) -> int:
        return len(self.line_text(line).encode()[:byte_col].decode())

    def start(self, node: Located) -> int:
        """Offset where ``node`` starts (ast counts columns in UTF-8 bytes)."""
        return self.offset(node.lineno, self._char_col(node.lineno, node.col_offset))

    def end(self, node: Located) -> int:
        line = node.end_lineno or node.lineno
        return self.offset(line, self._char_col(line, node.end_col_offset or 0))

    def col(self, node: Located) -> int:
        return self.start(node) - self.starts[node.lineno - 1]

    def token_at(self, offset: int) -> tokenize.TokenInfo | None:
        index = bisect.bisect_left(self.token_starts, offset)
        while index < len(self.tokens) and self.token_starts[index] == offset:
            tok = self.tokens[index]
            if tok.string:  # not a DEDENT, which starts where the next token does
                return tok
            index += 1
        return None

    def next_token(self, after: int, strings: tuple[str, ...], col: int) -> tokenize.TokenInfo:
        """The first NAME token in ``strings`` at or after ``after``, in column ``col``."""
        index = bisect.bisect_left(self.token_starts, after)
        for tok in self.tokens[index:]:
            if tok.type == tokenize.NAME and tok.string in strings and tok.start[1] == col:
                return tok
        raise GeneratorError(f"{self.name}: no {strings[0]!r} token after offset {after}")

    def error(self, node_or_line: ast.AST | int, message: str) -> str:
        """``file:line: message``."""
        line = node_or_line
        if not isinstance(line, int):
            line = getattr(node_or_line, "lineno", 0)
        return f"{self.name}:{line}: {message}"


@dataclass(frozen=True)
class Edit:
    """Replace ``text[start:end]``; a region also swallows every edit inside it."""

    start: int
    end: int
    text: str
    region: bool = False


def apply_edits(source: Source, edits: list[Edit]) -> str:
    """Apply non-overlapping edits; an edit inside a region goes with the region."""
    edits = list(dict.fromkeys(edits))  # one change found twice (by token and by node) is one
    regions = sorted((e for e in edits if e.region), key=lambda e: (e.start, -e.end))
    kept: list[Edit] = []
    for edit in regions:  # outermost regions only
        if kept and edit.end <= kept[-1].end:
            continue
        kept.append(edit)
    starts = [r.start for r in kept]
    for edit in edits:
        if edit.region:
            continue
        index = bisect.bisect_right(starts, edit.start) - 1
        if index >= 0 and edit.end <= kept[index].end and edit.start < kept[index].end:
            continue  # swallowed by its region
        kept.append(edit)
    kept.sort(key=lambda e: (e.start, e.end))
    out: list[str] = []
    position = 0
    for edit in kept:
        if edit.start < position:
            line = bisect.bisect_right(source.starts, edit.start)
            raise GeneratorError(source.error(line, "the generator's edits overlap here (a bug)"))
        out.append(source.text[position : edit.start])
        out.append(edit.text)
        position = edit.end
    out.append(source.text[position:])
    return "".join(out)


# -- the rewrite ---------------------------------------------------------------------------------


def _is_async_test(test: ast.expr) -> bool | None:
    """True for ``ASYNC``, False for ``not ASYNC``, None for any other test."""
    if isinstance(test, ast.Name) and test.id == "ASYNC":
        return True
    if (
        isinstance(test, ast.UnaryOp)
        and isinstance(test.op, ast.Not)
        and isinstance(test.operand, ast.Name)
        and test.operand.id == "ASYNC"
    ):
        return False
    return None


def _async_only(name: str) -> bool:
    """Whether an identifier, once renamed, still names an API only the async face has."""
    renamed = RENAMES.get(name, name)
    return (
        renamed in ASYNC_NAMES
        or renamed in ASYNC_MODULES
        or ASYNC_CLASSES.search(renamed) is not None
    )


def _stmt_first_line(stmt: ast.stmt) -> int:
    decorators: list[ast.expr] = getattr(stmt, "decorator_list", [])
    return min([stmt.lineno, *(d.lineno for d in decorators)])


class Rewriter:
    """Collect the edits and refusals for one source."""

    def __init__(self, source: Source) -> None:
        self.src = source
        self.edits: list[Edit] = []
        self.errors: list[str] = []
        self.parents: dict[int, ast.AST] = {}
        self.bodies: dict[int, list[ast.stmt]] = {}  # statement -> the list it sits in
        self.removed: list[tuple[ast.stmt, int, int]] = []  # whole statements, their lines
        for node in ast.walk(source.tree):
            for _, value in ast.iter_fields(node):
                if isinstance(value, list):
                    for child in value:
                        if isinstance(child, ast.AST):
                            self.parents[id(child)] = node
                        if isinstance(child, ast.stmt):
                            self.bodies[id(child)] = value
                elif isinstance(value, ast.AST):
                    self.parents[id(value)] = node

    def run(self) -> str:
        kept = list(self._kept(self.src.tree, in_branch=False))
        for node in kept:
            self._check(node)
            self._rewrite_node(node)
        self._rewrite_tokens()
        self._remove_statements()
        if self.errors:
            raise GeneratorError("\n".join(self.errors))
        return apply_edits(self.src, self.edits)

    # The kept code: every node except the async branches of ``if ASYNC:`` (and their tests).
    def _kept(self, node: ast.AST, *, in_branch: bool) -> Iterator[ast.AST]:
        if isinstance(node, ast.If) and (keep_else := _is_async_test(node.test)) is not None:
            if in_branch:
                self.errors.append(
                    self.src.error(node, "an `if ASYNC:` inside another one's kept branch")
                )
                return
            branch = self._branch(node, keep_else=keep_else)
            for stmt in branch:
                yield from self._kept(stmt, in_branch=True)
            return
        yield node
        for child in ast.iter_child_nodes(node):
            yield from self._kept(child, in_branch=in_branch)

    def _branch(self, node: ast.If, *, keep_else: bool) -> list[ast.stmt]:
        """Edits turning ``if ASYNC:`` into its kept branch; return that branch."""
        src = self.src
        start = src.starts[_stmt_first_line(node) - 1]
        line_end = src.starts[node.end_lineno or node.lineno]
        col = src.col(node)
        head = src.token_at(src.start(node))
        if head is None or head.string != "if":
            self.errors.append(src.error(node, "`elif ASYNC:` is not supported; nest an `if`"))
            return []
        else_tok = None
        if node.orelse:
            else_tok = src.next_token(src.end(node.body[-1]), ("else", "elif"), col)
        branch = node.orelse if keep_else else node.body
        if not branch:
            self.removed.append((node, start, line_end))
            return []
        if else_tok is not None and else_tok.string == "elif":
            if not keep_else:
                self.errors.append(
                    src.error(node, "`if not ASYNC:` with an `elif` is not supported")
                )
                return []
            elif_line = else_tok.start[0]
            self.edits.append(Edit(start, src.starts[elif_line - 1], "", region=True))
            at = src.offset(*else_tok.start)
            self.edits.append(Edit(at, at + 4, "if"))
            return branch
        header_line = else_tok.start[0] if keep_else and else_tok else node.lineno
        if _stmt_first_line(branch[0]) == header_line:
            self.errors.append(
                src.error(
                    node, "an `if ASYNC:` branch on its header's line; put it on its own line"
                )
            )
            return []
        self.edits.append(Edit(start, src.starts[header_line], "", region=True))
        last = branch[-1].end_lineno or header_line
        if not keep_else and else_tok is not None:
            self.edits.append(Edit(src.starts[else_tok.start[0] - 1], line_end, "", region=True))
            last = else_tok.start[0] - 1
        depth = src.col(branch[0]) - col
        for line in range(header_line + 1, last + 1):
            if line in src.in_string:
                continue
            text = src.line_text(line)
            cut = min(depth, len(text) - len(text.lstrip(" ")))
            if cut:
                self.edits.append(Edit(src.starts[line - 1], src.starts[line - 1] + cut, ""))
        return branch

    def _remove_statements(self) -> None:
        """Delete the removed statements' lines; a block left empty keeps a ``pass``."""
        gone = {id(node) for node, _, _ in self.removed}
        for node, start, end in self.removed:
            body = self.bodies.get(id(node), [])
            emptied = not isinstance(self.parents.get(id(node)), ast.Module) and all(
                id(stmt) in gone for stmt in body
            )
            text = " " * self.src.col(node) + "pass\n" if emptied and body[0] is node else ""
            self.edits.append(Edit(start, end, text, region=True))

    # -- refusals --------------------------------------------------------------------------------

    def _refuse(self, node: ast.AST, what: str) -> None:
        self.errors.append(
            self.src.error(
                node,
                f"`{what}` is async-only and has no sync twin: give it one (RENAMES in "
                "tools/async_to_sync.py, a twin in awaitdb/_compat.py) or put it under `if ASYNC:`",
            )
        )

    def _check(self, node: ast.AST) -> None:
        parent = self.parents.get(id(node))
        names: list[str] = []
        if isinstance(node, ast.Name):
            if node.id == "ASYNC":
                self.errors.append(self.src.error(node, "`ASYNC` is only allowed as an `if` test"))
                return
            if node.id in ASYNC_MODULES:
                attr = f".{parent.attr}" if isinstance(parent, ast.Attribute) else ""
                self._refuse(node, node.id + attr)
                return
            if node.id == AWAITABLE and isinstance(parent, ast.Subscript) and parent.value is node:
                return
            names.append(node.id)
        elif isinstance(node, ast.Attribute):
            if node.attr == AWAITABLE and isinstance(parent, ast.Subscript):
                return
            names.append(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.arg | ast.keyword) and node.arg is not None:
            names.append(node.arg)
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in ASYNC_MODULES:
                self._refuse(node, f"from {node.module} import ...")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name.split(".")[0] in ASYNC_MODULES:
                    self._refuse(node, f"import {alias.name} as {alias.asname}")
        elif isinstance(node, ast.Await) and self._in_fstring(node):
            self.errors.append(self.src.error(node, "`await` inside an f-string; bind it first"))
        for name in names:
            if _async_only(name):
                self._refuse(node, name)

    def _in_fstring(self, node: ast.AST) -> bool:
        parent = self.parents.get(id(node))
        while parent is not None:
            if isinstance(parent, ast.JoinedStr):
                return True
            parent = self.parents.get(id(parent))
        return False

    # -- node edits ------------------------------------------------------------------------------

    def _rewrite_node(self, node: ast.AST) -> None:
        src = self.src
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = _docstring(node)
            if doc is not None:
                self._replace_with(doc, sync_prose(src.text[src.start(doc) : src.end(doc)]))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            self._rename_annotation(node.returns)
        elif isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            self._rename_annotation(node.annotation)
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named_all = any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)
            if named_all and isinstance(node.value, ast.List | ast.Tuple):
                for element in node.value.elts:
                    self._rename_quoted(element)
        elif isinstance(node, ast.JoinedStr) and not self._in_fstring(node):
            self._rename_in_fstring(node)
        elif isinstance(node, ast.Subscript):
            value = node.value
            name = value.id if isinstance(value, ast.Name) else getattr(value, "attr", None)
            if name == AWAITABLE:  # Awaitable[T] -> T
                self.edits.append(Edit(src.start(node), src.start(node.slice), "", region=True))
                self.edits.append(Edit(src.end(node.slice), src.end(node), "", region=True))
        elif isinstance(node, ast.ListComp | ast.SetComp):
            self._identity_comprehension(node)
        elif isinstance(node, ast.ImportFrom):
            self._rename_module(node)
            self._clean_import(node)

    def _replace_with(self, node: ast.expr, text: str) -> None:
        start, end = self.src.start(node), self.src.end(node)
        if self.src.text[start:end] != text:
            self.edits.append(Edit(start, end, text))

    def _rename_quoted(self, node: ast.AST) -> None:
        """Rename a plain one-piece string literal that is code (``__all__``, annotations)."""
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            return
        start, end = self.src.start(node), self.src.end(node)
        raw = self.src.text[start:end]
        quote = raw[-1]
        if raw[0] != quote or raw[1:-1] != node.value:
            return  # prefixed, escaped, triple-quoted or joined: not a plain name
        renamed = _rename_code(node.value)
        if renamed != node.value:
            self.edits.append(Edit(start, end, quote + renamed + quote))

    def _rename_annotation(self, annotation: ast.expr) -> None:
        for node in ast.walk(annotation):
            self._rename_quoted(node)

    def _rename_in_fstring(self, node: ast.JoinedStr) -> None:
        src = self.src
        for inner in ast.walk(node):
            if isinstance(inner, ast.Name):
                name, end = inner.id, src.end(inner)
            elif isinstance(inner, ast.Attribute):
                name, end = inner.attr, src.end(inner)
            elif isinstance(inner, ast.keyword | ast.arg):
                name = inner.arg or ""
                if name in RENAMES:
                    self.errors.append(src.error(node, f"rename `{name}` outside the f-string"))
                continue
            else:
                continue
            if name not in RENAMES:
                continue
            start = end - len(name)
            if src.text[start:end] != name:
                self.errors.append(src.error(node, f"cannot locate `{name}` in this f-string"))
                continue
            self.edits.append(Edit(start, end, RENAMES[name]))

    def _identity_comprehension(self, node: ast.ListComp | ast.SetComp) -> None:
        """``[x async for x in it]`` -> ``list(it)`` (the sync ``[x for x in it]`` is C416)."""
        if len(node.generators) != 1:
            return
        gen = node.generators[0]
        if not (
            gen.is_async
            and not gen.ifs
            and isinstance(node.elt, ast.Name)
            and isinstance(gen.target, ast.Name)
            and node.elt.id == gen.target.id
        ):
            return
        src = self.src
        call = "list(" if isinstance(node, ast.ListComp) else "set("
        self.edits.append(Edit(src.start(node), src.start(gen.iter), call, region=True))
        self.edits.append(Edit(src.end(gen.iter), src.end(node), ")", region=True))

    def _rename_module(self, node: ast.ImportFrom) -> None:
        """``from .._async.database import`` -> ``from .._sync.database import`` (dotted keys)."""
        if node.module is None or "." not in node.module or node.module not in RENAMES:
            return
        src = self.src
        index = bisect.bisect_left(src.token_starts, src.start(node)) + 1  # after ``from``
        while src.tokens[index].type != tokenize.NAME:
            index += 1  # the leading dots of a relative import
        first = index
        while src.tokens[index + 1].string != "import":
            index += 1
        start, end = src.token_starts[first], src.offset(*src.tokens[index].end)
        if "".join(src.text[start:end].split()) != node.module:
            self.errors.append(src.error(node, f"cannot locate module {node.module!r} here"))
            return
        self.edits.append(Edit(start, end, RENAMES[node.module], region=True))

    def _clean_import(self, node: ast.ImportFrom) -> None:
        """Drop ``ASYNC``, ``Awaitable`` and names a rename made duplicate from an import."""
        src = self.src
        seen: set[str] = set()
        drop: list[bool] = []
        for alias in node.names:
            bound = alias.asname or RENAMES.get(alias.name, alias.name)
            drop.append(alias.name in ("ASYNC", AWAITABLE) or bound in seen)
            seen.add(bound)
        if not any(drop):
            return
        if all(drop):
            self._remove_statement(node)
            return
        names = node.names
        last_kept = max(i for i, gone in enumerate(drop) if not gone)
        for i, gone in enumerate(drop):
            if gone and i < last_kept:
                start, end = src.start(names[i]), src.start(names[i + 1])
                self.edits.append(Edit(start, end, "", region=True))
        if last_kept < len(names) - 1:
            start, end = src.end(names[last_kept]), src.end(names[-1])
            self.edits.append(Edit(start, end, "", region=True))

    def _remove_statement(self, node: ast.stmt) -> None:
        src = self.src
        start, end = src.start(node), src.end(node)
        line_start = src.starts[node.lineno - 1]
        line_end = src.starts[node.end_lineno or node.lineno]
        rest = src.text[end:line_end].strip()
        if src.text[line_start:start].strip() or (rest and not rest.startswith("#")):
            self.errors.append(src.error(node, "this import shares its line; give it its own"))
            return
        self.removed.append((node, line_start, line_end))

    # -- token edits -----------------------------------------------------------------------------

    def _rewrite_tokens(self) -> None:
        src = self.src
        for index, tok in enumerate(src.tokens):
            start = src.token_starts[index]
            end = src.offset(*tok.end)
            if tok.type == tokenize.NAME:
                if tok.string in ("async", "await"):
                    after = src.tokens[index + 1]
                    if after.start[0] == tok.start[0]:
                        end = src.token_starts[index + 1]
                    self.edits.append(Edit(start, end, ""))
                elif tok.string in RENAMES:
                    self.edits.append(Edit(start, end, RENAMES[tok.string]))
            elif tok.type == tokenize.COMMENT:
                text = sync_prose(tok.string)
                if text != tok.string:
                    self.edits.append(Edit(start, end, text))


def _docstring(
    node: ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef,
) -> ast.expr | None:
    if node.body and isinstance(first := node.body[0], ast.Expr):
        value = first.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value
    return None


def _rename_code(text: str) -> str:
    """Rename the identifiers of a one-line piece of code (a quoted annotation, a name)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text
    out, position = [], 0
    for tok in tokens:
        if tok.type == tokenize.NAME and tok.string in RENAMES and tok.start[0] == 1:
            out.append(text[position : tok.start[1]] + RENAMES[tok.string])
            position = tok.end[1]
    return "".join(out) + text[position:]


def rewrite(text: str, name: str = "<source>") -> str:
    """The sync twin of one async source, before formatting; raises ``GeneratorError``."""
    result = Rewriter(Source(text, name)).run()
    _verify(result, name)
    return result


def _verify(text: str, name: str) -> None:
    """A last look at the output: no async construct may have slipped through."""
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise GeneratorError(f"{name}: the sync twin is not valid Python ({exc}): a bug") from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.Await | ast.AsyncFunctionDef | ast.AsyncWith | ast.AsyncFor) or (
            isinstance(node, ast.comprehension) and node.is_async
        ):
            raise GeneratorError(
                f"{name}: the sync twin still has {type(node).__name__} "
                f"(generated line {getattr(node, 'lineno', '?')}): a bug"
            )


# -- formatting and pins -------------------------------------------------------------------------


def pinned_ruff(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The exact ruff version the ``dev`` extra pins."""
    project = tomllib.loads(pyproject.read_text())["project"]
    for requirement in project["optional-dependencies"]["dev"]:
        match = re.fullmatch(r"ruff\s*(\S*)", requirement)
        if match:
            pin = re.fullmatch(r"==\s*([\w.]+)", match.group(1))
            if pin is None:
                raise GeneratorError(
                    f"pyproject.toml: pin ruff exactly (ruff==X.Y.Z), not {requirement!r}"
                )
            return pin.group(1)
    raise GeneratorError("pyproject.toml: the dev extra has no ruff==X.Y.Z pin")


def pin_problems(python: tuple[int, int], ruff: str, ruff_pin: str) -> list[str]:
    """Why this interpreter and ruff may not generate the sync face (empty when they may)."""
    problems = []
    if python != PYTHON:
        want = ".".join(map(str, PYTHON))
        have = ".".join(map(str, python))
        problems.append(
            f"tools/async_to_sync.py runs on Python {want} only (its edits rely on that "
            f"version's ast and tokenize positions); this is Python {have}: use a {want} venv "
            "(scripts/bootstrap)"
        )
    if ruff != ruff_pin:
        problems.append(
            f"tools/async_to_sync.py formats with ruff {ruff_pin} (pinned in pyproject.toml's "
            f"dev extra); this environment has ruff {ruff or 'missing'}: run scripts/bootstrap"
        )
    return problems


def _ruff_version() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "--version"], capture_output=True, text=True, check=False
    )
    return result.stdout.split()[-1] if result.returncode == 0 and result.stdout else ""


@cache
def current_pin_problems() -> tuple[str, ...]:
    """``pin_problems`` for this interpreter and the ruff installed beside it."""
    python = (sys.version_info.major, sys.version_info.minor)
    return tuple(pin_problems(python, _ruff_version(), pinned_ruff()))


def require_pins() -> None:
    """Refuse to generate with another Python minor or another ruff than the pinned ones."""
    problems = current_pin_problems()
    if problems:
        raise GeneratorError("\n".join(problems))


def _ruff(args: list[str], text: str, filename: str) -> str:
    cmd = [sys.executable, "-m", "ruff", *args, "--stdin-filename", filename, "-"]
    result = subprocess.run(cmd, input=text, capture_output=True, text=True, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise GeneratorError(f"{filename}: ruff {args[0]} failed:\n{result.stderr}")
    return result.stdout


def convert(text: str, source_name: str, target_name: str = "generated.py") -> str:
    """The generated file for one source: header, rewrite, ruff format and import fixes."""
    require_pins()
    body = rewrite(text, source_name)
    out = HEADER.format(source=source_name) + "\n" + body
    formatted = _ruff(["format"], out, target_name)
    fixed = _ruff(["check", "--fix-only", "--quiet", "--select", "I,F401"], formatted, target_name)
    return formatted if fixed == formatted else _ruff(["format"], fixed, target_name)


# -- the files -----------------------------------------------------------------------------------


def pairs(root: Path = ROOT) -> list[tuple[Path, Path]]:
    """Every (source, generated) pair ``PAIRS`` describes."""
    found = []
    for source_glob, target_glob in PAIRS:
        if "*" not in source_glob:
            if (root / source_glob).exists():
                found.append((root / source_glob, root / target_glob))
            continue
        prefix, suffix = source_glob.split("*")
        for src in sorted(root.glob(source_glob)):
            rel = src.relative_to(root).as_posix()
            stem = rel[len(prefix) : len(rel) - len(suffix)]
            found.append((src, root / target_glob.replace("*", stem)))
    return found


def orphans(root: Path = ROOT) -> list[Path]:
    """Generated files (they carry the header) whose source is gone."""
    expected = {target for _, target in pairs(root)}
    found = []
    for _, target_glob in PAIRS:
        for path in sorted(root.glob(target_glob)):
            if path in expected or not path.is_file():
                continue
            with path.open() as f:
                if f.readline().rstrip("\n") == HEADER_MARK:
                    found.append(path)
    return found


def run(root: Path = ROOT, *, check: bool = False) -> int:
    """Generate (or with ``check`` verify) every pair under ``root``; 0 when all is well."""
    stale: list[Path] = []
    errors: list[str] = []
    for src, dst in pairs(root):
        try:
            expected = convert(
                src.read_text(), src.relative_to(root).as_posix(), dst.relative_to(root).as_posix()
            )
        except GeneratorError as exc:
            errors.append(str(exc))
            continue
        current = dst.read_text() if dst.exists() else ""
        if current == expected:
            continue
        if check:
            stale.append(dst)
            diff = difflib.unified_diff(
                current.splitlines(), expected.splitlines(), str(dst), "expected", lineterm=""
            )
            print("\n".join(list(diff)[:40]))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(expected)
            print(f"wrote {dst.relative_to(root)}")
    for orphan in orphans(root):
        rel = orphan.relative_to(root)
        if check:
            stale.append(orphan)
            print(f"orphaned generated file: {rel} (its source is gone)")
        else:
            orphan.unlink()
            print(f"removed {rel}: a generated file whose source is gone")
    if errors:
        print("\n".join(errors), file=sys.stderr)
        print("the sync face was not generated: fix the source lines above", file=sys.stderr)
        return 1
    if stale:
        names = ", ".join(str(p.relative_to(root)) for p in stale)
        print(f"stale or orphaned generated files: {names}\nrun: python tools/async_to_sync.py")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if a generated file is stale or orphaned"
    )
    args = parser.parse_args(argv)
    try:
        require_pins()
    except GeneratorError as exc:
        print(exc, file=sys.stderr)
        return 2
    return run(check=args.check)


if __name__ == "__main__":
    raise SystemExit(main())
