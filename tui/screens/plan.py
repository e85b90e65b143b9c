"""The dry run of one activation: counts by operation (a segment's entries and exits), attribute
writes, blocked deletions or exits, the profile checks update-only sends need, samples."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, ClassVar

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.widgets import Footer, Header, LoadingIndicator, Static

from ..formatting import WAITING_GLYPH, export_time, status_markup
from .base import DinmoScreen

if TYPE_CHECKING:
    from dbt_dinmo.results import ActivationResult


def counts_renderable(r: ActivationResult, events: bool = False, segment: bool = False) -> Table:
    """Operation, count and what it means (events: sent once, never updated or deleted; segments:
    members entering and leaving), then the profile checks an update-only activation needs."""
    table = Table(title="What a run would do", title_justify="left", expand=False)
    table.add_column("Operation")
    table.add_column("Count", justify="right")
    table.add_column("Note")
    if events:
        rows = [
            ("Source rows", r.source_rows, "rows the model returns (in the cursor window)"),
            ("Send", r.inserted, "events or purchases never sent before"),
            ("Already sent", r.unchanged, "recorded as sent: never sent again"),
            ("Rejected", r.rejected, "invalid rows, kept out of Braze (retried once fixed)"),
        ]
    elif segment:
        exits_note = "members who left the model"
        if r.deletes_blocked:
            exits_note = (
                f"{r.deletes_blocked:,} exit(s) blocked by the exit guard (max_exits or an empty model)"
            )
        rows = [
            ("Source rows", r.source_rows, "rows the model returns: the segment's members"),
            ("Enter", r.entered, "new members (subscribed, or flagged true)"),
            ("Exit", r.exited, exits_note),
            ("Unchanged", r.unchanged, "members already synced: nothing to send"),
            ("Rejected", r.rejected, "invalid rows, kept out of Braze"),
        ]
    else:
        deletes_note = "mirror: users who left the model"
        if r.deletes_blocked:
            deletes_note = f"{r.deletes_blocked:,} deletion(s) blocked by the max_deletes guard"
        rows = [
            ("Source rows", r.source_rows, "rows the model returns"),
            ("Insert", r.inserted, "new users for Braze"),
            ("Update", r.updated, "users with at least one changed attribute"),
            ("Delete", r.deleted, deletes_note),
            ("Unchanged", r.unchanged, "nothing to send"),
            ("Rejected", r.rejected, "invalid rows, kept out of Braze"),
        ]
    for name, value, note in rows:
        table.add_row(name, f"{value:,}", note)
    table.add_section()
    table.add_row("Data points", f"{r.attribute_writes:,}", "attribute writes / properties Braze would count")
    table.add_row("Requests", f"{r.requests:,}", "estimated Braze API calls")
    checks = profile_check_rows(r)
    if checks:
        table.add_section()
        for label, shown, why in checks:
            table.add_row(label, shown, why)
    return table


def profile_check_rows(r: ActivationResult) -> list[tuple[str, str, str]]:
    """Profile checks: users to check, /users/export/ids calls and their time, users waiting
    since their last check (nothing when the plan needs no check)."""
    if not (r.profiles_checked or r.waiting or r.export_calls):
        return []
    return [
        (
            "Profile checks",
            f"{r.profiles_checked:,}",
            "users not known to exist in Braze, checked before sending",
        ),
        (
            "Export calls",
            f"{r.export_calls:,}",
            f"/users/export/ids requests needed ({export_time(r.export_seconds, r.export_calls)})",
        ),
        (
            f"{WAITING_GLYPH} Waiting",
            f"{r.waiting:,}",
            "of those, not found at their last check (not sent until their profile exists)",
        ),
    ]


def samples_renderable(r: ActivationResult, segment: bool = False) -> Group:
    """Rejections, planned deletions (a segment: members leaving) and sample payloads."""
    parts: list[object] = []
    if r.rejections:
        rej = Table(title=f"Rejected rows (sample of {len(r.rejections)})", title_justify="left", expand=True)
        rej.add_column("Identifier", no_wrap=True)
        rej.add_column("Reason", overflow="fold")
        rej.add_column("Origin", no_wrap=True)
        for item in r.rejections[:20]:
            rej.add_row(
                Text(str(item.get("identifier"))), Text(str(item.get("reason"))), str(item.get("origin"))
            )
        parts += [rej, Text("")]
    if r.planned_deletes:
        what = "Members who would leave" if segment else "Users to delete"
        parts.append(Text(f"{what} (sample): {', '.join(r.planned_deletes)}", style="bold"))
        parts.append(Text(""))
    if r.samples:
        parts.append(Text(f"Sample payloads ({len(r.samples)})", style="bold"))
        text = json.dumps(r.samples, indent=2, ensure_ascii=False, default=str)
        parts.append(Syntax(text, "json", theme="ansi_dark", background_color="default", word_wrap=True))
    elif not r.rejections and not r.planned_deletes:
        parts.append(Text("Nothing would be sent: Braze is up to date for this activation.", style="dim"))
    return Group(*parts)  # type: ignore[arg-type]


class PlanScreen(DinmoScreen):
    """Shows a loading indicator until the app hands it the plan."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back"),
        Binding("s", "sync", "Sync now", id="sync"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__(id="plan")
        self.activation = name
        self.result: ActivationResult | None = None

    def compose(self) -> ComposeResult:
        """Header, title, loading indicator, body, footer."""
        yield Header()
        yield Static(
            f"Plan of [b]{escape(self.activation)}[/]: a dry run, nothing is sent to Braze. Computing…",
            id="plan-title",
        )
        yield LoadingIndicator(id="plan-loading")
        with VerticalScroll(id="plan-body"):
            yield Static("", id="plan-counts")
            yield Static("", id="plan-samples")
        yield Footer()

    def on_mount(self) -> None:
        """Hide the body until the result arrives."""
        self.sub_title = f"plan of {self.activation}"
        self.query_one("#plan-body").display = False

    def show_result(self, result: ActivationResult) -> None:
        """Render the plan."""
        self.result = result
        self.query_one("#plan-loading").display = False
        body = self.query_one("#plan-body", VerticalScroll)
        body.display = True
        message = f" · {escape(result.message)}" if result.message else ""
        title = f"Plan of [b]{escape(self.activation)}[/]: a dry run, nothing is sent."
        self.query_one("#plan-title", Static).update(f"{title}  {status_markup(result.status)}{message}")
        activation = self.dinmo.catalog.activation(self.activation)
        events = activation is not None and activation.is_event
        segment = result.sync_mode == "segment" or (activation is not None and activation.is_segment)
        self.query_one("#plan-counts", Static).update(counts_renderable(result, events, segment))
        self.query_one("#plan-samples", Static).update(samples_renderable(result, segment))
        body.focus()

    def show_error(self, error: str) -> None:
        """The plan failed (the app also notifies)."""
        self.query_one("#plan-loading").display = False
        self.query_one("#plan-title", Static).update(
            f"Plan of [b]{escape(self.activation)}[/] failed: " + escape(error)
        )

    def action_back(self) -> None:
        """Back to where the plan was asked for."""
        self.dismiss()

    def action_sync(self) -> None:
        """Sync this activation (after a confirmation)."""
        self.dinmo.request_sync(self.activation)
