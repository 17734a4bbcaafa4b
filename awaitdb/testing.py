"""pytest support: fail a test whose event loop stalled, naming the code that blocked it.

Installed as a pytest plugin (entry point ``pytest11``), so nothing needs importing::

    @pytest.mark.loop_stall(threshold_ms=50)    # fail if the loop stalls > 50 ms
    async def test_checkout(client): ...

    async def test_report(no_loop_stall): ...    # the fixture, with the default threshold

The default threshold is 100 ms; set ``awaitdb_loop_stall_ms`` in the ini file to change it.
The failure message gives each stall's length and the innermost application frame.
Async fixtures need pytest-asyncio (the fixture is declared through it when it is installed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ._monitor import LoopMonitor, Stall

__all__ = ["MONITOR_KEY", "no_loop_stall", "stall_report"]

MONITOR_KEY = pytest.StashKey[LoopMonitor]()

_async_fixture: Callable[[Callable[..., Any]], Any]
try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio, pytest's own (anyio's plugin)
    _async_fixture = pytest.fixture


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "awaitdb_loop_stall_ms",
        "event-loop stall (ms) beyond which the no_loop_stall fixture fails a test",
        default="100",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "loop_stall(threshold_ms=100): fail the test if its event loop stalls longer than "
        "threshold_ms, naming the blocking frame (awaitdb)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("loop_stall") is not None:
            names: list[str] | None = getattr(item, "fixturenames", None)
            if names is not None and "no_loop_stall" not in names:
                names.insert(0, "no_loop_stall")


def _threshold(request: pytest.FixtureRequest) -> float:
    marker = request.node.get_closest_marker("loop_stall")
    if marker is not None:
        value = marker.kwargs.get("threshold_ms", marker.args[0] if marker.args else None)
        if value is not None:
            return float(value)
    return float(request.config.getini("awaitdb_loop_stall_ms"))


@_async_fixture
async def no_loop_stall(request: pytest.FixtureRequest) -> AsyncIterator[LoopMonitor]:
    """A ``LoopMonitor`` around the test; the test fails if the loop stalled past the threshold."""
    monitor = LoopMonitor(_threshold(request), log=False)
    monitor.start()
    request.node.stash[MONITOR_KEY] = monitor
    try:
        yield monitor
    finally:
        monitor.stop()


def stall_report(stalls: list[Stall], threshold_ms: float) -> str:
    """The failure text: one line per stall, then the worst stall's application stack."""
    lines = [f"the event loop stalled {len(stalls)} time(s) beyond {threshold_ms:g} ms:"]
    lines += [f"  {s.duration_ms:.1f} ms in {s.blocker.where}" for s in stalls]
    worst = max(stalls, key=lambda s: s.duration_ms)
    if worst.blocker.stack:
        lines.append("stack of the longest stall (innermost first):")
        lines += [f"  {frame}" for frame in worst.blocker.stack[:15]]
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    monitor = item.stash.get(MONITOR_KEY, None)
    if monitor is None or call.when != "call" or report.failed:
        return report
    monitor.collect()
    if monitor.stalls:
        report.outcome = "failed"
        report.longrepr = stall_report(list(monitor.stalls), monitor.threshold_ms)
    return report
