"""One activation: its configuration, a sparkline of changes per run and its run history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.widgets import DataTable, Footer, Header, Static

from ..widgets.changes_chart import ChangesChart
from ..widgets.config_panel import ConfigPanel, MappingPanel
from ..widgets.empty_state import EmptyState
from ..widgets.run_history import RunHistoryTable
from .base import DinmoScreen

if TYPE_CHECKING:
    from dbt_dinmo.activation import Activation
    from dbt_dinmo.catalog import ActivationRun, Catalog

    from ..messages import RunsChanged

PAGE = 100


@dataclass(frozen=True)
class HistoryPage:
    """First page of runs, the total count and the sparkline values."""

    runs: list[ActivationRun]
    total: int
    changes: list[int]


def first_page(catalog: Catalog, name: str) -> HistoryPage:
    """Runs, count and changes per run of one activation (three small queries)."""
    return HistoryPage(catalog.runs(name, PAGE, 0), catalog.run_count(name), catalog.changes_per_run(name))


class DetailScreen(DinmoScreen):
    """Config on the left; chart and run history on the right."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back", id="back"),
        Binding("enter", "open_run", "Run detail", id="open_run"),
        Binding("p", "plan", "Plan", id="plan"),
        Binding("s", "sync", "Sync", id="sync"),
    ]

    def __init__(self, activation: Activation) -> None:
        super().__init__(id="detail")
        self.activation = activation
        self.total = 0
        self._loading_more = False

    def compose(self) -> ComposeResult:
        """Header, two panes, footer."""
        a = self.activation
        yield Header()
        yield Static(
            f"[b]{escape(a.name)}[/]  [$text-muted]{escape(a.service)} · {escape(a.sync_mode)} · "
            f"{escape(a.model.name)} → {escape(a.destination.name)}[/]",
            id="title",
        )
        with Horizontal(id="detail-top"):
            yield ConfigPanel(a, id="config")
            yield MappingPanel(a, id="mapping")
        with Vertical(id="history-pane"):
            yield ChangesChart(id="changes")
            yield Static("Run history: loading…", id="history-caption")
            yield EmptyState(id="history-empty")
            yield RunHistoryTable(segment=a.is_segment, checks=a.updates_existing_only, id="history")
        yield Footer()

    @property
    def table(self) -> RunHistoryTable:
        """The run history table."""
        return self.query_one(RunHistoryTable)

    def on_mount(self) -> None:
        """Focus the history and load it."""
        self.sub_title = self.activation.name
        self.query_one("#history-empty", EmptyState).hide()
        self.table.focus()
        self.reload()

    def reload(self) -> None:
        """Fetch the first page of runs again."""
        self.load("history", first_page, self.dinmo.catalog, self.activation.name)

    def loaded_history(self, page: HistoryPage) -> None:
        """Show the chart and the first page."""
        keep = self.table.selected_key
        self.total = page.total
        self.query_one(ChangesChart).show(page.changes)
        self.table.clear()
        self.table.append(page.runs, self.dinmo.clock())
        self.table.select_key(keep)
        self._caption()
        empty = self.query_one("#history-empty", EmptyState)
        if page.total:
            empty.hide()
            self.table.display = True
        else:
            self.table.display = False
            empty.show(
                "No runs yet",
                "Run [b]dbt-dinmo run[/] in the project, or press [b]s[/] to sync this activation now.",
            )

    def _caption(self) -> None:
        shown = self.table.row_count
        more = f" (newest {shown:,} of {self.total:,}; scroll down for more)" if shown < self.total else ""
        self.query_one("#history-caption", Static).update(f"Run history: {self.total:,} run(s){more}")

    @on(DataTable.RowHighlighted, "#history")
    def _near_end(self, event: DataTable.RowHighlighted) -> None:
        """Fetch the next page when the cursor reaches the last row."""
        shown = self.table.row_count
        if event.cursor_row >= shown - 1 and shown < self.total and not self._loading_more:
            self._loading_more = True
            self.load("more", self.dinmo.catalog.runs, self.activation.name, PAGE, shown)

    def loaded_more(self, runs: list[ActivationRun]) -> None:
        """Append the next page."""
        self._loading_more = False
        self.table.append(runs, self.dinmo.clock())
        self._caption()

    def failed_more(self, error: BaseException) -> None:
        """Allow another try."""
        self._loading_more = False

    def on_runs_changed(self, message: RunsChanged) -> None:
        """A sync of this activation ended: reload."""
        if message.activation == self.activation.name:
            self.reload()

    @on(DataTable.RowSelected, "#history")
    def _run_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_run()

    def action_open_run(self) -> None:
        """Open the highlighted run."""
        run_id = self.table.selected_key if self.table.display else None
        if run_id:
            self.dinmo.open_run(run_id, self.activation.name)

    def action_back(self) -> None:
        """Back to the activations."""
        self.dismiss()

    def action_plan(self) -> None:
        """Plan this activation."""
        self.dinmo.request_plan(self.activation.name)

    def action_sync(self) -> None:
        """Sync this activation (after a confirmation)."""
        self.dinmo.request_sync(self.activation.name)
