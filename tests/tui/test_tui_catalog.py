"""The catalog (the dashboard's data source) and the pure formatting helpers, without an app."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import threading
from pathlib import Path

import duckdb
import pytest

from dbt_dinmo.activation import Identifier
from dbt_dinmo.catalog import ADDED_COUNT_FIELDS, ActivationRun, CatalogBusyError, dashboard_link, next_due
from dbt_dinmo.state import STATE_FILE
from tests.tui.tui_helpers import ATTRIBUTE_NAMES, NAMES, SEGMENT_NAME, make_catalog, synthetic_history
from tui.formatting import duration, export_time, matches, relative


@pytest.fixture
def synthetic(project_with_history: Path) -> Path:
    """The history project with 250 runs per activation instead of its real two."""
    state = project_with_history / ".dinmo"
    shutil.rmtree(state)
    synthetic_history(state, ATTRIBUTE_NAMES, runs=750, rejected_per_run=4)
    return project_with_history


def test_activations_and_last_runs(project_with_history: Path) -> None:
    catalog = make_catalog(project_with_history)
    listing = catalog.activations()
    assert [a.name for a in listing.activations] == NAMES and not listing.problems
    assert listing.project_name == "jaffle_dinmo" and not listing.manifest_missing
    last = catalog.last_runs()
    assert set(last) == set(NAMES)
    assert last["braze_customer_attributes"].status == "partial success"
    assert last["braze_customer_attributes"].rejected == 1


def test_history_is_paged_newest_first(synthetic: Path) -> None:
    catalog = make_catalog(synthetic)
    catalog.activations()
    name = ATTRIBUTE_NAMES[1]
    assert catalog.run_count(name) == 250 and catalog.run_count() == 750
    first = catalog.runs(name, limit=100)
    assert len(first) == 100
    starts = [r.started_at for r in first]
    assert starts == sorted(starts, reverse=True)  # type: ignore[type-var]
    last_page = catalog.runs(name, limit=100, offset=200)
    assert len(last_page) == 50 and last_page[-1].run_id == "run-00000001"
    assert not {r.run_id for r in first} & {r.run_id for r in last_page}
    changes = catalog.changes_per_run(name, limit=60)
    newest = first[0]
    assert len(changes) == 60 and changes[-1] == newest.inserted + newest.updated + newest.deleted


def test_run_detail_and_rejected_search(synthetic: Path) -> None:
    catalog = make_catalog(synthetic)
    catalog.activations()
    run = catalog.run_detail("run-00000004")
    assert run is not None and [a.activation for a in run.activations] == [ATTRIBUTE_NAMES[1]]
    assert run.duration == 3.0 and run.activations[0].duration == 2.0
    assert catalog.run_detail("no-such-run") is None
    page = catalog.rejected("run-00000004")
    assert page.total == 4 and len(page.rows) == 4
    assert page.rows[0].link == "https://dashboard-01.braze.eu/users/user_search/user-search?query=U000000"
    assert catalog.rejected("run-00000004", search="FRANCE").total == 2  # any case
    assert catalog.rejected("run-00000004", search="50%").total == 2  # % is a character, not a wildcard
    assert catalog.rejected("run-00000004", search="5_%").total == 0
    assert catalog.rejected("run-00000004", search="iso_3166").total == 2
    assert catalog.rejected("run-00000004", search="U000003").total == 1
    assert catalog.rejected("run-00000004", activation=ATTRIBUTE_NAMES[0]).total == 0
    assert catalog.rejected("run-00000004", limit=3).total == 4  # total counts beyond the page
    row = page.rows[0]
    assert row.as_text().split("\t")[:3] == [
        ATTRIBUTE_NAMES[1],
        "U000000",
        "attribute country is 'France'; expects 50% ISO_3166",
    ]


def test_no_state_yet(built_sample: Path, tmp_path: Path) -> None:
    from tests.tui.tui_helpers import copy_project

    project = copy_project(built_sample, tmp_path / "p", state=False)
    catalog = make_catalog(project)
    assert not catalog.has_state()
    assert catalog.last_runs() == {} and catalog.runs("x") == [] and catalog.run_count() == 0
    assert catalog.rejected("r").total == 0 and catalog.run_detail("r") is None
    assert not (project / ".dinmo").exists()  # reading never creates the state


def test_no_manifest(tmp_path: Path) -> None:
    from tests.conftest import IGNORE, SAMPLE

    project = tmp_path / "p"
    shutil.copytree(SAMPLE, project, ignore=IGNORE)
    listing = make_catalog(project).activations()
    assert (
        listing.manifest_missing and listing.manifest_path == project.resolve() / "target" / "manifest.json"
    )


def test_reads_wait_for_a_running_sync_then_give_up(project_with_history: Path) -> None:
    """In one process, history reads never open the state while a plan or sync writes it."""
    catalog = make_catalog(project_with_history, read_wait=0.05)
    started, release = threading.Event(), threading.Event()

    def fake_sync() -> None:
        with catalog._exclusive("the sync of x"):
            started.set()
            release.wait(10)

    worker = threading.Thread(target=fake_sync)
    worker.start()
    try:
        assert started.wait(10)
        with pytest.raises(CatalogBusyError, match="the sync of x"):
            catalog.last_runs()
        with pytest.raises(CatalogBusyError, match="still running"):
            catalog.plan(NAMES[0])
    finally:
        release.set()
        worker.join()
    assert catalog.last_runs()  # free again


def test_dashboard_links(project_with_history: Path) -> None:
    catalog = make_catalog(project_with_history)
    a = {x.name: x for x in catalog.activations().activations}[NAMES[0]]
    base = "https://dashboard-01.braze.eu/users/user_search/user-search?query="
    assert dashboard_link(a, "C 1/2") == base + "C%201%2F2"
    assert dashboard_link(a, None) is None
    alias = dataclasses.replace(a, identifier=Identifier("customer_id", "user_alias", "crm_id"))
    assert dashboard_link(alias, "C1") == base + "crm_id%3AC1"
    no_dashboard = dataclasses.replace(a, destination=dataclasses.replace(a.destination, dashboard_url=""))
    assert dashboard_link(no_dashboard, "C1") is None
    assert catalog.dashboard_link(NAMES[0], "C1") == base + "C1"
    assert catalog.dashboard_link("unknown", "C1") is None


def test_next_due() -> None:
    now = dt.datetime(2026, 5, 4, 12, 7, tzinfo=dt.timezone.utc)
    assert next_due("*/15 * * * *", now) == dt.datetime(2026, 5, 4, 12, 15, tzinfo=dt.timezone.utc)
    assert next_due("@hourly", now) == dt.datetime(2026, 5, 4, 13, 0, tzinfo=dt.timezone.utc)
    assert next_due(None, now) is None and next_due("not cron", now) is None


def test_formatting() -> None:
    now = dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.timezone.utc)
    ago = [relative(now - dt.timedelta(seconds=s), now) for s in (10, 90, 3 * 3600, 3 * 86400)]
    assert ago == ["now", "2m ago", "3h ago", "3d ago"]
    assert relative(now + dt.timedelta(minutes=12), now) == "in 12m" and relative(None, now) == "—"
    assert [duration(s) for s in (0.42, 12.2, 185, 3720)] == ["0.4 s", "12 s", "3 min 05 s", "1 h 02 min"]
    assert matches("braze_vip_flags high_value_customers", "VIP high") and not matches("abc", "abc d")


def test_segment_figures(project_with_history: Path) -> None:
    """The user list's runs: members entered, profiles checked, and its changes per run."""
    catalog = make_catalog(project_with_history)
    catalog.activations()
    newest, first = catalog.runs(SEGMENT_NAME)
    assert first.is_segment and first.service == "user_lists" and first.sync_mode == "segment"
    assert (first.entered, first.exited, first.inserted, first.updated, first.deleted) == (13, 0, 0, 0, 0)
    assert (first.profiles_checked, first.export_calls, first.waiting) == (13, 1, 0)
    assert first.changes == 13 and newest.changes == 0 and newest.unchanged == 13
    assert catalog.changes_per_run(SEGMENT_NAME) == [13, 0]
    assert not catalog.last_runs()[NAMES[0]].is_segment
    base = "https://dashboard-01.braze.eu/users/user_search/user-search?query="
    assert catalog.dashboard_link(SEGMENT_NAME, "C005") == base + "C005"  # segments name users too


def test_state_files_from_before_segments(project_with_history: Path) -> None:
    """A state file without the segment and profile-check columns (never migrated) reads as 0."""
    con = duckdb.connect(str(project_with_history / ".dinmo" / STATE_FILE))
    try:
        for column in ADDED_COUNT_FIELDS:
            con.execute(f"ALTER TABLE run_activations DROP COLUMN {column}")
    finally:
        con.close()
    catalog = make_catalog(project_with_history)
    catalog.activations()
    last = catalog.last_runs()[SEGMENT_NAME]
    assert (last.entered, last.exited, last.waiting, last.profiles_checked, last.export_calls) == (0,) * 5
    assert catalog.changes_per_run(NAMES[0]) == [40, 0]
    assert catalog.changes_per_run(SEGMENT_NAME) == [0, 0]  # its entries were never recorded
    row = ActivationRun.from_row({"run_id": "r", "activation": "a", "entered": None, "exited": 2})
    assert (row.entered, row.exited, row.changes) == (0, 2, 2)


def test_export_time() -> None:
    assert export_time(0.0, 0) == "no request needed"
    assert export_time(0.0, 3) == "within one rate-limit window"
    assert export_time(120.0, 300) == "at least 2 min 00 s under the rate limit"
