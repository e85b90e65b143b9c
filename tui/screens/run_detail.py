"""One run: each activation's figures, and its rejected rows (searchable, copyable, linked)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.markup import escape
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Static

from ..formatting import WAITING_GLYPH, absolute, duration, short_id, status_markup
from ..widgets.empty_state import EmptyState
from ..widgets.figures_table import FiguresTable
from ..widgets.rejected_table import RejectedTable
from .base import DinmoScreen

if TYPE_CHECKING:
    from dbt_dinmo.catalog import ActivationRun, RejectedPage, RejectedRow, RunInfo

SEARCH_DEBOUNCE = 0.2


def rejected_caption(activation: str | None, page: RejectedPage, part: ActivationRun | None) -> str:
    """``Rejected rows of x: 3``; with users waiting for a Braze profile, how many of each."""
    name = escape(activation or "this run")
    if part is None or not part.waiting:
        return f"Rejected rows of [b]{name}[/]: {page.total:,}"
    return (
        f"Rejected and waiting rows of [b]{name}[/]: {page.total:,} ({part.rejected:,} rejected, "
        f"{WAITING_GLYPH} {part.waiting:,} waiting for a Braze profile)"
    )


class RunDetailScreen(DinmoScreen):
    """Run summary, per-activation figures, rejected rows of the highlighted activation."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back"),
        Binding("slash", "search", "Search", id="search"),
        Binding("y", "copy", "Copy row", id="copy"),
        Binding("o", "open_link", "Open in Braze", id="open_link"),
    ]

    def __init__(self, run_id: str, activation: str | None = None) -> None:
        super().__init__(id="run-detail")
        self.run_id = run_id
        self.activation = activation
        self.search = ""
        self.page: RejectedPage | None = None
        self.parts: dict[str, ActivationRun] = {}
        self._debounce: Timer | None = None

    def compose(self) -> ComposeResult:
        """Header, summary, figures, search, rejected rows, selected row, footer."""
        yield Header()
        with Vertical(id="run-body"):
            yield Static(f"Run {short_id(self.run_id)}: loading…", id="run-summary")
            yield FiguresTable(id="figures")
            yield Static("Rejected rows", id="rejected-caption")
            yield Input(placeholder="Search rejected rows: identifier, reason, origin…", id="search")
            yield EmptyState(id="rejected-empty")
            yield RejectedTable(id="rejected")
            yield Static("", id="row-detail")
        yield Footer()

    @property
    def rejected_table(self) -> RejectedTable:
        """The rejected rows."""
        return self.query_one(RejectedTable)

    def on_mount(self) -> None:
        """Load the run."""
        self.sub_title = f"run {short_id(self.run_id)}"
        self.query_one("#rejected-empty", EmptyState).hide()
        self.query_one("#search", Input).display = False
        self.reload()

    def reload(self) -> None:
        """Fetch the run and its rejected rows again."""
        self.load("run", self.dinmo.catalog.run_detail, self.run_id)

    def loaded_run(self, run: RunInfo | None) -> None:
        """Show the summary and the figures, then the rejected rows."""
        now = self.dinmo.clock()
        summary = self.query_one("#run-summary", Static)
        if run is None:
            summary.update(f"Run {self.run_id} is not in the history (was the state reset?).")
            return
        summary.update(
            f"[b]{run.command}[/] {run.run_id}  {status_markup(run.status)}  "
            f"started {absolute(run.started_at, now)} · took {duration(run.duration)} · "
            f"{len(run.activations)} activation(s)"
        )
        self.parts = {a.activation: a for a in run.activations}
        figures = self.query_one(FiguresTable)
        figures.show(run.activations)
        names = [a.activation for a in run.activations]
        if self.activation not in names:
            self.activation = names[0] if names else None
        figures.select_key(self.activation)
        if len(names) > 1:
            figures.focus()
        else:
            self.rejected_table.focus()
        self.fetch_rejected()

    def fetch_rejected(self) -> None:
        """Query the rejected rows of the selected activation that match the search."""
        self.load("rejected", self.dinmo.catalog.rejected, self.run_id, self.activation, self.search)

    def loaded_rejected(self, page: RejectedPage) -> None:
        """Show the rejected rows."""
        self.page = page
        table = self.rejected_table
        table.show(page.rows)
        caption = rejected_caption(self.activation, page, self.parts.get(self.activation or ""))
        if page.search:
            caption += f" matching [b]{escape(page.search)}[/]"
        if page.total > len(page.rows):
            caption += f" (first {len(page.rows):,} shown; search to narrow)"
        self.query_one("#rejected-caption", Static).update(caption)
        empty = self.query_one("#rejected-empty", EmptyState)
        if page.rows:
            empty.hide()
            table.display = True
        else:
            table.display = False
            if page.search:
                empty.show("No rejected row matches", "Change the search, or press escape to clear it.")
            else:
                empty.show("No rejected rows", "Braze and dbt-dinmo accepted every row of this activation.")
        self._show_row()

    # -- selection ----------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#figures")
    def _activation_highlighted(self, event: DataTable.RowHighlighted) -> None:
        name = None if event.row_key.value is None else str(event.row_key.value)
        if name and name != self.activation:
            self.activation = name
            self.fetch_rejected()

    @on(DataTable.RowSelected, "#figures")
    def _activation_selected(self, event: DataTable.RowSelected) -> None:
        if self.rejected_table.display:
            self.rejected_table.focus()

    @on(DataTable.RowHighlighted, "#rejected")
    def _rejected_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_row()

    @property
    def selected_row(self) -> RejectedRow | None:
        """The highlighted rejected row."""
        table = self.rejected_table
        if self.page is None or not table.display or not table.row_count:
            return None
        index = table.cursor_row
        return self.page.rows[index] if 0 <= index < len(self.page.rows) else None

    def _show_row(self) -> None:
        row = self.selected_row
        detail = self.query_one("#row-detail", Static)
        if row is None:
            detail.update("")
            return
        text = Text()
        text.append(f"{row.identifier or '(no identifier)'}: ", style="bold")
        text.append(row.reason)
        if row.detail:
            text.append(f"  ({row.detail})")
        if row.link:
            text.append("\n")
            text.append(row.link, style=f"underline link {row.link}")
            text.append("   y copy · o open", style="dim")
        else:
            text.append("\n")
            text.append("y copy", style="dim")
        detail.update(text)

    # -- search -------------------------------------------------------------------------------
    def action_search(self) -> None:
        """Show and focus the search input."""
        box = self.query_one("#search", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(SEARCH_DEBOUNCE, lambda: self._apply_search(event.value))

    def _apply_search(self, value: str) -> None:
        if value.strip() != self.search:
            self.search = value.strip()
            self.fetch_rejected()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        self._apply_search(event.value)
        self.rejected_table.focus()

    # -- actions ------------------------------------------------------------------------------
    def action_back(self) -> None:
        """Leave the search, clear it, or go back."""
        box = self.query_one("#search", Input)
        if box.has_focus:
            self._apply_search(box.value)
            self.rejected_table.focus()
            if not box.value:
                box.display = False
            return
        if box.value:
            box.value = ""
            box.display = False
            self._apply_search("")
            return
        self.dismiss()

    def action_copy(self) -> None:
        """Copy the highlighted rejected row (tab-separated) to the clipboard."""
        row = self.selected_row
        if row is None:
            self.dinmo.notify("No rejected row is selected.", severity="warning")
            return
        self.dinmo.copy_text(
            row.as_text(), f"Copied the rejected row of {row.identifier or 'an unknown user'}."
        )

    def action_open_link(self) -> None:
        """Open the highlighted row's Braze dashboard link in the browser."""
        row = self.selected_row
        if row is None or not row.link:
            self.dinmo.notify("No Braze dashboard link for this row.", severity="warning")
            return
        self.dinmo.open_url(row.link)
        self.dinmo.notify(f"Opening {row.link}")
