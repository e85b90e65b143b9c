"""The run history of one activation: newest first, one page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..formatting import absolute, duration, short_id
from .cells import number, plain, status_cell
from .table import Table

if TYPE_CHECKING:
    import datetime as dt

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


class RunHistoryTable(Table):
    """Runs keyed by run id; ``append`` adds the next page."""

    def on_mount(self) -> None:
        """Declare the columns."""
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def append(self, runs: Sequence[ActivationRun], now: dt.datetime) -> None:
        """Add runs at the bottom (skipping any already shown)."""
        app = self.app
        for r in runs:
            if r.run_id in self.rows:
                continue
            deleted = number(r.deleted)
            if r.deletes_blocked:
                deleted.append(f" +{r.deletes_blocked:,} blocked")
            self.add_row(
                plain(absolute(r.started_at, now)),
                plain(duration(r.duration)),
                status_cell(app, r.status),
                number(r.inserted),
                number(r.updated),
                deleted,
                number(r.rejected, warn=True, app=app),
                number(r.attribute_writes),
                plain(short_id(r.run_id)),
                key=r.run_id,
            )
