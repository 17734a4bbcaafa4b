"""The README keeps its promises: the tour runs as written, and so does the tour module."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("AWAITDB_URL", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_readme_tour_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    result = _run(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "committed" in result.stdout and "<Record name='Ada'>" in result.stdout


def test_readme_opens_with_the_two_commands() -> None:
    block = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["python3 -m awaitdb.tour", "scripts/test"]


def test_tour_module_runs(tmp_path: Path) -> None:
    result = _run(["-m", "awaitdb.tour"], ROOT)
    assert result.returncode == 0, result.stderr
    assert "group commit" in result.stdout and "savepoint rolled back" in result.stdout


def test_every_cli_command_is_documented() -> None:
    from awaitdb.cli import main

    doc = (ROOT / "docs" / "cli.md").read_text()
    for name in main.commands:
        assert f"## `awaitdb {name}" in doc, f"docs/cli.md has no section for `awaitdb {name}`"
