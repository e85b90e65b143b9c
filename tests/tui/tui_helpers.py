"""Helpers shared by the dashboard tests (imported as ``tests.tui.tui_helpers``)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from textual.notifications import Notify
from textual.pilot import Pilot

from dbt_dinmo.catalog import Catalog
from dbt_dinmo.project import Project, ProjectOptions
from dbt_dinmo.state import STATE_FILE
from tests.conftest import BIN

FROZEN = dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.timezone.utc)  # the snapshots' "now"
RUN_BASE = FROZEN - dt.timedelta(hours=3)
SNAPSHOT_REST_URL = "http://127.0.0.1:4010"  # shown on the detail screen: never the emulator's port
KEEP_NAMES = ("logs", "*.wal", "tmp", "run.lock", "dbt_packages")
KEEP = shutil.ignore_patterns(*KEEP_NAMES)
SIZE = (120, 40)
# The sample's user-attribute activations and one segment (a user list). The history project
# keeps only these in its manifest, so the tests (and snapshots) do not change whenever the sample
# project gains an activation.
ATTRIBUTE_NAMES = ["braze_customer_attributes", "braze_newsletter_mirror", "braze_vip_flags"]
SEGMENT_NAME = "braze_high_value_list"  # user_lists on high_value_customers (13 members)
NAMES = sorted([*ATTRIBUTE_NAMES, SEGMENT_NAME])


@dataclass(frozen=True)
class History:
    """A built sample project whose state holds two real runs, and where its emulator listens."""

    project: Path
    url: str
    api_key: str


def sql(db: Path, statement: str) -> None:
    """Run one statement on a DuckDB file (the sample's warehouse)."""
    con = duckdb.connect(str(db))
    try:
        con.execute(statement)
    finally:
        con.close()


def cli_env(url: str, api_key: str) -> dict[str, str]:
    """The environment of a user running dbt-dinmo against the emulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "BRAZE_"))}
    env.update(BRAZE_REST_URL=url, BRAZE_API_KEY=api_key, NO_COLOR="1", COLUMNS="200")
    return env


def run_cli(project: Path, url: str, api_key: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``dbt-dinmo`` console script, in the project, against the emulator."""
    return subprocess.run(
        [str(BIN / "dbt-dinmo"), *args, "--profiles-dir", "."],
        cwd=project,
        env=cli_env(url, api_key),
        capture_output=True,
        text=True,
        timeout=180,
    )


def copy_project(src: Path, dst: Path, *, state: bool = True) -> Path:
    """A private copy (warehouse file, and state unless ``state=False``).

    ``dbt_packages`` (the dbt-dinmo macros package, a copy of this repository) is linked, not
    copied: it is only read, and copying it costs seconds.
    """
    ignore = KEEP if state else shutil.ignore_patterns(".dinmo", *KEEP_NAMES)
    shutil.copytree(src, dst, ignore=ignore)
    if (src / "dbt_packages").is_dir():
        (dst / "dbt_packages").symlink_to(src / "dbt_packages", target_is_directory=True)
    return dst


def keep_activations(project: Path, names: list[str]) -> None:
    """Drop every other activation (exposure with a dinmo block) from the built manifest."""
    import json

    path = project / "target" / "manifest.json"
    manifest = json.loads(path.read_text())
    exposures = manifest.get("exposures") or {}
    for uid, exposure in list(exposures.items()):
        meta = (exposure.get("config") or {}).get("meta") or exposure.get("meta") or {}
        if "dinmo" in meta and exposure.get("name") not in names:
            del exposures[uid]
    path.write_text(json.dumps(manifest))


def use_project(monkeypatch: pytest.MonkeyPatch, project: Path, url: str, api_key: str) -> None:
    """cwd = project (its profile's DuckDB path is relative) and the Braze variables."""
    monkeypatch.chdir(project)
    for name in list(os.environ):
        if name.startswith("DBT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BRAZE_REST_URL", url)
    monkeypatch.setenv("BRAZE_API_KEY", api_key)


def make_catalog(project: Path, **kwargs: Any) -> Catalog:
    """A catalog for a project directory (profiles.yml beside dbt_project.yml)."""
    return Catalog(Project(ProjectOptions(project_dir=project, profiles_dir=project)), **kwargs)


def normalize_history(project: Path) -> None:
    """Stable run ids and times, so snapshots do not change from one session to the next."""
    con = duckdb.connect(str(project / ".dinmo" / STATE_FILE))
    try:
        runs = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY started_at").fetchall()]
        for i, old in enumerate(runs, start=1):
            new = f"{i:08d}-0000-4000-8000-{i:012d}"
            start = RUN_BASE + dt.timedelta(hours=i - 1)
            con.execute(
                "UPDATE runs SET run_id = ?, started_at = ?, finished_at = ? WHERE run_id = ?",
                [new, start, start + dt.timedelta(seconds=2), old],
            )
            names = [
                r[0]
                for r in con.execute(
                    "SELECT activation FROM run_activations WHERE run_id = ? ORDER BY started_at", [old]
                ).fetchall()
            ]
            for k, name in enumerate(names):
                began = start + dt.timedelta(seconds=0.5 * k)
                con.execute(
                    "UPDATE run_activations SET run_id = ?, started_at = ?, finished_at = ? "
                    "WHERE run_id = ? AND activation = ?",
                    [new, began, began + dt.timedelta(seconds=0.4), old, name],
                )
            con.execute("UPDATE rejected_rows SET run_id = ? WHERE run_id = ?", [new, old])
    finally:
        con.close()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def frozen_clock() -> dt.datetime:
    """The snapshots' clock."""
    return FROZEN


async def wait_for(pilot: Pilot[Any], condition: Callable[[], object], timeout: float = 60.0) -> None:
    """Let the app work until ``condition()`` holds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s on {type(pilot.app.screen).__name__}")
        await pilot.pause(0.02)


class Notes:
    """Collects the notifications an app posts (pass ``notes.hook`` as ``message_hook``)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []  # (severity, title, message)
        self.messages: list[object] = []

    def hook(self, message: object) -> None:
        """Record notifications and every message (for progress assertions)."""
        self.messages.append(message)
        if isinstance(message, Notify):
            n = message.notification
            self.items.append((n.severity, n.title, n.message))

    def of(self, severity: str) -> list[str]:
        """Messages (title and text) of one severity."""
        return [f"{t}: {m}" for s, t, m in self.items if s == severity]


def text_of(widget: Any) -> str:
    """The plain text a widget renders (Textual content or a Rich renderable)."""
    import io

    from rich.console import Console
    from textual.content import Content

    visual = widget.render()
    if isinstance(visual, Content):
        return visual.plain
    inner = getattr(visual, "_renderable", None)  # a Rich renderable wrapped for Textual
    console = Console(width=200, file=io.StringIO(), color_system=None)
    console.print(inner if inner is not None else visual)
    return console.file.getvalue()  # type: ignore[attr-defined]


def synthetic_history(
    state_dir: Path,
    activations: list[str],
    runs: int,
    rejected_per_run: int = 0,
    start: dt.datetime = RUN_BASE,
) -> None:
    """A state file with ``runs`` runs cycling over ``activations`` (one activation per run)."""
    from dbt_dinmo.state import StateStore

    with StateStore(state_dir) as store:
        con = store.con
        con.execute(
            "CREATE TEMP TABLE names AS SELECT unnest(?::VARCHAR[]) AS name, generate_subscripts(?::VARCHAR[], 1) - 1 AS k",
            [activations, activations],
        )
        con.execute(
            "INSERT INTO runs SELECT printf('run-%08d', i), 'run', ?::TIMESTAMPTZ + to_minutes(i), "
            "?::TIMESTAMPTZ + to_minutes(i) + to_seconds(3), 'success', '{}' FROM range(?) t(i)",
            [start, start, runs],
        )
        con.execute(
            "INSERT INTO run_activations (run_id, activation, service, sync_mode, destination, status, "
            "message, started_at, finished_at, source_rows, inserted, updated, deleted, unchanged, rejected, "
            "retried, failed, deletes_blocked, attribute_writes, requests) "
            "SELECT printf('run-%08d', i), n.name, 'user_attributes', 'upsert', "
            "'braze', CASE WHEN i % 10 = 0 THEN 'partial success' ELSE 'success' END, '', "
            "?::TIMESTAMPTZ + to_minutes(i), ?::TIMESTAMPTZ + to_minutes(i) + to_seconds(2), "
            "1000, i % 7, i % 11, i % 3, 1000 - i % 7, ?, 0, 0, 0, (i % 11) * 4, 1 "
            "FROM range(?) t(i) JOIN names n ON n.k = i % ?",
            [start, start, rejected_per_run, runs, len(activations)],
        )
        if rejected_per_run:
            con.execute(
                "INSERT INTO rejected_rows SELECT printf('run-%08d', i), n.name, printf('U%06d', j), "
                "CASE WHEN j % 2 = 0 THEN 'attribute country is ''France''; expects 50% ISO_3166' "
                "ELSE 'email is not valid' END, 'dinmo', '' "
                "FROM range(?) t(i) JOIN names n ON n.k = i % ?, range(?) r(j)",
                [runs, len(activations), rejected_per_run],
            )


def clone_activations(project: Path, template: str, count: int) -> list[str]:
    """Add ``count`` copies of one activation to the built manifest; return their names."""
    import json

    path = project / "target" / "manifest.json"
    manifest = json.loads(path.read_text())
    exposures = manifest["exposures"]
    source = next(e for e in exposures.values() if e["name"] == template)
    names = []
    for i in range(count):
        name = f"bulk_{i:04d}"
        uid = source["unique_id"].rsplit(".", 1)[0] + "." + name
        exposures[uid] = {
            **source,
            "name": name,
            "unique_id": uid,
            "fqn": [*source.get("fqn", [])[:-1], name],
        }
        names.append(name)
    path.write_text(json.dumps(manifest))
    return names
