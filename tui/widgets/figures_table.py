"""Each activation's figures in one run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..formatting import duration
from .cells import number, plain, status_cell
from .table import Table

if TYPE_CHECKING:
    from dbt_dinmo.catalog import ActivationRun

COLUMNS = (
    ("Activation", "activation"),
    ("Status", "status"),
    ("Rows", "rows"),
    ("Ins.", "inserted"),
    ("Upd.", "updated"),
    ("Del.", "deleted"),
    ("Same", "unchanged"),
    ("Rej.", "rejected"),
    ("Retried", "retried"),
    ("Writes", "writes"),
    ("Req.", "requests"),
    ("Took", "duration"),
)


class FiguresTable(Table):
    """One row per activation of the run; keys are activation names."""

    DEFAULT_CSS = """
    FiguresTable { height: auto; max-height: 8; }
    """

    def on_mount(self) -> None:
        """Declare the columns."""
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def show(self, parts: Sequence[ActivationRun]) -> None:
        """Fill the table."""
        self.clear()
        app = self.app
        for r in parts:
            deleted = number(r.deleted)
            if r.deletes_blocked:
                deleted.append(f" +{r.deletes_blocked:,} blocked")
            self.add_row(
                plain(r.activation),
                status_cell(app, r.status),
                number(r.source_rows),
                number(r.inserted),
                number(r.updated),
                deleted,
                number(r.unchanged),
                number(r.rejected, warn=True, app=app),
                number(r.retried),
                number(r.attribute_writes),
                number(r.requests),
                plain(duration(r.duration)),
                key=r.activation,
            )
