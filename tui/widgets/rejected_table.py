"""Rejected rows: identifier, reason, where the rejection came from, and the dashboard link.

Users waiting for a Braze profile (not sent, checked again next run) are stored beside the
rejected rows with the origin ``waiting``; their origin reads ``◷ waiting``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..formatting import WAITING_GLYPH
from .cells import plain
from .table import Table

if TYPE_CHECKING:
    from dbt_dinmo.catalog import RejectedRow

REASON_WIDTH = 72
WAITING_ORIGIN = "waiting"
COLUMNS = (("Identifier", "identifier"), ("Reason", "reason"), ("Origin", "origin"), ("Braze link", "link"))


def origin_text(origin: str) -> str:
    """Where a row was kept out: ``dinmo``, ``braze``, or ``◷ waiting`` (for a Braze profile)."""
    return f"{WAITING_GLYPH} {origin}" if origin == WAITING_ORIGIN else origin


class RejectedTable(Table):
    """Rows in the catalog's order; the row index maps to the page's rows."""

    def on_mount(self) -> None:
        """Declare the columns."""
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def show(self, rows: Sequence[RejectedRow]) -> None:
        """Fill the table (cursor back on the first row)."""
        self.clear()
        for i, r in enumerate(rows):
            reason = r.reason if len(r.reason) <= REASON_WIDTH else r.reason[: REASON_WIDTH - 1] + "…"
            self.add_row(
                plain(r.identifier or "(none)"),
                plain(reason),
                plain(origin_text(r.origin)),
                plain("yes (o)" if r.link else "—"),
                key=str(i),
            )
