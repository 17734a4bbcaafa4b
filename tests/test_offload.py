"""awaitdb.offload: a bounded pool, Overloaded beyond it, contextvars, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import awaitdb
from awaitdb import Offloader, Overloaded, off_loop, offload

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def test_offload_runs_off_the_loop_thread_and_returns() -> None:
    loop_thread = threading.get_ident()
    result = await offload(lambda a, b=0: (threading.get_ident(), a + b), 2, b=3)
    assert result[1] == 5 and result[0] != loop_thread
    with pytest.raises(ZeroDivisionError):
        await offload(lambda: 1 / 0)


async def test_off_loop_decorator_both_spellings() -> None:
    @off_loop
    def double(x: int) -> int:
        return x * 2

    pool = Offloader(max_workers=1, max_queue=1)

    @off_loop(pool=pool, timeout=5)
    def triple(x: int) -> int:
        return x * 3

    assert await double(4) == 8 and double.__name__ == "double"
    assert await triple(4) == 12 and pool.stats().completed == 1
    await pool.aclose()
    with pytest.raises(awaitdb.InterfaceError, match="already async"):

        @off_loop
        async def wrong() -> None: ...


async def test_contextvars_are_copied_into_the_thread() -> None:
    request_id.set("req-42")

    def read_and_set() -> str:
        seen = request_id.get()
        request_id.set("changed-in-thread")  # a copy: the caller's value is untouched
        return seen

    assert await offload(read_and_set) == "req-42"
    assert request_id.get() == "req-42"


async def test_overloaded_beyond_the_queue_limit_and_figures() -> None:
    pool = Offloader(max_workers=1, max_queue=2)
    release = threading.Event()
    try:
        running = asyncio.ensure_future(pool.run(release.wait, 10))
        queued = [asyncio.ensure_future(pool.run(lambda: "q")) for _ in range(2)]
        await asyncio.sleep(0)  # let the three calls be submitted
        with pytest.raises(Overloaded, match="max_queue=2"):
            await pool.run(lambda: "one too many")
        assert isinstance(Overloaded("x"), awaitdb.OperationalError)
        stats = pool.stats()
        assert (stats.running, stats.queued, stats.overloaded) == (1, 2, 1)
        release.set()
        assert await running is True and await asyncio.gather(*queued) == ["q", "q"]
        stats = pool.stats()
        assert (stats.calls, stats.completed, stats.queued, stats.running) == (3, 3, 0, 0)
        assert stats.queue_wait_max_ms > 0 and stats.run_max_ms > 0
        assert set(stats.as_dict()) >= {"queue_wait_p99_ms", "run_p99_ms"}
    finally:
        release.set()
        await pool.aclose()


async def test_timeout_returns_at_once_and_the_thread_is_counted() -> None:
    pool = Offloader(max_workers=1, max_queue=4)
    release = threading.Event()
    try:
        with pytest.raises(TimeoutError, match="did not finish within 0.05 s"):
            await pool.run(release.wait, 10, timeout=0.05)
        stats = pool.stats()
        assert (stats.timeouts, stats.abandoned, stats.running) == (1, 1, 1)
        # a call still queued behind the stuck one is dropped on timeout: it never runs
        ran: list[int] = []
        with pytest.raises(TimeoutError):
            await pool.run(ran.append, 1, timeout=0.05)
        release.set()
        assert await pool.run(lambda: "after") == "after"
        stats = pool.stats()
        assert ran == [] and stats.timeouts == 2 and stats.abandoned == 1
        assert (stats.running, stats.queued, stats.completed) == (0, 0, 2)
    finally:
        release.set()
        await pool.aclose()


async def test_cancellation_returns_at_once() -> None:
    pool = Offloader(max_workers=1, max_queue=1)
    release = threading.Event()
    try:
        task = asyncio.ensure_future(pool.run(release.wait, 10))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = pool.stats()
        assert (stats.cancelled, stats.abandoned, stats.running) == (1, 1, 1)
    finally:
        release.set()
        await pool.aclose()
    assert pool.stats().running == 0
    with pytest.raises(awaitdb.InterfaceError, match="closed"):
        await pool.run(print)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_workers": 0}, "max_workers"), ({"max_queue": -1}, "max_queue")],
)
def test_bad_pool_options_are_named(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(awaitdb.InterfaceError, match=message):
        Offloader(**kwargs)


async def test_bad_calls_are_named() -> None:
    with pytest.raises(awaitdb.InterfaceError, match="callable"):
        await offload(42)  # type: ignore[call-overload]
    with pytest.raises(awaitdb.InterfaceError, match="timeout"):
        await offload(print, timeout=0)


async def test_a_function_raising_stop_iteration_returns_a_runtime_error() -> None:
    def exhausted() -> int:
        return next(iter([]))  # raises StopIteration, which an asyncio future refuses

    pool = Offloader(max_workers=1)
    call = asyncio.ensure_future(pool.run(exhausted))
    try:
        done, _ = await asyncio.wait({call}, timeout=10)  # bounded: it used to never return
        assert done, "offload of a function raising StopIteration never returned"
        with pytest.raises(RuntimeError, match="StopIteration") as info:
            call.result()
        assert isinstance(info.value.__cause__, StopIteration)
        assert pool.stats().failed == 1
    finally:
        call.cancel()
        await pool.aclose()


async def test_offload_refuses_coroutine_functions_and_returned_coroutines() -> None:
    import functools

    async def fetch(x: int) -> int:
        return x

    pool = Offloader(max_workers=1)
    try:
        with pytest.raises(awaitdb.InterfaceError, match="fetch is async"):
            await offload(fetch, 1)
        with pytest.raises(awaitdb.InterfaceError, match="fetch is async"):
            await pool.run(functools.partial(fetch, 1))
        with pytest.raises(awaitdb.InterfaceError, match="returned a coroutine"):
            await pool.run(lambda: fetch(2))  # a plain function handing back a coroutine
        assert pool.stats().calls == 1 and pool.stats().failed == 1
    finally:
        await pool.aclose()
