"""Each activation's figures in one run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..formatting import duration
from .cells import blocked, number, plain, status_cell
from .table import Table

if TYPE_CHECKING:
    from rich.text import Text
    from textual.app import App

    from dbt_dinmo.catalog import ActivationRun

COLUMNS = (
    ("Activation", "activation"),
    ("Status", "status"),
    ("Rows", "rows"),
    ("Ins.", "inserted"),
    ("Upd.", "updated"),
    ("Del.", "deleted"),
    ("Same", "unchanged"),
    ("Rej.", "rejected"),
    ("Retried", "retried"),
    ("Writes", "writes"),
    ("Req.", "requests"),
    ("Took", "duration"),
)
# Shown only when the run has a segment (entries and exits) or users checked or waiting for a
# Braze profile, after the column named first; a run of segments only has no inserts, updates
# or deletions to show.
SEGMENT_COLUMNS = ("deleted", (("Ent.", "entered"), ("Exit", "exited")))
CHECK_COLUMNS = ("rejected", (("Wait", "waiting"), ("Chk.", "checked")))
USER_CHANGES = ("inserted", "updated", "deleted")


def columns(segments: bool, checks: bool, users: bool = True) -> list[tuple[str, str]]:
    """The table's columns for a run with (or without) segments, profile checks and other
    services (``users``: inserts, updates and deletions)."""
    out: list[tuple[str, str]] = []
    for label, key in COLUMNS:
        if users or key not in USER_CHANGES:
            out.append((label, key))
        for wanted, (after, extra) in ((segments, SEGMENT_COLUMNS), (checks, CHECK_COLUMNS)):
            if wanted and key == after:
                out.extend(extra)
    return out


def cells(r: ActivationRun, app: App[Any]) -> dict[str, Text]:
    """Every cell of one activation's row, by column key."""
    return {
        "activation": plain(r.activation),
        "status": status_cell(app, r.status),
        "rows": number(r.source_rows),
        "inserted": number(r.inserted),
        "updated": number(r.updated),
        "deleted": number(r.deleted) if r.is_segment else blocked(r.deleted, r.deletes_blocked),
        "entered": number(r.entered),
        "exited": blocked(r.exited, r.deletes_blocked) if r.is_segment else number(r.exited),
        "unchanged": number(r.unchanged),
        "rejected": number(r.rejected, warn=True, app=app),
        "waiting": number(r.waiting, warn=True, app=app),
        "checked": number(r.profiles_checked),
        "retried": number(r.retried),
        "writes": number(r.attribute_writes),
        "requests": number(r.requests),
        "duration": plain(duration(r.duration)),
    }


class FiguresTable(Table):
    """One row per activation of the run; keys are activation names."""

    DEFAULT_CSS = """
    FiguresTable { height: auto; max-height: 8; }
    """

    def on_mount(self) -> None:
        """Declare the columns (segment and profile-check columns come with a run that has them)."""
        self._declare(columns(False, False))

    def _declare(self, wanted: list[tuple[str, str]]) -> None:
        if [str(k.value) for k in self.columns] == [key for _, key in wanted]:
            return
        self.clear(columns=True)
        for label, key in wanted:
            self.add_column(label, key=key)

    def show(self, parts: Sequence[ActivationRun]) -> None:
        """Fill the table."""
        segments = any(r.is_segment for r in parts)
        checks = any(r.waiting or r.profiles_checked or r.export_calls for r in parts)
        users = not parts or not all(r.is_segment for r in parts)
        wanted = columns(segments, checks, users)
        self._declare(wanted)
        self.clear()
        for r in parts:
            row = cells(r, self.app)
            self.add_row(*(row[key] for _, key in wanted), key=r.activation)
