"""A centred explanation shown instead of an empty table: what is missing and what to do."""

from __future__ import annotations

from textual.widgets import Static


class EmptyState(Static):
    """Title plus a hint (Textual content markup)."""

    DEFAULT_CSS = """
    EmptyState {
        width: 1fr;
        height: auto;
        padding: 1 4;
        margin: 1 2;
        border: round $primary-muted;
        color: $text-muted;
        text-align: center;
    }
    """

    def show(self, title: str, hint: str) -> None:
        """Display a message and make the widget visible."""
        self.update(f"[b $text]{title}[/]\n\n{hint}")
        self.display = True

    def hide(self) -> None:
        """Hide the widget."""
        self.display = False
