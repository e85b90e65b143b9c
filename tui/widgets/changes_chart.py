"""A sparkline of users changed per run, oldest on the left, with its range."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.containers import Vertical
from textual.widgets import Label, Sparkline

if TYPE_CHECKING:
    from textual.app import ComposeResult


class ChangesChart(Vertical):
    """Label plus Sparkline."""

    DEFAULT_CSS = """
    ChangesChart { height: auto; }
    ChangesChart > Sparkline { height: 2; margin: 0 1; }
    ChangesChart > Label { color: $text-muted; margin: 0 1; }
    """

    def compose(self) -> ComposeResult:
        """The caption and the line."""
        yield Label("Changes per run: loading…", id="chart-caption")
        yield Sparkline([], summary_function=max, id="chart")

    def show(self, values: Sequence[int]) -> None:
        """Plot users changed per run (inserted + updated + deleted)."""
        caption = self.query_one("#chart-caption", Label)
        line = self.query_one(Sparkline)
        if not values:
            caption.update("Changes per run: no runs yet")
            line.data = []
            return
        caption.update(
            f"Changes per run (last {len(values)}, oldest → newest): "
            f"min {min(values):,} · max {max(values):,} · latest {values[-1]:,}"
        )
        line.data = [float(v) for v in values]
