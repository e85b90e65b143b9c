"""Hundreds of activations and thousands of runs: the dashboard opens fast and pages the history."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.tui.tui_helpers import (
    ATTRIBUTE_NAMES,
    NAMES,
    SIZE,
    clone_activations,
    make_catalog,
    synthetic_history,
    wait_for,
)
from tui.app import DinmoApp
from tui.screens.activations import ActivationsScreen
from tui.screens.detail import DetailScreen
from tui.widgets.activation_table import ActivationTable

# Seconds from start to a full table. About 0.8 s on a 2-core machine (0.1 s to the first paint);
# the budget leaves room for a loaded CI runner.
OPEN_BUDGET = 3.0


async def test_opens_fast_with_300_activations_and_5000_runs(project_with_history: Path) -> None:
    bulk = clone_activations(project_with_history, "braze_vip_flags", 300)
    shutil.rmtree(project_with_history / ".dinmo")
    everyone = [*NAMES, *bulk]
    synthetic_history(project_with_history / ".dinmo", everyone, runs=5000, rejected_per_run=2)
    app = DinmoApp(make_catalog(project_with_history))
    started = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, ActivationsScreen)
        await wait_for(pilot, lambda: screen.runs_state == "loaded")
        elapsed = time.perf_counter() - started
        table = screen.query_one(ActivationTable)
        assert table.row_count == len(everyone) == 300 + len(NAMES)
        print(f"activations and last runs on screen after {elapsed:.2f}s")
        assert elapsed < OPEN_BUDGET
        await pilot.press("slash", *"bulk_0299")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("enter", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.total > 0)
        detail = app.screen
        assert isinstance(detail, DetailScreen)
        runs = len(range(everyone.index("bulk_0299"), 5000, len(everyone)))  # one activation a run, in turn
        assert detail.table.row_count == detail.total == runs


async def test_history_pages_load_at_the_bottom(project_with_history: Path) -> None:
    shutil.rmtree(project_with_history / ".dinmo")
    synthetic_history(project_with_history / ".dinmo", ATTRIBUTE_NAMES, runs=750)
    app = DinmoApp(make_catalog(project_with_history))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(
            pilot, lambda: isinstance(app.screen, ActivationsScreen) and app.screen.runs_state == "loaded"
        )
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.table.row_count > 0)
        detail = app.screen
        assert isinstance(detail, DetailScreen)
        assert (detail.table.row_count, detail.total) == (100, 250)
        assert "newest 100 of 250" in str(detail.query_one("#history-caption").render())
        await pilot.press("G")
        await wait_for(pilot, lambda: detail.table.row_count == 200)
        await pilot.press("G")
        await wait_for(pilot, lambda: detail.table.row_count == 250)
        assert "250 run(s)" in str(detail.query_one("#history-caption").render())
        await pilot.press("G", "g", "j")
        assert detail.table.cursor_row == 1 and detail.table.row_count == 250
