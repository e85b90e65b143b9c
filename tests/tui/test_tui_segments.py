"""Segments (user lists, subscription groups) and users waiting for a Braze profile, in the dashboard.

Real data only: the sample project built by dbt, synced by the real CLI against the emulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.tui_helpers import (
    SEGMENT_NAME,
    SIZE,
    History,
    copy_project,
    make_catalog,
    run_cli,
    sql,
    text_of,
    use_project,
    wait_for,
)
from tui.app import DinmoApp
from tui.screens.activations import ActivationsScreen
from tui.screens.detail import DetailScreen
from tui.screens.plan import PlanScreen
from tui.screens.run_detail import RunDetailScreen
from tui.widgets.activation_table import ActivationTable
from tui.widgets.figures_table import FiguresTable
from tui.widgets.rejected_table import RejectedTable
from tui.widgets.run_history import RunHistoryTable

SUBSCRIPTION = "braze_vip_club_subscription"
GROUP_ID = "5d3b7b24-9c1e-4f7a-8b2d-3e6f1a0c9d42"


def loaded(app: DinmoApp) -> bool:
    """The activations and their last runs are on screen."""
    screen = app.screen
    return isinstance(screen, ActivationsScreen) and screen.runs_state == "loaded"


async def open_activation(pilot, name: str) -> DetailScreen:  # type: ignore[no-untyped-def]
    """From the activations, open one activation (with or without history)."""
    app = pilot.app
    app.screen.query_one(ActivationTable).select_key(name)
    await pilot.press("enter")
    await wait_for(
        pilot,
        lambda: (
            isinstance(app.screen, DetailScreen)
            and "loading" not in text_of(app.screen.query_one("#history-caption"))
        ),
    )
    assert isinstance(app.screen, DetailScreen) and app.screen.activation.name == name
    return app.screen


def words(widget: object) -> str:
    """A widget's text with every run of whitespace as one space (grids pad and wrap)."""
    return " ".join(text_of(widget).split())


def column_labels(table: object) -> list[str]:
    """A DataTable's column labels, in order."""
    return [str(c.label) for c in table.ordered_columns]  # type: ignore[attr-defined]


async def test_segment_configuration_and_membership(
    built_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscription group and a user list: their rows in the configuration, their membership."""
    project = copy_project(built_sample, tmp_path / "sample_project", state=False)
    use_project(monkeypatch, project, "http://127.0.0.1:4010", "key")
    app = DinmoApp(make_catalog(project))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: loaded(app))
        table = app.screen.query_one(ActivationTable)
        assert [str(c) for c in table.get_row(SUBSCRIPTION)][:3] == [
            SUBSCRIPTION,
            "subscription_status",
            "segment",
        ]

        detail = await open_activation(pilot, SUBSCRIPTION)
        config = words(detail.query_one("#config").query_one("Static"))
        assert "Sync mode segment (entries and exits)" in config
        assert f"Subscription group {GROUP_ID}" in config
        assert "Max exits 50%" in config
        assert "/users/export/ids" in config  # update-only: users wait for their profile
        assert "Audience" not in config and "max_deletes" not in config
        mapping = detail.query_one("#mapping")
        assert mapping.border_title == "Membership: subscription group"
        membership = words(mapping.query_one("Static"))
        assert "User Subscription in the model subscribed left the model unsubscribed" in membership
        assert "never in it not touched" in membership
        history = detail.query_one(RunHistoryTable)
        assert column_labels(history) == [
            "Started",
            "Took",
            "Status",
            "Entered",
            "Exited",
            "Rejected",
            "Waiting",
            "Checked",
            "Attr. writes",
            "Run",
        ]
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ActivationsScreen))

        detail = await open_activation(pilot, SEGMENT_NAME)
        config = words(detail.query_one("#config").query_one("Static"))
        assert "Audience High Value Customers" in config
        assert "Attribute High_Value_Customers (boolean)" in config
        assert "Subscription group" not in config and "Max exits" not in config  # none set
        mapping = detail.query_one("#mapping")
        assert mapping.border_title == "Membership: user list"
        membership = words(mapping.query_one("Static"))
        assert "User High_Value_Customers in the model true left the model false" in membership
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ActivationsScreen))

        detail = await open_activation(pilot, "braze_customer_attributes")  # upsert: creates users
        config = words(detail.query_one("#config").query_one("Static"))
        assert "Sync mode upsert" in config and "/users/export/ids" not in config
        assert detail.query_one("#mapping").border_title == "Mapping (15)"
        assert "Entered" not in column_labels(detail.query_one(RunHistoryTable))

        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ActivationsScreen))
        await pilot.press("slash", *GROUP_ID[:8])  # the filter looks in the segment's settings too
        await wait_for(pilot, lambda: table.row_count == 1)
        assert table.selected_key == SUBSCRIPTION


@pytest.fixture
def exits_and_waiting(project_with_history: Path, history: History) -> Path:
    """A third run of the user list only: C037 left the segment, C900 (no Braze profile) joined."""
    db = project_with_history / "jaffle.duckdb"
    sql(db, "insert into high_value_customers values ('C900', 999)")
    sql(db, "delete from high_value_customers where customer_id = 'C037'")
    result = run_cli(project_with_history, history.url, history.api_key, "run", "--select", SEGMENT_NAME)
    assert result.returncode == 0, result.stdout + result.stderr  # waiting is no failure
    return project_with_history


async def test_segment_run_exits_and_users_waiting(exits_and_waiting: Path) -> None:
    """The changes cell, the history and the run of a segment; the waiting user reads as waiting."""
    app = DinmoApp(make_catalog(exits_and_waiting))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: loaded(app))
        table = app.screen.query_one(ActivationTable)
        row = [str(c) for c in table.get_row(SEGMENT_NAME)]
        assert row[2] == "segment" and "success" in row[6]
        assert row[7] == "+0 -1 ◷1"  # one exit, one user waiting for a Braze profile
        assert str(table.get_row("braze_customer_attributes")[7]) == "+0 ~0 -0 !1"

        detail = await open_activation(pilot, SEGMENT_NAME)
        await wait_for(pilot, lambda: detail.table.row_count == 3)
        labels = column_labels(detail.table)
        newest = dict(zip(labels, (str(c).strip() for c in detail.table.get_row_at(0)), strict=True))
        assert (newest["Entered"], newest["Exited"], newest["Waiting"], newest["Checked"]) == (
            "0",
            "1",
            "1",
            "1",
        )
        first = dict(zip(labels, (str(c).strip() for c in detail.table.get_row_at(2)), strict=True))
        assert (first["Entered"], first["Exited"], first["Checked"]) == ("13", "0", "13")
        assert detail.query_one("Sparkline").data == [13.0, 0.0, 1.0]  # type: ignore[attr-defined]

        await pilot.press("enter")  # the newest run
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.page is not None)
        screen = app.screen
        assert isinstance(screen, RunDetailScreen)
        figures = screen.query_one(FiguresTable)
        labels = column_labels(figures)
        assert labels[:9] == ["Activation", "Status", "Rows", "Ent.", "Exit", "Same", "Rej.", "Wait", "Chk."]
        cells = dict(zip(labels, (str(c).strip() for c in figures.get_row(SEGMENT_NAME)), strict=True))
        assert (cells["Ent."], cells["Exit"], cells["Rej."], cells["Wait"], cells["Chk."]) == (
            "0",
            "1",
            "0",
            "1",
            "1",
        )
        rejected = screen.query_one(RejectedTable)
        assert rejected.row_count == 1
        identifier, _, origin, _ = (str(c) for c in rejected.get_row_at(0))
        assert (identifier, origin) == ("C900", "◷ waiting")
        waiting = screen.selected_row
        assert waiting is not None and waiting.origin == "waiting"
        assert waiting.reason.startswith("waiting for a Braze profile")
        assert waiting.link is not None and waiting.link.endswith("query=C900")  # user lists link users
        caption = text_of(screen.query_one("#rejected-caption"))
        assert "0 rejected" in caption and "◷ 1 waiting for a Braze profile" in caption
        assert "waiting for a Braze profile" in text_of(screen.query_one("#row-detail"))
        await pilot.press("escape")
        assert app.screen is detail

        await pilot.press("p")  # C900 is still missing: the plan checks it again
        await wait_for(
            pilot, lambda: isinstance(app.screen, PlanScreen) and app.screen.result is not None, 120
        )
        plan = app.screen
        assert isinstance(plan, PlanScreen) and plan.result is not None
        result = plan.result
        assert (result.entered, result.exited, result.inserted, result.updated) == (1, 0, 0, 0)
        assert (result.profiles_checked, result.export_calls, result.waiting) == (1, 1, 1)
        counts = text_of(plan.query_one("#plan-counts"))
        assert "Enter" in counts and "Exit" in counts and "Insert" not in counts and "Update" not in counts
        assert "Profile checks" in counts and "Export calls" in counts and "/users/export/ids" in counts
        assert "within one rate-limit window" in counts
        assert "◷ Waiting" in counts and "not found at their last check" in counts
        await wait_for(pilot, lambda: app.busy is None)


async def test_plan_without_profile_checks_has_no_check_rows(project_with_history: Path) -> None:
    """Every member is known to exist in Braze: the plan has entry and exit rows, no check rows."""
    sql(project_with_history / "jaffle.duckdb", "delete from high_value_customers where customer_id = 'C037'")
    app = DinmoApp(make_catalog(project_with_history))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: loaded(app))
        app.screen.query_one(ActivationTable).select_key(SEGMENT_NAME)
        await pilot.press("p")
        await wait_for(
            pilot, lambda: isinstance(app.screen, PlanScreen) and app.screen.result is not None, 120
        )
        plan = app.screen
        assert isinstance(plan, PlanScreen) and plan.result is not None
        assert (plan.result.exited, plan.result.profiles_checked, plan.result.waiting) == (1, 0, 0)
        counts = text_of(plan.query_one("#plan-counts"))
        assert "Exit" in counts and "members who left the model" in counts
        assert "Profile checks" not in counts and "Export calls" not in counts
        samples = words(plan.query_one("#plan-samples"))
        assert "Members who would leave (sample): C037" in samples
        await wait_for(pilot, lambda: app.busy is None)
