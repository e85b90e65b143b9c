"""Key bindings (from :mod:`..keys`) in a modal."""

from __future__ import annotations

from typing import ClassVar

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..keys import KEYS, NOTES


def keys_renderable() -> Group:
    """Where, key, what it does; then the notes."""
    table = Table(box=box.SIMPLE_HEAD, expand=True, title="dbt-dinmo dashboard: keys", title_style="bold")
    table.add_column("Where", style="dim", no_wrap=True)
    table.add_column("Key", style="bold", no_wrap=True)
    table.add_column("Does", overflow="fold")
    for where, keys, does in KEYS:
        table.add_row(where, keys, does)
    notes = [Text(note, style="dim") for note in NOTES]
    return Group(table, *notes, Text("\nPress escape to close.", style="dim"))


class HelpScreen(ModalScreen[None]):
    """A scrollable key table; ``escape``, ``q``, ``?`` or ``f1`` closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "close", "Close", id="close_help"),
    ]

    def compose(self) -> ComposeResult:
        """The help text."""
        with VerticalScroll(id="help-dialog"):
            yield Static(keys_renderable(), id="help-text")

    def action_close(self) -> None:
        """Close the help."""
        self.dismiss()
