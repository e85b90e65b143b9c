"""Progress of a sync started from the dashboard; it keeps running if the modal is closed."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import ProgressBar, Static

from ..formatting import duration, status_markup

if TYPE_CHECKING:
    from dbt_dinmo.results import ActivationResult

PHASES = {
    "starting": "opening the warehouse and the state…",
    "reading": "reading the model and computing the diff…",
    "sending": "sending to Braze…",
    "deleting": "deleting users who left the model…",
    "finished": "recording the run…",
}


class SyncScreen(ModalScreen[None]):
    """Phase, progress bar, and the outcome once the sync ends."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,q", "close", "Close", id="close_sync"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__(id="sync")
        self.activation = name
        self.done = False

    def compose(self) -> ComposeResult:
        """Title, phase, bar, outcome."""
        with Vertical(id="dialog"):
            yield Static(f"Syncing [b]{escape(self.activation)}[/]", id="dialog-title")
            yield Static(PHASES["starting"], id="sync-phase")
            yield ProgressBar(total=None, show_eta=False, id="sync-bar")
            yield Static("Press escape to hide this window; the sync continues.", id="sync-outcome")

    def progress(self, phase: str, done: int, total: int) -> None:
        """Show the runner's phase and the objects acknowledged so far."""
        if self.done:
            return
        text = PHASES.get(phase, phase)
        if phase == "sending" and total:
            text = f"sending to Braze: {done:,} of {total:,} acknowledged"
            bar = self.query_one(ProgressBar)
            bar.update(total=total, progress=done)
        self.query_one("#sync-phase", Static).update(text)

    def finished(self, run_id: str, result: ActivationResult) -> None:
        """Show the outcome."""
        self.done = True
        bar = self.query_one(ProgressBar)
        bar.update(total=1, progress=1)
        message = f"\n{escape(result.message)}" if result.message else ""
        self.query_one("#sync-phase", Static).update(
            f"{status_markup(result.status)} in {duration(result.execution_time)} · run {run_id[:8]}"
        )
        self.query_one("#sync-outcome", Static).update(
            f"inserted {result.inserted:,} · updated {result.updated:,} · deleted {result.deleted:,} · "
            f"rejected {result.rejected:,} · attribute writes {result.attribute_writes:,}{message}\n\n"
            "Press enter to close."
        )

    def failed(self, error: str) -> None:
        """The sync could not run at all."""
        self.done = True
        self.query_one("#sync-phase", Static).update(status_markup("error"))
        self.query_one("#sync-outcome", Static).update(escape(error) + "\n\nPress enter to close.")

    def action_close(self) -> None:
        """Hide the modal (a running sync goes on)."""
        self.dismiss()
