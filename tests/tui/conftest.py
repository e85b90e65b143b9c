"""Fixtures for the dashboard: a sample project with real run history, and private copies of it.

The history is produced once per session by the real CLI (a subprocess, so dbt's process-wide
adapters never mix with the test process) against a session emulator: a first sync of every
activation (the user list enters its 13 members, after checking their Braze profiles), then a
second one after C002's country became 'France' (one rejected row).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tui.tui_helpers import (
    NAMES,
    History,
    copy_project,
    keep_activations,
    normalize_history,
    run_cli,
    sql,
    use_project,
)


@pytest.fixture(scope="session")
def tui_emulator() -> Iterator[tuple[str, str]]:
    """One Braze emulator for the session: (url, api key)."""
    from dbt_dinmo.emulator import EmulatorServer, EmulatorSettings

    key = "tui-test-key"
    with EmulatorServer(EmulatorSettings(api_keys={key: None}), host="127.0.0.1", port=0) as emu:
        yield emu.url, key


@pytest.fixture(scope="session")
def history(
    built_sample: Path, tmp_path_factory: pytest.TempPathFactory, tui_emulator: tuple[str, str]
) -> History:
    """The sample project after two real syncs (the second with one rejected row)."""
    url, key = tui_emulator
    dst = copy_project(built_sample, tmp_path_factory.mktemp("tui") / "sample_project", state=False)
    keep_activations(dst, NAMES)
    first = run_cli(dst, url, key, "run")
    assert first.returncode == 0, first.stdout + first.stderr
    sql(dst / "jaffle.duckdb", "update customers set country = 'France' where customer_id = 'C002'")
    second = run_cli(dst, url, key, "run")
    assert second.returncode == 1, second.stdout + second.stderr  # partial success: one rejected row
    return History(dst, url, key)


@pytest.fixture
def project_with_history(history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the history project; cwd and environment as for `dbt-dinmo tui`."""
    dst = copy_project(history.project, tmp_path / "sample_project")
    use_project(monkeypatch, dst, history.url, history.api_key)
    return dst


@pytest.fixture
def snapshot_project(history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A history copy with stable run ids and times (screens showing the REST URL change it)."""
    dst = copy_project(history.project, tmp_path / "sample_project")
    normalize_history(dst)
    use_project(monkeypatch, dst, history.url, history.api_key)
    return dst
