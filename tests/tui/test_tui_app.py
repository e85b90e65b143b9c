"""Pilot tests: the dashboard driven by keys on a sample project with real run history."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.widgets import Input, Sparkline

from tests.conftest import IGNORE, SAMPLE
from tests.tui.tui_helpers import (
    NAMES,
    SIZE,
    Notes,
    closed_port,
    copy_project,
    make_catalog,
    sql,
    text_of,
    use_project,
    wait_for,
)
from tui.app import DinmoApp
from tui.messages import SyncProgress
from tui.screens.activations import ActivationsScreen
from tui.screens.detail import DetailScreen
from tui.screens.help import HelpScreen
from tui.screens.plan import PlanScreen
from tui.screens.run_detail import RunDetailScreen
from tui.screens.sync import SyncScreen
from tui.widgets.activation_table import ActivationTable
from tui.widgets.empty_state import EmptyState
from tui.widgets.figures_table import FiguresTable
from tui.widgets.rejected_table import RejectedTable
from tui.widgets.run_history import RunHistoryTable


def loaded(app: DinmoApp) -> bool:
    """The activations and their last runs are on screen."""
    screen = app.screen
    return isinstance(screen, ActivationsScreen) and screen.runs_state == "loaded"


def history_rows(app: DinmoApp) -> int:
    """Rows of the run history on the detail screen (0 until it has loaded)."""
    screen = app.screen
    if not isinstance(screen, DetailScreen) or not screen.table.display:
        return 0
    return screen.table.row_count


async def open_detail(pilot, name: str) -> DetailScreen:  # type: ignore[no-untyped-def]
    """From the activations, open one activation's detail."""
    app = pilot.app
    table = app.screen.query_one(ActivationTable)
    table.select_key(name)
    await pilot.press("enter")
    await wait_for(pilot, lambda: history_rows(app) > 0)
    assert isinstance(app.screen, DetailScreen)
    return app.screen


async def test_navigation_filter_and_detail(project_with_history: Path) -> None:
    """Arrows and j/k move, `/` filters by any text, enter opens the detail with chart and history."""
    app = DinmoApp(make_catalog(project_with_history))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: loaded(app))
        table = app.screen.query_one(ActivationTable)
        assert [str(k.value) for k in table.rows] == NAMES
        assert table.has_focus and table.selected_key == NAMES[0]
        await pilot.press("j", "down")
        assert table.selected_key == NAMES[2]
        await pilot.press("k")
        assert table.selected_key == NAMES[1]
        await pilot.press("up")
        assert table.selected_key == NAMES[0]
        row = [str(c) for c in table.get_row(NAMES[0])]
        assert row[:5] == ["braze_customer_attributes", "user_attributes", "upsert", "customers", "braze"]
        assert "partial" in row[6] and "!1" in row[7]  # last run: one rejected row

        await pilot.press("slash", *"newsletter")
        filter_box = app.screen.query_one("#filter", Input)
        assert filter_box.has_focus and filter_box.value == "newsletter"  # keys go to the input
        await wait_for(pilot, lambda: table.row_count == 1)
        assert table.selected_key == "braze_newsletter_mirror"
        await pilot.press("enter")  # leaves the input, keeps the filter
        assert table.has_focus and table.row_count == 1
        await pilot.press("escape")  # clears the filter
        await wait_for(pilot, lambda: table.row_count == len(NAMES))
        await pilot.press("slash", *"marketing")  # owner team: any text matches
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: table.row_count == len(NAMES))
        await pilot.press("slash", *"no-such-thing")
        await wait_for(pilot, lambda: table.row_count == 0)
        assert "No activation matches" in text_of(app.screen.query_one(EmptyState))
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: table.row_count == len(NAMES))

        detail = await open_detail(pilot, "braze_customer_attributes")
        assert detail.table.row_count == 2 and detail.total == 2
        assert detail.query_one(Sparkline).data == [40.0, 0.0]  # changes per run, oldest first
        newest = [str(c) for c in detail.table.get_row_at(0)]
        assert "partial" in newest[2] and newest[6].strip() == "1"
        oldest = [str(c) for c in detail.table.get_row_at(1)]
        assert oldest[3].strip() == "40" and oldest[7].strip() == "576"  # inserted, attribute writes
        config = text_of(detail.query_one("#config").query_one("Static"))
        assert "customer_id (external_id)" in config and '"jaffle"."main"."customers"' in config
        assert "CRM team <crm@example.com>" in config
        await pilot.press("escape")
        assert isinstance(app.screen, ActivationsScreen)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_run_detail_rejected_rows_search_and_copy(project_with_history: Path) -> None:
    """A run's figures, its rejected row with Braze's reason and dashboard link; search; `y` copies."""
    app = DinmoApp(make_catalog(project_with_history))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: loaded(app))
        await open_detail(pilot, "braze_customer_attributes")
        await pilot.press("enter")  # newest run
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.page is not None)
        screen = app.screen
        assert isinstance(screen, RunDetailScreen)
        figures = screen.query_one(FiguresTable)
        assert [str(k.value) for k in figures.rows] == NAMES  # every activation of the run
        rejected = screen.query_one(RejectedTable)
        assert rejected.row_count == 1
        row = screen.selected_row
        assert row is not None and row.identifier == "C002"
        assert "'France'" in row.reason and "ISO-3166" in row.reason
        assert row.link == "https://dashboard-01.braze.eu/users/user_search/user-search?query=C002"
        assert "query=C002" in text_of(screen.query_one("#row-detail"))

        rejected.focus()
        await pilot.press("y")
        assert app.clipboard.split("\t")[:2] == ["braze_customer_attributes", "C002"]
        assert app.clipboard.endswith(row.link)

        await pilot.press("slash", *"zzz")
        await wait_for(pilot, lambda: screen.page is not None and screen.page.search == "zzz")
        assert not rejected.display
        assert "No rejected row matches" in text_of(screen.query_one("#rejected-empty"))
        screen.query_one("#search", Input).value = "fRaN"  # case-insensitive, anywhere in the reason
        await wait_for(pilot, lambda: screen.page is not None and screen.page.search == "fRaN")
        assert rejected.display and rejected.row_count == 1
        await pilot.press("enter")
        assert rejected.has_focus

        figures.focus()
        figures.select_key("braze_vip_flags")  # another activation of the run: nothing rejected
        await wait_for(pilot, lambda: screen.page is not None and screen.page.total == 0)
        assert screen.activation == "braze_vip_flags"
        await pilot.press("y")
        await pilot.press("escape")  # clears the search
        await pilot.press("escape")
        assert isinstance(app.screen, DetailScreen)


async def test_plan_runs_in_a_worker_and_shows_counts_and_samples(project_with_history: Path) -> None:
    """`p` plans in a thread worker: the UI answers keys meanwhile; then counts and payloads show."""
    sql(
        project_with_history / "jaffle.duckdb",
        "update customers set first_name = 'Zoé' where customer_id = 'C001'",
    )
    app = DinmoApp(make_catalog(project_with_history))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: loaded(app))
        await pilot.press("p")
        assert isinstance(app.screen, PlanScreen)
        await pilot.press("question_mark")  # the UI is not frozen while dbt works
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        plan = app.screen
        assert isinstance(plan, PlanScreen)
        await wait_for(pilot, lambda: plan.result is not None, timeout=120)
        result = plan.result
        assert result is not None
        assert (result.source_rows, result.updated, result.inserted, result.rejected) == (40, 1, 0, 1)
        assert result.attribute_writes == 1
        assert result.samples and result.samples[0]["external_id"] == "C001"
        counts = text_of(plan.query_one("#plan-counts"))
        assert "Data points" in counts and "Requests" in counts
        samples = text_of(plan.query_one("#plan-samples"))
        assert "Zoé" in samples and "France" in samples  # payload and the rejection reason
        await pilot.press("escape")
        assert isinstance(app.screen, ActivationsScreen)
        await pilot.press("p")  # a second plan works too (dbt's adapters are reset in between)
        await wait_for(pilot, lambda: isinstance(app.screen, PlanScreen) and app.screen.result is not None)
        await wait_for(pilot, lambda: app.busy is None)


async def test_sync_from_the_dashboard_updates_the_history(project_with_history: Path) -> None:
    """`s` asks first, shows progress while syncing, then the detail and the table refresh."""
    sql(
        project_with_history / "jaffle.duckdb",
        "update customers set country = 'FR' where customer_id = 'C002'",
    )
    notes = Notes()
    app = DinmoApp(make_catalog(project_with_history))
    async with app.run_test(size=SIZE, message_hook=notes.hook) as pilot:
        await wait_for(pilot, lambda: loaded(app))
        detail = await open_detail(pilot, "braze_customer_attributes")
        assert detail.table.row_count == 2
        await pilot.press("s")
        await pilot.press("n")  # cancelled: nothing runs
        assert isinstance(app.screen, DetailScreen) and app.busy is None
        await pilot.press("s", "y")
        assert isinstance(app.screen, SyncScreen)
        sync = app.screen
        await wait_for(pilot, lambda: sync.done, timeout=120)
        phases = [m.phase for m in notes.messages if isinstance(m, SyncProgress)]
        assert phases[:2] == ["reading", "sending"] and "finished" in phases
        assert "success" in text_of(sync.query_one("#sync-phase"))
        await pilot.press("enter")  # close the modal
        assert app.screen is detail
        await wait_for(pilot, lambda: detail.table.row_count == 3)
        newest = [str(c) for c in detail.table.get_row_at(0)]
        assert "success" in newest[2] and newest[4].strip() == "1"  # C002 updated (country FR)
        assert any("Sync of braze_customer_attributes done" in n for n in notes.of("information"))
        await pilot.press("escape")
        table = app.screen.query_one(ActivationTable)
        await wait_for(pilot, lambda: "success" in str(table.get_row(NAMES[0])[6]))


async def test_unreachable_destination_is_a_notification(
    project_with_history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Braze unreachable: the sync ends in error, a notification says why, the app keeps running."""
    from dbt_dinmo.braze import BrazeClient, RateLimits
    from dbt_dinmo.config import Destination

    async def no_wait(_seconds: float) -> None:
        await asyncio.sleep(0)

    def client(destination: Destination) -> BrazeClient:  # real retries, without the waiting
        return BrazeClient(
            destination.rest_url, destination.api_key.reveal(), rate_limits=RateLimits.off(), sleep=no_wait
        )

    monkeypatch.setenv("BRAZE_REST_URL", f"http://127.0.0.1:{closed_port()}")
    notes = Notes()
    app = DinmoApp(make_catalog(project_with_history, client_factory=client))
    async with app.run_test(size=SIZE, message_hook=notes.hook) as pilot:
        await wait_for(pilot, lambda: loaded(app))
        app.screen.query_one(ActivationTable).select_key("braze_vip_flags")
        await pilot.press("s", "y")
        await wait_for(pilot, lambda: isinstance(app.screen, SyncScreen) and app.screen.done, timeout=120)
        errors = notes.of("error")
        assert errors and "Sync of braze_vip_flags failed" in errors[0]
        assert "127.0.0.1" in errors[0] or "connect" in errors[0].lower()
        assert "error" in text_of(app.screen.query_one("#sync-phase"))
        await pilot.press("enter")
        assert isinstance(app.screen, ActivationsScreen)
        table = app.screen.query_one(ActivationTable)
        await wait_for(pilot, lambda: "error" in str(table.get_row("braze_vip_flags")[6]))
        assert app.is_running


async def test_no_manifest_explains_dbt_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project never built: the empty state says to run dbt build."""
    project = tmp_path / "sample_project"
    shutil.copytree(SAMPLE, project, ignore=IGNORE)
    use_project(monkeypatch, project, "http://127.0.0.1:4010", "key")
    app = DinmoApp(make_catalog(project))
    async with app.run_test(size=SIZE) as pilot:
        empty = app.screen.query_one(EmptyState)
        await wait_for(pilot, lambda: "No manifest yet" in text_of(empty))
        text = text_of(empty)
        assert "dbt build" in text and "target/manifest.json" in text
        assert not app.screen.query_one(ActivationTable).display
        await pilot.press("p", "s", "enter")  # nothing selected: nothing happens
        assert isinstance(app.screen, ActivationsScreen) and app.busy is None


async def test_no_runs_yet_explains_run_or_s(
    built_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole sample without history: every activation opens; the hints say what to do."""
    project = copy_project(built_sample, tmp_path / "sample_project", state=False)
    use_project(monkeypatch, project, "http://127.0.0.1:4010", "key")
    app = DinmoApp(make_catalog(project))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: loaded(app))
        summary = text_of(app.screen.query_one("#summary"))
        assert "no runs yet" in summary and "dbt-dinmo run" in summary and "press s" in summary
        table = app.screen.query_one(ActivationTable)
        names = [str(k.value) for k in table.rows]
        assert set(NAMES) <= set(names) and names == sorted(names)
        assert "never run" in str(table.get_row(NAMES[0])[6])
        for name in names:  # every service's configuration renders
            table.select_key(name)
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda: (
                    isinstance(app.screen, DetailScreen) and app.screen.query_one("#history-empty").display
                ),
            )
            hint = text_of(app.screen.query_one("#history-empty"))
            assert "No runs yet" in hint and "dbt-dinmo run" in hint and "press s" in hint
            assert not app.screen.query_one(RunHistoryTable).display
            assert name in text_of(app.screen.query_one("#title"))
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, ActivationsScreen))


@pytest.fixture
def state_held(project_with_history: Path) -> Iterator[None]:
    """Another process holds the state file open read-write (as a running `dbt-dinmo run` does)."""
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(60)"
    )
    state = project_with_history / ".dinmo" / "state.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", code, str(state)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


async def test_locked_state_is_a_notification(project_with_history: Path, state_held: None) -> None:
    """While another process writes the state, the table still shows and a notification explains."""
    notes = Notes()
    app = DinmoApp(make_catalog(project_with_history))
    async with app.run_test(size=SIZE, message_hook=notes.hook) as pilot:
        screen = app.screen
        assert isinstance(screen, ActivationsScreen)
        await wait_for(pilot, lambda: screen.runs_state not in ("loading", "loaded"))
        assert "in use by another dbt-dinmo process" in " ".join(notes.of("error"))
        assert screen.query_one(ActivationTable).row_count == len(NAMES)
        assert "run history unavailable" in text_of(screen.query_one("#summary"))


async def test_help_palette_and_quit(project_with_history: Path) -> None:
    """`?` shows the keys, the palette lists actions per activation, `q` quits."""
    app = DinmoApp(make_catalog(project_with_history))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: loaded(app))
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "copy the highlighted rejected row" in text_of(app.screen.query_one("#help-text"))
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"open vip")
        palette = app.screen

        def prompts() -> list[str]:
            options = palette.query_one("CommandList")
            return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]  # type: ignore[attr-defined]

        await wait_for(pilot, lambda: any("open: braze_vip_flags" in p for p in prompts()))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
        assert app.screen.activation.name == "braze_vip_flags"  # type: ignore[attr-defined]
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_relative_times_follow_the_clock(project_with_history: Path) -> None:
    """Ages are computed from the injected clock, and refresh as it moves."""
    import datetime as dt

    now = [dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)]
    app = DinmoApp(make_catalog(project_with_history), clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: loaded(app))
        screen = app.screen
        assert isinstance(screen, ActivationsScreen)
        table = screen.query_one(ActivationTable)
        assert str(table.get_row(NAMES[2])[6]).endswith("1h ago")
        now[0] += dt.timedelta(days=2)
        screen.tick()
        await pilot.pause()
        assert str(table.get_row(NAMES[2])[6]).endswith("2d ago")


async def test_a_broken_config_is_explained(project_with_history: Path) -> None:
    """dinmo.yml cannot be used: the empty state shows the problem and how to fix it."""
    (project_with_history / "dinmo.yml").write_text("destinations: {}\nextra: 1\n")
    app = DinmoApp(make_catalog(project_with_history))
    async with app.run_test(size=SIZE) as pilot:
        empty = app.screen.query_one(EmptyState)
        await wait_for(pilot, lambda: "No valid activation" in text_of(empty))
        text = text_of(empty)
        assert "dinmo.yml" in text and "no destination is defined" in text
