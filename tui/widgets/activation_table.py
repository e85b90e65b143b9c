"""The activations table: one row per activation, with its last run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..formatting import matches, relative
from .cells import plain, run_changes, status_cell
from .table import Table

if TYPE_CHECKING:
    import datetime as dt

    from rich.text import Text
    from textual.app import App

    from dbt_dinmo.activation import Activation
    from dbt_dinmo.catalog import ActivationRun

COLUMNS = (
    ("Activation", "name"),
    ("Service", "service"),
    ("Mode", "mode"),
    ("Model", "model"),
    ("Dest.", "destination"),
    ("Schedule", "schedule"),
    ("Last run", "last"),
    ("Changes", "changes"),
)


def search_text(a: Activation) -> str:
    """Everything the ``/`` filter looks in."""
    e = a.exposure
    seg = a.segment
    segment = [seg.subscription_group_id or "", seg.audience_name or "", seg.attribute or ""] if seg else []
    return " ".join(
        [
            a.name,
            a.service,
            a.sync_mode,
            a.model.name,
            a.model.relation_name or "",
            a.destination.name,
            a.destination.label,
            a.schedule or "",
            e.label,
            e.description,
            e.owner_name,
            e.owner_email,
            " ".join(e.tags),
            " ".join(attr for _, attr in a.mapping),
            *segment,
        ]
    )


def schedule_text(a: Activation, next_due: Mapping[str, dt.datetime | None], now: dt.datetime) -> Text:
    """The cron expression and when it is next due."""
    if not a.schedule:
        return plain("—")
    return plain(f"{a.schedule} (next {relative(next_due.get(a.name), now)})")


def last_run_cell(app: App[Any], last: ActivationRun | None, now: dt.datetime, loading: bool) -> Text:
    """Status and age of the last run; an ellipsis while the history loads."""
    if last is not None:
        return status_cell(app, last.status, relative(last.started_at, now))
    return plain("…") if loading else status_cell(app, "")


class ActivationTable(Table):
    """Activations, filtered by any text; keys are activation names."""

    def on_mount(self) -> None:
        """Declare the columns."""
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def refresh_times(
        self,
        activations: Sequence[Activation],
        last_runs: Mapping[str, ActivationRun],
        next_due: Mapping[str, dt.datetime | None],
        now: dt.datetime,
    ) -> None:
        """Re-render only the relative times (the clock moved), keeping scroll and cursor."""
        app = self.app
        for a in activations:
            if a.name not in self.rows:
                continue
            if a.schedule:
                self.update_cell(a.name, "schedule", schedule_text(a, next_due, now))
            last = last_runs.get(a.name)
            if last is not None:
                self.update_cell(a.name, "last", last_run_cell(app, last, now, False))

    def show(
        self,
        activations: Sequence[Activation],
        last_runs: Mapping[str, ActivationRun],
        next_due: Mapping[str, dt.datetime | None],
        now: dt.datetime,
        query: str = "",
        *,
        loading: bool = False,
    ) -> int:
        """Fill the table (keeping the cursor on the same activation); return the rows shown."""
        keep = self.selected_key
        self.clear()
        app = self.app
        shown = 0
        for a in activations:
            if query and not matches(search_text(a), query):
                continue
            last = last_runs.get(a.name)
            self.add_row(
                plain(a.name),
                plain(a.service),
                plain(a.sync_mode),
                plain(a.model.name),
                plain(a.destination.name),
                schedule_text(a, next_due, now),
                status_cell(app, last.status, relative(last.started_at, now))
                if last
                else status_cell(app, ""),
                run_changes(last, app) if last else plain("—"),
                key=a.name,
            )
            shown += 1
        self.select_key(keep)
        return shown
