"""LoopMonitor names the frame that blocked the loop; the pytest plugin fails such a test."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import awaitdb
from awaitdb import LoopMonitor
from awaitdb._monitor import describe_blocker


def blocking_report_renderer() -> None:
    time.sleep(0.4)  # the blocking call the monitor must name


async def test_a_stall_is_logged_once_with_the_application_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="awaitdb")
    async with LoopMonitor(threshold_ms=100) as monitor:
        await asyncio.sleep(0.05)
        blocking_report_renderer()
        await asyncio.sleep(0.1)  # let the late beat run and the watchdog record it
    stats = monitor.stats()
    assert stats.stalls == 1 and stats.lag_max_ms >= 100 and stats.beats > 0
    where = stats.top_blockers[0][0]
    assert where.startswith("blocking_report_renderer (") and f"{__file__}:" in where
    lines = [r.getMessage() for r in caplog.records if "event loop blocked" in r.getMessage()]
    assert len(lines) == 1 and "blocking_report_renderer" in lines[0] and " ms in " in lines[0]
    stall = monitor.stalls[0]
    assert stall.duration_ms >= 100 and stall.blocker.lineno > 0
    assert any("test_a_stall_is_logged" in frame for frame in stall.blocker.stack)


async def test_a_turning_loop_has_no_stall() -> None:
    monitor = LoopMonitor(threshold_ms=2000, interval_ms=5)
    monitor.start()
    try:
        for _ in range(40):
            await asyncio.sleep(0.005)
        assert monitor.running
    finally:
        monitor.stop()
    stats = monitor.stats()
    assert stats.stalls == 0 and stats.beats > 0 and stats.top_blockers == ()
    assert set(stats.as_dict()) >= {"lag_p50_ms", "lag_p99_ms", "lag_max_ms", "stalled_ms"}
    assert not monitor.running
    monitor.stop()  # stopping twice is harmless


def test_the_frame_filter_skips_library_and_stdlib_frames() -> None:
    def inner() -> awaitdb._monitor.Blocker:
        return describe_blocker(sys._getframe())

    blocker = inner()
    assert blocker.function == "inner" and blocker.filename == __file__
    assert describe_blocker(None).filename == "?"


async def test_bad_monitor_use_is_named() -> None:
    with pytest.raises(awaitdb.InterfaceError, match="threshold_ms"):
        LoopMonitor(threshold_ms=0)
    with pytest.raises(awaitdb.InterfaceError, match="interval_ms"):
        LoopMonitor(interval_ms=-1)
    monitor = LoopMonitor().start()
    try:
        with pytest.raises(awaitdb.InterfaceError, match="already running"):
            monitor.start()
    finally:
        monitor.stop()


def test_start_outside_a_loop_is_named() -> None:
    with pytest.raises(awaitdb.InterfaceError, match="running loop"):
        LoopMonitor().start()


def test_the_pytest_plugin_fails_a_stalling_test_naming_the_frame(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import asyncio, time
            import pytest

            def slow_template_render():
                time.sleep(0.3)

            @pytest.mark.loop_stall(threshold_ms=100)
            async def test_blocks():
                await asyncio.sleep(0.01)
                slow_template_render()
                await asyncio.sleep(0.05)

            @pytest.mark.loop_stall(threshold_ms=2000)
            async def test_fine():
                await asyncio.sleep(0.01)

            async def test_fixture_form(no_loop_stall):
                assert no_loop_stall.threshold_ms == 1500
            """
        )
    )
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
            "asyncio_mode=auto", "-o", "awaitdb_loop_stall_ms=1500", "test_inner.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert "1 failed, 2 passed" in out, out
    assert "FAILED test_inner.py::test_blocks" in out
    assert "the event loop stalled 1 time(s) beyond 100 ms" in out
    assert "in slow_template_render (" in out and "test_inner.py:6)" in out


@pytest.mark.parametrize("how", ["-p", "pytest_plugins"])
def test_the_pytest_plugin_can_also_be_named_explicitly(tmp_path: Path, how: str) -> None:
    """``-p awaitdb.testing`` and ``pytest_plugins = ["awaitdb.testing"]`` must not clash with
    the auto-loaded entry point ("Plugin already registered under a different name")."""
    header = 'pytest_plugins = ["awaitdb.testing"]\n' if how == "pytest_plugins" else ""
    (tmp_path / "conftest.py").write_text(header)
    (tmp_path / "test_inner.py").write_text(
        "async def test_fixture(no_loop_stall):\n    assert no_loop_stall.threshold_ms > 0\n"
    )
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    extra = ["-p", "awaitdb.testing"] if how == "-p" else []
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra,
         "-o", "asyncio_mode=auto", "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "1 passed" in out, out


def test_a_monitor_never_stopped_ends_its_watchdog_when_the_loop_closes() -> None:
    monitor = LoopMonitor(threshold_ms=50)

    async def forget_to_stop() -> None:
        monitor.start()
        await asyncio.sleep(0.01)

    asyncio.run(forget_to_stop())  # closes the loop with the monitor still started
    thread = monitor._thread
    assert thread is not None
    thread.join(timeout=10)  # bounded: the watchdog notices the closed loop within a tick
    assert not thread.is_alive(), "the watchdog thread outlived its closed loop"
    assert not monitor.running

    async def start_again() -> None:
        async with monitor:  # a monitor whose loop closed can watch a new loop
            assert monitor.running

    asyncio.run(start_again())
    assert not monitor.running
