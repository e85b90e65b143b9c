"""The main screen: every activation with its last run; ``/`` filters, ``enter`` opens one."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.markup import escape
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Static

from dbt_dinmo.catalog import next_due

from ..widgets.activation_table import ActivationTable
from ..widgets.empty_state import EmptyState
from .base import DinmoScreen

if TYPE_CHECKING:
    from dbt_dinmo.catalog import ActivationRun, Listing

    from ..messages import RunsChanged

FILTER_DEBOUNCE = 0.15
CLOCK_TICK = 30.0


class ActivationsScreen(DinmoScreen):
    """Activations table, filter input, empty states."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("enter", "open", "Open", id="open"),
        Binding("p", "plan", "Plan", id="plan"),
        Binding("s", "sync", "Sync", id="sync"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="clear_filter"),
    ]

    def __init__(self) -> None:
        super().__init__(id="activations")
        self.query_text = ""
        self.runs_state = "loading"  # then "loaded", or the reason the history is unavailable
        self._debounce: Timer | None = None

    def compose(self) -> ComposeResult:
        """Header, filter, table, empty state, footer."""
        yield Header()
        with Vertical(id="main"):
            yield Input(placeholder="Filter activations (any text: name, model, owner, tag…)", id="filter")
            yield Static("", id="summary")
            yield EmptyState(id="empty")
            yield ActivationTable(id="activations-table", fixed_columns=1)
        yield Footer()

    @property
    def table(self) -> ActivationTable:
        """The activations table."""
        return self.query_one(ActivationTable)

    def on_mount(self) -> None:
        """Start loading; the table has the focus."""
        self.query_one("#filter", Input).display = False
        self.query_one(EmptyState).show("Loading activations…", "Reading target/manifest.json.")
        self.table.display = False
        self.table.focus()
        self.set_interval(CLOCK_TICK, self.tick)
        self.reload()

    # -- loading ------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the manifest, then the last runs."""
        self.runs_state = "loading"
        self.load("listing", self.dinmo.catalog.activations)

    def loaded_listing(self, listing: Listing) -> None:
        """Show the activations (or explain why there are none), then fetch their last runs."""
        self.dinmo.set_listing(listing)
        if listing.problems:
            count = len(listing.problems)
            self.dinmo.notify(
                f"{count} configuration problem(s); `dbt-dinmo validate` lists them.\n{listing.problems[0]}",
                title="Configuration",
                severity="warning",
                markup=False,
                timeout=8,
            )
        self.render_rows()
        if listing.activations:
            self.load("last_runs", self.dinmo.catalog.last_runs)

    def loaded_last_runs(self, runs: dict[str, ActivationRun]) -> None:
        """Fill in the last-run columns."""
        self.dinmo.last_runs = runs
        self.runs_state = "loaded"
        self.render_rows()

    def failed_listing(self, error: BaseException) -> None:
        """The project could not be read at all (the app notifies too)."""
        self._empty("Cannot read the project", f"{escape(str(error))}\n\nFix it, then press [b]r[/].")

    def tick(self) -> None:
        """The clock moved: update the relative times."""
        listing = self.dinmo.listing
        if listing is None or not listing.activations or not self.table.display:
            return
        now = self.dinmo.clock()
        dues = {a.name: next_due(a.schedule, now) for a in listing.activations if a.schedule}
        self.table.refresh_times(listing.activations, self.dinmo.last_runs, dues, now)

    def failed_last_runs(self, error: BaseException) -> None:
        """Keep what is shown; say why the history is missing (the app notifies too)."""
        self.runs_state = f"run history unavailable ({type(error).__name__}); press r to retry"
        self.render_rows()

    def on_runs_changed(self, message: RunsChanged) -> None:
        """A sync ended: refresh the last runs."""
        if self.dinmo.listing is not None and self.dinmo.listing.activations:
            self.load("last_runs", self.dinmo.catalog.last_runs)

    # -- rendering ----------------------------------------------------------------------------
    def render_rows(self) -> None:
        """Render the table from the app's data, the filter and the clock."""
        listing = self.dinmo.listing
        empty = self.query_one(EmptyState)
        if listing is None:
            return
        if listing.manifest_missing:
            self._empty(
                "No manifest yet",
                f"dbt-dinmo reads activations from [b]{escape(self._shown_path(listing))}[/].\n"
                "Run [b]dbt build[/] (or [b]dbt parse[/]) in the project, then press [b]r[/].",
            )
            return
        if not listing.activations:
            if listing.problems:
                detail = escape("\n".join(str(p) for p in listing.problems[:5]))
                self._empty("No valid activation", f"{detail}\n\nFix them, rebuild, then press [b]r[/].")
            else:
                self._empty(
                    "No activations in the manifest",
                    "Declare an exposure with [b]config.meta.dinmo[/] (see the README), "
                    "run [b]dbt build[/], then press [b]r[/].",
                )
            return
        now = self.dinmo.clock()
        dues = {a.name: next_due(a.schedule, now) for a in listing.activations if a.schedule}
        shown = self.table.show(
            listing.activations,
            self.dinmo.last_runs,
            dues,
            now,
            self.query_text,
            loading=self.runs_state == "loading",
        )
        self.table.display = True
        total = len(listing.activations)
        summary = f"{total} activation(s)"
        if self.query_text:
            summary = f"{shown} of {total} activation(s) match [b]{escape(self.query_text)}[/]"
        if listing.project_name:
            summary += f" in project [b]{listing.project_name}[/]"
        if self.runs_state == "loading":
            summary += " · loading the run history…"
        elif self.runs_state != "loaded":
            summary += f" · {escape(self.runs_state)}"
        elif not any(self.dinmo.last_runs.get(a.name) for a in listing.activations):
            summary += " · no runs yet: run [b]dbt-dinmo run[/] or press [b]s[/] to sync the selected one"
        self.query_one("#summary", Static).update(summary)
        if shown:
            empty.hide()
        else:
            empty.show(
                "No activation matches",
                f"Nothing matches [b]{escape(self.query_text)}[/]; press escape to clear.",
            )

    def _shown_path(self, listing: Listing) -> str:
        path = listing.manifest_path
        if path is None:
            return "target/manifest.json"
        try:
            return str(path.relative_to(self.dinmo.catalog.project.dir))
        except ValueError:
            return str(path)

    def _empty(self, title: str, hint: str) -> None:
        self.table.display = False
        self.query_one("#summary", Static).update("")
        self.query_one(EmptyState).show(title, hint)

    # -- filter -------------------------------------------------------------------------------
    def action_filter(self) -> None:
        """Show and focus the filter input."""
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(FILTER_DEBOUNCE, lambda: self._apply_filter(event.value))

    def _apply_filter(self, value: str) -> None:
        self.query_text = value.strip()
        self.render_rows()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._apply_filter(event.value)
        self.table.focus()

    def action_clear_filter(self) -> None:
        """Leave the filter input; a second escape clears the filter."""
        box = self.query_one("#filter", Input)
        if box.has_focus:
            self._apply_filter(box.value)
            self.table.focus()
            if not box.value:
                box.display = False
            return
        if box.value or self.query_text:
            box.value = ""
            self._apply_filter("")
        box.display = False

    # -- actions on the selected activation ---------------------------------------------------
    @property
    def selected(self) -> str | None:
        """The highlighted activation's name."""
        if not self.table.display:
            return None
        return self.table.selected_key

    @on(DataTable.RowSelected, "#activations-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        """Open the highlighted activation's detail."""
        if self.selected:
            self.dinmo.open_activation(self.selected)

    def action_plan(self) -> None:
        """Plan the highlighted activation."""
        if self.selected:
            self.dinmo.request_plan(self.selected)

    def action_sync(self) -> None:
        """Sync the highlighted activation (after a confirmation)."""
        if self.selected:
            self.dinmo.request_sync(self.selected)
