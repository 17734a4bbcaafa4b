"""The async pool's one deadline timer: each waiter times out at its own deadline, in any order.

The pool is generic (it lends whatever its opener makes); these tests lend plain tokens, so
they pin the pool's own bookkeeping. The database paths are covered by the PostgreSQL and
SQLite suites.
"""

from __future__ import annotations

import asyncio

import pytest

from awaitdb import PoolTimeout
from awaitdb._async.pool import Pool
from awaitdb._stats import Stats


def _pool(size: int = 1) -> Pool[object]:
    return Pool("test", stats=Stats(None), max_size=size, acquire_timeout=30.0,
                items=[object() for _ in range(size)])  # fmt: skip


async def test_each_waiter_times_out_at_its_own_deadline() -> None:
    pool = _pool()
    token = await pool.acquire()
    long = asyncio.create_task(pool.acquire(30.0))
    await asyncio.sleep(0)
    short = asyncio.create_task(pool.acquire(0.05))  # joins after, times out before
    middle = asyncio.create_task(pool.acquire(0.2))
    with pytest.raises(PoolTimeout):
        await short
    assert not middle.done() or isinstance(middle.exception(), PoolTimeout)
    with pytest.raises(PoolTimeout):
        await middle
    assert not long.done()  # an earlier deadline never fails a later one
    assert pool.gauges()["waiting"] == 1
    pool.release(token)
    assert await long is token
    assert pool._stats.acquire_timeouts == 2
    pool.close()
    assert pool._timer is None


async def test_timer_rearms_for_waiters_that_join_later() -> None:
    pool = _pool()
    token = await pool.acquire()
    first = asyncio.create_task(pool.acquire(0.05))
    await asyncio.sleep(0)
    with pytest.raises(PoolTimeout):
        await first
    second = asyncio.create_task(pool.acquire(0.05))  # the timer is idle now: armed again
    with pytest.raises(PoolTimeout):
        await second
    assert pool.gauges()["waiting"] == 0
    pool.release(token)
    assert await pool.acquire(0.05) is token


async def test_cancelled_and_served_waiters_leave_the_timer_consistent() -> None:
    pool = _pool()
    token = await pool.acquire()
    cancelled = asyncio.create_task(pool.acquire(0.05))
    served = asyncio.create_task(pool.acquire(0.05))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    pool.release(token)  # skips the cancelled waiter: FIFO among live ones
    assert await served is token
    await asyncio.sleep(0.1)  # the stale timer fires with nobody waiting: nothing happens
    assert pool.gauges() == {"size": 1, "max_size": 1, "idle": 0, "in_use": 1, "waiting": 0}
    pool.release(token)
    assert await pool.acquire(0.05) is token
    assert pool._stats.acquire_timeouts == 0


async def test_zero_timeout_fails_at_once_and_fifo_holds() -> None:
    pool = _pool()
    token = await pool.acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        got = await pool.acquire(30.0)
        order.append(i)
        pool.release(got)

    tasks = []
    for i in range(10):
        tasks.append(asyncio.create_task(wait(i)))
        await asyncio.sleep(0)
    with pytest.raises(PoolTimeout):
        await pool.acquire(0)
    pool.release(token)
    await asyncio.gather(*tasks)
    assert order == list(range(10))


async def test_an_interrupted_checkout_check_keeps_the_item() -> None:
    calls = 0

    def checker(item: object) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyboardInterrupt  # Ctrl-C lands while the idle item is being checked
        return True

    token = object()
    pool: Pool[object] = Pool("test", stats=Stats(None), max_size=1, acquire_timeout=1.0,
                              checker=checker, items=[token])  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        pool.try_acquire()
    assert pool.gauges()["idle"] == 1  # not lost: the next caller gets it
    assert await pool.acquire() is token
