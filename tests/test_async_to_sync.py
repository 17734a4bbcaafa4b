"""The sync generator (tools/async_to_sync.py), rule by rule, on small sources.

Each test feeds source text through the generator and asserts the sync text it gives back, or
the error it refuses with. ``--check`` on the real tree stays the CI gate (``test_units.py``).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("async_to_sync", ROOT / "tools/async_to_sync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("async_to_sync", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


a2s = _load()
# Generating needs the pinned Python and ruff; elsewhere the gate's ``--check`` says so loudly.
pinned = pytest.mark.skipif(
    bool(a2s.current_pin_problems()), reason="; ".join(a2s.current_pin_problems())
)


def sync(source: str) -> str:
    """The sync twin of a dedented snippet, before formatting."""
    return str(a2s.rewrite(textwrap.dedent(source), "src.py"))


def refused(source: str) -> str:
    with pytest.raises(a2s.GeneratorError) as info:
        a2s.rewrite(textwrap.dedent(source), "src.py")
    return str(info.value)


# -- comments and prose ----------------------------------------------------------------------------


def test_comments_survive_where_they_were() -> None:
    out = sync(
        """\
        # a leading comment
        async def f(db):  # noqa: ARG001 - trailing
            # inside
            return await db.fetch_all(  # noqa: E501
                "SELECT 1"
                " FROM t"  # a joined string stays joined
            )
        """
    )
    assert out == textwrap.dedent(
        """\
        # a leading comment
        def f(db):  # noqa: ARG001 - trailing
            # inside
            return db.fetch_all(  # noqa: E501
                "SELECT 1"
                " FROM t"  # a joined string stays joined
            )
        """
    )


def test_docstrings_and_comments_tell_sync_users_what_to_write() -> None:
    out = sync(
        '''\
        async def f(db):
            """Use ``await db.fetch_all(...)`` in ``async for`` loops and ``async with`` blocks.

            An async iterator; an async context manager. Callers await the lock.
            """
            # await db.close() when done; async with db.transaction() as tx
            return 1
        '''
    )
    assert "Use ``db.fetch_all(...)`` in ``for`` loops and ``with`` blocks." in out
    assert "An iterator; a context manager. Callers await the lock." in out  # prose stays
    assert "# db.close() when done; with db.transaction() as tx" in out


def test_prose_contrasting_the_two_faces_stays_as_written() -> None:
    text = "A ``.py`` migration has ``async def up`` or ``def up``; use ``async with tx``."
    assert a2s.sync_prose(text) == (
        "A ``.py`` migration has ``async def up`` or ``def up``; use ``with tx``."
    )
    assert a2s.sync_prose("`await db.close()` then await the lock") == (
        "`db.close()` then await the lock"
    )


# -- renames -------------------------------------------------------------------------------------


def test_renames_touch_identifiers_never_string_literals() -> None:
    out = sync(
        """\
        from .database import Database

        async def f(db: Database) -> str:
            label = "Database aclose Rows"
            other = 'aclose'
            text = f"{Database.__name__}: Database, {db.aclose} aclose"
            await db.aclose()
            return label + other + text
        """
    )
    assert "from .database import SyncDatabase" in out
    assert "def f(db: SyncDatabase) -> str:" in out
    assert 'label = "Database aclose Rows"' in out
    assert "other = 'aclose'" in out
    assert 'text = f"{SyncDatabase.__name__}: Database, {db.close} aclose"' in out
    assert "    db.close()" in out


def test_names_in_all_and_quoted_annotations_are_code_and_renamed() -> None:
    out = sync(
        """\
        __all__ = ["Database", 'open_database', "helper"]

        def helper(x: "Database") -> "list[Rows]":
            return []
        """
    )
    assert '__all__ = ["SyncDatabase", \'open_database_sync\', "helper"]' in out
    assert 'def helper(x: "SyncDatabase") -> "list[SyncRows]":' in out


# -- async syntax --------------------------------------------------------------------------------


def test_async_syntax_and_types_become_their_sync_twins() -> None:
    out = sync(
        """\
        from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

        from .._compat import ASYNC, asleep


        class R:
            async def __aenter__(self) -> R:
                return self

            def __aiter__(self) -> AsyncIterator[int]:
                raise StopAsyncIteration


        async def g(r: R, hooks: list[Callable[[], Awaitable[None]]]) -> Iterator[int]:
            async with r:
                async for x in r:
                    await asleep(x)
            return [x async for x in r], [x + 1 async for x in (await r)], {y async for y in r}
        """
    )
    assert out == textwrap.dedent(
        """\
        from collections.abc import Iterator, Callable

        from .._compat import sleep


        class R:
            def __enter__(self) -> R:
                return self

            def __iter__(self) -> Iterator[int]:
                raise StopIteration


        def g(r: R, hooks: list[Callable[[], None]]) -> Iterator[int]:
            with r:
                for x in r:
                    sleep(x)
            return list(r), [x + 1 for x in (r)], set(r)
        """
    )


def test_an_import_left_empty_goes_and_an_emptied_block_gets_pass() -> None:
    out = sync(
        """\
        from collections.abc import Awaitable
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from .._compat import ASYNC

        def f() -> None:
            if ASYNC:
                print("async")
        """
    )
    assert out == textwrap.dedent(
        """\
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            pass

        def f() -> None:
            pass
        """
    )


# -- if ASYNC: -----------------------------------------------------------------------------------


def test_if_async_becomes_its_else_branch_dedented() -> None:
    out = sync(
        '''\
        async def f(x):
            if ASYNC:  # only the async face
                import asyncio

                await asyncio.sleep(0)
            else:  # the sync face
                # sleeps in the thread
                sleep(0)

                text = """
            a string's lines are kept as they are
        """
            return x
        '''
    )
    assert out == textwrap.dedent(
        '''\
        def f(x):
            # sleeps in the thread
            sleep(0)

            text = """
            a string's lines are kept as they are
        """
            return x
        '''
    )


def test_if_not_async_keeps_its_body_and_elif_becomes_if() -> None:
    out = sync(
        """\
        if not ASYNC:
            a()
        else:
            b()
        if ASYNC:
            c()
        elif x:
            d()
        else:
            e()
        """
    )
    assert out == "a()\nif x:\n    d()\nelse:\n    e()\n"


def test_a_block_all_of_whose_statements_go_keeps_one_pass() -> None:
    out = sync(
        """\
        def f() -> None:
            if ASYNC:
                a()
            from typing import Awaitable
            if ASYNC:
                b()
        """
    )
    assert out == "def f() -> None:\n    pass\n"


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "async def f():\n    async with asyncio.timeout(1):\n        pass\n",
            "src.py:2: `asyncio.timeout` is async-only",
        ),
        ("async def f():\n    await asyncio.sleep(1)\n", "src.py:2: `asyncio.sleep` is async-only"),
        ("import asyncio\n\nloop = asyncio.get_running_loop()\n", "src.py:3: `asyncio.get_"),
        ("from asyncio import timeout\n", "src.py:1: `from asyncio import ...`"),
        ("from typing import AsyncIterable\n\nx: AsyncIterable[int]\n", "src.py:3: `AsyncIter"),
        ("async def f(c):\n    return await anext(c)\n", "src.py:2: `anext` is async-only"),
        ("@asynccontextmanager\ndef f(): ...\n", "src.py:1: `asynccontextmanager` is"),
        ("def f() -> Coroutine[None, None, int]: ...\n", "src.py:1: `Coroutine` is async-only"),
        ("import asyncpg\n\nasyncpg.connect()\n", "src.py:3: `asyncpg.connect` is async-only"),
        ("hook: Awaitable = f()\n", "src.py:1: `Awaitable` is async-only"),
        ("x = 1 if ASYNC else 2\n", "src.py:1: `ASYNC` is only allowed as an `if` test"),
        ('async def f(g):\n    return f"{await g()}"\n', "src.py:2: `await` inside an f-string"),
        ("if x:\n    pass\nelif ASYNC:\n    pass\n", "src.py:3: `elif ASYNC:` is not supported"),
        ("if ASYNC:\n    a()\nelse:\n    if ASYNC:\n        b()\n", "src.py:4: an `if ASYNC:`"),
        ("if ASYNC:\n    a()\nelse: b()\n", "src.py:1: an `if ASYNC:` branch on its header"),
    ],
)
def test_leftover_async_constructs_are_refused_with_file_and_line(
    source: str, message: str
) -> None:
    assert message in refused(source)


def test_names_that_merely_mention_async_are_not_refused() -> None:
    source = """\
        async_step = "async def up(tx): ..."
        awaitdb = async_step
        if inspect.iscoroutinefunction(step):  # the sync face refuses an async step
            raise TypeError(awaitdb)
        """
    assert sync(source) == textwrap.dedent(source)


def test_a_dotted_module_in_renames_is_renamed_in_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(a2s.RENAMES, "_async.database", "_sync.database")
    out = sync("from .._async.database import Database\nfrom .._async.rows import Rows\n")
    assert out == "from .._sync.database import SyncDatabase\nfrom .._async.rows import SyncRows\n"


def test_async_only_code_is_welcome_under_if_async() -> None:
    out = sync(
        """\
        async def f(g):
            if ASYNC:
                async with asyncio.timeout(1):
                    await asyncio.sleep(0)
                hook: Awaitable = g()
            return 1
        """
    )
    assert out == "def f(g):\n    return 1\n"


# -- the files -----------------------------------------------------------------------------------


HEADER = "# WARNING: generated by tools/async_to_sync.py; DO NOT EDIT.\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pinned
def test_orphaned_generated_files_fail_check_and_are_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        tmp_path / "awaitdb/_async/kept.py", '"""Kept."""\n\n\nasync def f() -> None:\n    pass\n'
    )
    _write(tmp_path / "awaitdb/_sync/kept.py", HEADER + "stale\n")
    _write(tmp_path / "awaitdb/_sync/gone.py", HEADER + "x = 1\n")
    _write(tmp_path / "awaitdb/_sync/handwritten.py", "x = 1\n")
    _write(tmp_path / "tests/conformance/test_old_sync.py", HEADER + "x = 1\n")
    gone = [tmp_path / "awaitdb/_sync/gone.py", tmp_path / "tests/conformance/test_old_sync.py"]
    assert a2s.orphans(tmp_path) == gone

    assert a2s.run(tmp_path, check=True) == 1
    out = capsys.readouterr().out
    assert "orphaned generated file: awaitdb/_sync/gone.py" in out
    assert "orphaned generated file: tests/conformance/test_old_sync.py" in out
    assert all(path.exists() for path in gone)  # --check changes nothing

    assert a2s.run(tmp_path) == 0
    out = capsys.readouterr().out
    assert "removed awaitdb/_sync/gone.py" in out
    assert not any(path.exists() for path in gone)
    assert (tmp_path / "awaitdb/_sync/handwritten.py").exists()  # no header: not ours
    assert "def f() -> None:" in (tmp_path / "awaitdb/_sync/kept.py").read_text()
    assert a2s.run(tmp_path, check=True) == 0


@pinned
def test_generated_files_pass_ruff_without_exemptions() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ignores = config["tool"]["ruff"]["lint"].get("per-file-ignores", {})
    exempt = [pattern for pattern in ignores if pattern != "tests/**"]  # all tests, not generated
    generated = [target for _, target in a2s.pairs()]
    for path in generated:
        rel = path.relative_to(ROOT).as_posix()
        assert not [p for p in exempt if fnmatch.fnmatch(rel, p)], (rel, ignores)
    cmd = [sys.executable, "-m", "ruff", "check", "--no-cache", *map(str, generated)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pinned
def test_convert_formats_and_heads_the_output() -> None:
    text = "async def f(db):  # noqa: ARG001\n    return await db.x( 1 )\n"
    out = a2s.convert(text, "awaitdb/_async/x.py", "awaitdb/_sync/x.py")
    assert out.startswith(HEADER + "# Source: awaitdb/_async/x.py\n")
    assert "def f(db):  # noqa: ARG001\n    return db.x(1)\n" in out


def test_pairs_map_globs_and_single_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    single = ("awaitdb/_migrate/runner.py", "awaitdb/_migrate/runner_sync.py")
    monkeypatch.setattr(a2s, "PAIRS", [*(p for p in a2s.PAIRS if p != single), single])
    for name in ("awaitdb/_async/db.py", "tests/conformance/helpers_async.py", single[0]):
        _write(tmp_path / name, "x = 1\n")
    assert a2s.pairs(tmp_path) == [
        (tmp_path / "awaitdb/_async/db.py", tmp_path / "awaitdb/_sync/db.py"),
        (
            tmp_path / "tests/conformance/helpers_async.py",
            tmp_path / "tests/conformance/helpers_sync.py",
        ),
        (tmp_path / single[0], tmp_path / single[1]),
    ]


# -- pins ----------------------------------------------------------------------------------------


def test_python_and_ruff_versions_are_pinned_and_checked(tmp_path: Path) -> None:
    pin = a2s.pinned_ruff()
    assert a2s.pin_problems((3, 11), pin, pin) == []
    (problem,) = a2s.pin_problems((3, 12), pin, pin)
    assert "Python 3.11 only" in problem and "this is Python 3.12" in problem
    (problem,) = a2s.pin_problems((3, 11), "0.6.0", pin)
    assert f"ruff {pin}" in problem and "has ruff 0.6.0" in problem
    assert a2s.current_pin_problems() == tuple(
        a2s.pin_problems(sys.version_info[:2], a2s._ruff_version(), pin)
    )

    loose = tmp_path / "pyproject.toml"
    loose.write_text('[project]\noptional-dependencies = { dev = ["ruff>=0.6"] }\n')
    with pytest.raises(a2s.GeneratorError, match=r"pin ruff exactly \(ruff==X.Y.Z\)"):
        a2s.pinned_ruff(loose)
