"""The run history of one activation: newest first, one page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..formatting import absolute, duration, short_id
from .cells import blocked, number, plain, status_cell
from .table import Table

if TYPE_CHECKING:
    import datetime as dt

    from rich.text import Text
    from textual.app import App

    from dbt_dinmo.catalog import ActivationRun

COLUMNS = (
    ("Started", "started"),
    ("Took", "duration"),
    ("Status", "status"),
    ("Inserted", "inserted"),
    ("Updated", "updated"),
    ("Deleted", "deleted"),
    ("Rejected", "rejected"),
    ("Attr. writes", "writes"),
    ("Run", "run"),
)
# A segment enters and exits members instead of inserting, updating and deleting users.
SEGMENT_SWAP = {"inserted": ("Entered", "entered"), "updated": ("Exited", "exited")}
# Update-only activations (update mode, segments) check profiles and may leave users waiting.
CHECK_COLUMNS = (("Waiting", "waiting"), ("Checked", "checked"))


def columns(segment: bool, checks: bool) -> list[tuple[str, str]]:
    """The columns for a segment (or not) that checks Braze profiles (or not)."""
    out: list[tuple[str, str]] = []
    for label, key in COLUMNS:
        if segment and key == "deleted":
            continue
        out.append(SEGMENT_SWAP.get(key, (label, key)) if segment else (label, key))
        if checks and key == "rejected":
            out.extend(CHECK_COLUMNS)
    return out


def cells(r: ActivationRun, now: dt.datetime, app: App[Any]) -> dict[str, Text]:
    """Every cell of one run's row, by column key."""
    return {
        "started": plain(absolute(r.started_at, now)),
        "duration": plain(duration(r.duration)),
        "status": status_cell(app, r.status),
        "inserted": number(r.inserted),
        "updated": number(r.updated),
        "deleted": blocked(r.deleted, r.deletes_blocked),
        "entered": number(r.entered),
        "exited": blocked(r.exited, r.deletes_blocked),
        "rejected": number(r.rejected, warn=True, app=app),
        "waiting": number(r.waiting, warn=True, app=app),
        "checked": number(r.profiles_checked),
        "writes": number(r.attribute_writes),
        "run": plain(short_id(r.run_id)),
    }


class RunHistoryTable(Table):
    """Runs keyed by run id; ``append`` adds the next page.

    A segment's history shows members entered and exited instead of users inserted, updated and
    deleted; an update-only activation's adds the users waiting for a Braze profile and the
    profiles checked.
    """

    def __init__(self, *, segment: bool = False, checks: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.column_spec = columns(segment, checks)

    def on_mount(self) -> None:
        """Declare the columns."""
        for label, key in self.column_spec:
            self.add_column(label, key=key)

    def append(self, runs: Sequence[ActivationRun], now: dt.datetime) -> None:
        """Add runs at the bottom (skipping any already shown)."""
        for r in runs:
            if r.run_id in self.rows:
                continue
            row = cells(r, now, self.app)
            self.add_row(*(row[key] for _, key in self.column_spec), key=r.run_id)
