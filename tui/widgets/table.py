"""A DataTable with the dashboard's keyboard habits (vim keys, row cursor)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable


class Table(DataTable[object]):
    """Row cursor, zebra stripes, ``j``/``k`` and ``g``/``G`` besides the arrows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None, fixed_columns: int = 0) -> None:
        super().__init__(
            id=id, classes=classes, cursor_type="row", zebra_stripes=True, fixed_columns=fixed_columns
        )

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor (None when the table is empty)."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return None if row_key.value is None else str(row_key.value)

    def select_key(self, key: str | None) -> None:
        """Move the cursor to the row with this key, if it is shown."""
        if key is None:
            return
        try:
            index = self.get_row_index(key)
        except Exception:  # the row is filtered out or gone
            return
        self.move_cursor(row=index, animate=False)
