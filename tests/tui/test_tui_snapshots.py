"""SVG snapshots of the main screens, at a fixed size, with time frozen and stable run ids.

Review changes with the HTML report pytest writes on failure, then accept them with
``pytest tests/tui --snapshot-update``. ``DINMO_UPDATE_DOCS=1`` also rewrites docs/tui.svg.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.conftest import IGNORE, ROOT, SAMPLE
from tests.tui.tui_helpers import (
    SEGMENT_NAME,
    SNAPSHOT_REST_URL,
    frozen_clock,
    make_catalog,
    use_project,
    wait_for,
)
from tui.app import DinmoApp
from tui.screens.activations import ActivationsScreen
from tui.screens.detail import DetailScreen
from tui.screens.plan import PlanScreen
from tui.screens.run_detail import RunDetailScreen
from tui.widgets.activation_table import ActivationTable

SNAP_SIZE = (130, 40)
Steps = Callable[[Pilot[Any]], Awaitable[None]]


def app_for(project: Path) -> DinmoApp:
    """The dashboard on a project, with the frozen clock."""
    return DinmoApp(make_catalog(project), clock=frozen_clock)


@pytest.fixture
def fixed_rest_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Screens that print the REST URL must not show the emulator's random port."""
    monkeypatch.setenv("BRAZE_REST_URL", SNAPSHOT_REST_URL)


async def loaded(pilot: Pilot[Any]) -> None:
    """Wait for the activations and their last runs."""
    app = pilot.app
    await wait_for(
        pilot, lambda: isinstance(app.screen, ActivationsScreen) and app.screen.runs_state == "loaded"
    )


async def detail(pilot: Pilot[Any], name: str = "braze_customer_attributes") -> None:
    """Open an activation (braze_customer_attributes) and wait for its history."""
    await loaded(pilot)
    app = pilot.app
    app.screen.query_one(ActivationTable).select_key(name)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.table.row_count == 2)


async def run_detail(pilot: Pilot[Any]) -> None:
    """Open the newest run of braze_customer_attributes and wait for its rejected rows."""
    await detail(pilot)
    app = pilot.app
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.page is not None)


def test_activations(snap_compare: Any, snapshot_project: Path) -> None:
    """Every activation with its last run, relative to a frozen now."""
    assert snap_compare(app_for(snapshot_project), terminal_size=SNAP_SIZE, run_before=loaded)


def test_activations_filtered(snap_compare: Any, snapshot_project: Path) -> None:
    """`/mirror` keeps one activation (the filter stays after enter)."""

    async def steps(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("slash", *"mirror")
        table = pilot.app.screen.query_one(ActivationTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("enter")

    assert snap_compare(app_for(snapshot_project), terminal_size=SNAP_SIZE, run_before=steps)


def test_detail(snap_compare: Any, snapshot_project: Path, fixed_rest_url: None) -> None:
    """Configuration, mapping, changes per run and run history."""
    assert snap_compare(app_for(snapshot_project), terminal_size=SNAP_SIZE, run_before=detail)


def test_segment_detail(snap_compare: Any, snapshot_project: Path, fixed_rest_url: None) -> None:
    """A user list: audience and attribute, membership instead of a mapping, entries per run."""

    async def steps(pilot: Pilot[Any]) -> None:
        await detail(pilot, SEGMENT_NAME)

    assert snap_compare(app_for(snapshot_project), terminal_size=SNAP_SIZE, run_before=steps)


def test_run_detail(snap_compare: Any, snapshot_project: Path) -> None:
    """Per-activation figures and the rejected row with its reason and Braze link."""
    assert snap_compare(app_for(snapshot_project), terminal_size=SNAP_SIZE, run_before=run_detail)


def test_plan(snap_compare: Any, snapshot_project: Path) -> None:
    """The dry run: counts by operation and the rejected row it would keep out."""

    async def steps(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        app = pilot.app
        await pilot.press("p")
        await wait_for(
            pilot, lambda: isinstance(app.screen, PlanScreen) and app.screen.result is not None, 120
        )
        await wait_for(pilot, lambda: app.busy is None)  # type: ignore[attr-defined]

    assert snap_compare(app_for(snapshot_project), terminal_size=SNAP_SIZE, run_before=steps)


def test_sync_confirmation(snap_compare: Any, snapshot_project: Path, fixed_rest_url: None) -> None:
    """`s` asks before sending anything."""

    async def steps(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("s")

    assert snap_compare(app_for(snapshot_project), terminal_size=SNAP_SIZE, run_before=steps)


def test_help(snap_compare: Any, snapshot_project: Path) -> None:
    """`?` lists every key."""

    async def steps(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("question_mark")

    assert snap_compare(app_for(snapshot_project), terminal_size=SNAP_SIZE, run_before=steps)


def test_no_manifest(snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project never built: what to run."""
    import shutil

    project = tmp_path / "sample_project"
    shutil.copytree(SAMPLE, project, ignore=IGNORE)
    use_project(monkeypatch, project, "http://127.0.0.1:4010", "key")

    async def steps(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: pilot.app.listing is not None)  # type: ignore[attr-defined]

    assert snap_compare(app_for(project), terminal_size=SNAP_SIZE, run_before=steps)


@pytest.mark.skipif(
    not os.environ.get("DINMO_UPDATE_DOCS"), reason="set DINMO_UPDATE_DOCS=1 to rewrite docs/tui.svg"
)
async def test_docs_screenshot(snapshot_project: Path, fixed_rest_url: None) -> None:
    """docs/tui.svg: an activation's detail, saved by the app itself."""
    app = app_for(snapshot_project)
    async with app.run_test(size=SNAP_SIZE) as pilot:
        await detail(pilot)
        await pilot.pause()
        docs = ROOT / "docs"
        docs.mkdir(exist_ok=True)
        app.save_screenshot("tui.svg", str(docs))
