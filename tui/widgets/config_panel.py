"""An activation's configuration (model, destination, identifier, mode, owner) and its mapping
(for a segment: what membership becomes in Braze)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..formatting import SEGMENT_MODE

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
        ("Description", e.description.strip() or "—"),
        ("Owner", f"{e.owner_name} <{e.owner_email}>" if e.owner_email else (e.owner_name or "—")),
        ("Tags", ", ".join(e.tags) or "—"),
        ("Model", f"{a.model.name}  {a.model.relation_name or ''}"),
        ("Destination", f"{dest.name} · {dest.label}" if dest.label else dest.name),
        ("REST URL", dest.rest_url),
        ("Service", a.service),
        ("Sync mode", sync_mode_text(a)),
        ("Identifier", ident),
        *segment_rows(a),
        *event_rows(a),
        *profile_rows(a),
        ("Schedule", a.schedule or "— (runs when you run it)"),
    ]
    for key, value in rows:
        grid.add_row(key, Text(value))
    return grid


def sync_mode_text(a: Activation) -> str:
    """``upsert``, ``mirror (max_deletes 10%)``, ``segment (entries and exits)``."""
    if a.segment is not None:
        return SEGMENT_MODE
    return a.sync_mode + (f" (max_deletes {a.max_deletes})" if a.sync_mode == "mirror" else "")


def segment_rows(a: Activation) -> list[tuple[str, str]]:
    """The segment part of subscription_status and user_lists activations (nothing otherwise)."""
    seg = a.segment
    if seg is None:
        return []
    rows: list[tuple[str, str]] = []
    if seg.subscription_group_id:
        rows.append(("Subscription group", seg.subscription_group_id))
    if seg.audience_name is not None:
        rows.append(("Audience", seg.audience_name))
        rows.append(("Attribute", f"{seg.attribute} (boolean)"))
    if seg.max_exits is not None:
        rows.append(("Max exits", f"{seg.max_exits} (a run with more exits sends none of them)"))
    return rows


def profile_rows(a: Activation) -> list[tuple[str, str]]:
    """Update-only activations (update mode, segments) wait for users' Braze profiles."""
    if not a.updates_existing_only:
        return []
    return [("Profiles", "existing Braze users only; others wait (checked with /users/export/ids)")]


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


def membership_rows(a: Activation) -> tuple[str, list[tuple[str, str]]]:
    """What a segment's members and leavers become in Braze: the heading (the subscription or
    the list's boolean attribute) and one row per kind of user (nothing for other services)."""
    seg = a.segment
    if seg is None:
        return "", []
    if seg.subscription_group_id:
        heading, enter, leave = "Subscription", "subscribed", "unsubscribed"
    else:
        heading, enter, leave = seg.attribute or "", "true", "false"
    return heading, [("in the model", enter), ("left the model", leave), ("never in it", "not touched")]


def mapping_renderable(a: Activation) -> Table:
    """Model column → Braze attribute (or event property), in declared order; for a segment,
    members and leavers → what Braze records."""
    mapping = Table(expand=True, box=None, padding=(0, 1), show_edge=False)
    if a.segment is not None:
        heading, rows = membership_rows(a)
        mapping.add_column("User", style="bold", no_wrap=True)
        mapping.add_column(heading, overflow="fold")
        for who, braze in rows:
            mapping.add_row(Text(who), Text(braze))
        return mapping
    mapping.add_column("Model column", style="bold", overflow="fold")
    mapping.add_column("Braze property" if is_event(a) else "Braze attribute", overflow="fold")
    for column, attribute in a.mapping:
        mapping.add_row(Text(column), Text(attribute))
    return mapping


def mapping_title(a: Activation) -> str:
    """``Mapping (14)``, ``Properties (2)``, or what a segment's membership is written to."""
    seg = a.segment
    if seg is not None:
        return "Membership: " + ("subscription group" if seg.subscription_group_id else "user list")
    kind = "Properties" if is_event(a) else "Mapping"
    return f"{kind} ({len(a.mapping)})"


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
        self.border_title = mapping_title(activation)

    def compose(self) -> ComposeResult:
        """One static renderable."""
        yield Static(mapping_renderable(self.activation))
