"""The dashboard as a user runs it: the real `dbt-dinmo tui` in tmux, driven by keys."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN
from tests.tui.tui_helpers import History, cli_env, copy_project

SCRIPT = Path(__file__).with_name("tmux_e2e.sh")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_tui_in_tmux(history: History, tmp_path: Path) -> None:
    """Filter, detail, run detail with the rejected row, search, help and quit, in a real terminal."""
    project = copy_project(history.project, tmp_path / "sample_project")
    result = subprocess.run(
        ["bash", str(SCRIPT), str(BIN / "dbt-dinmo"), str(project)],
        env=cli_env(history.url, history.api_key),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("OK")
