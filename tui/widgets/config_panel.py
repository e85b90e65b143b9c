"""An activation's configuration (model, destination, identifier, mode, owner) and its mapping."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from dbt_dinmo.activation import Activation


def settings_renderable(a: Activation) -> Table:
    """Key/value grid of everything but the mapping."""
    e = a.exposure
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    ident = f"{a.identifier.column} ({a.identifier.type}"
    ident += f", alias label {a.identifier.alias_label})" if a.identifier.alias_label else ")"
    dest = a.destination
    rows = [
        ("Label", e.label or "—"),
        ("Description", e.description or "—"),
        ("Owner", f"{e.owner_name} <{e.owner_email}>" if e.owner_email else (e.owner_name or "—")),
        ("Tags", ", ".join(e.tags) or "—"),
        ("Model", f"{a.model.name}  {a.model.relation_name or ''}"),
        ("Destination", f"{dest.name} · {dest.label}" if dest.label else dest.name),
        ("REST URL", dest.rest_url),
        ("Service", a.service),
        ("Sync mode", a.sync_mode + (f" (max_deletes {a.max_deletes})" if a.sync_mode == "mirror" else "")),
        ("Identifier", ident),
        *event_rows(a),
        ("Schedule", a.schedule or "— (runs when you run it)"),
    ]
    for key, value in rows:
        grid.add_row(key, Text(value))
    return grid


def event_rows(a: Activation) -> list[tuple[str, str]]:
    """The event part of custom_events and purchases activations (nothing for attributes)."""
    ev = getattr(a, "events", None)
    if ev is None:
        return []
    rows = [
        ("Event name", getattr(ev, "event_name", None)),
        ("Event time", getattr(ev, "event_time", None)),
        ("Event id", getattr(ev, "event_id", None) or "— (hash of the row)"),
        ("Product id", getattr(ev, "product_id", None)),
        ("Price", getattr(ev, "price", None)),
        ("Currency", getattr(ev, "currency_column", None) or getattr(ev, "currency_value", None)),
        ("Quantity", getattr(ev, "quantity", None)),
        ("Cursor", getattr(ev, "cursor", None)),
    ]
    lookback = getattr(ev, "lookback", None)
    if getattr(ev, "cursor", None) and lookback is not None:
        rows.append(("Lookback", str(getattr(lookback, "text", lookback))))
    backfill = getattr(ev, "backfill", None)
    if backfill is not None:
        rows.append(("Backfill", str(backfill)))
    return [(key, str(value)) for key, value in rows if value]


def is_event(a: Activation) -> bool:
    """True for custom_events and purchases activations."""
    return getattr(a, "events", None) is not None


def mapping_renderable(a: Activation) -> Table:
    """Model column → Braze attribute (or event property), in declared order."""
    mapping = Table(expand=True, box=None, padding=(0, 1), show_edge=False)
    mapping.add_column("Model column", style="bold", overflow="fold")
    mapping.add_column("Braze property" if is_event(a) else "Braze attribute", overflow="fold")
    for column, attribute in a.mapping:
        mapping.add_row(Text(column), Text(attribute))
    return mapping


class ConfigPanel(VerticalScroll):
    """Scrollable settings of one activation."""

    def __init__(self, activation: Activation, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.activation = activation
        self.border_title = "Configuration"

    def compose(self) -> ComposeResult:
        """One static renderable."""
        yield Static(settings_renderable(self.activation))


class MappingPanel(VerticalScroll):
    """Scrollable mapping of one activation."""

    def __init__(self, activation: Activation, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.activation = activation
        kind = "Properties" if is_event(activation) else "Mapping"
        self.border_title = f"{kind} ({len(activation.mapping)})"

    def compose(self) -> ComposeResult:
        """One static renderable."""
        yield Static(mapping_renderable(self.activation))
