"""Every key of the dashboard, in one place: the help screen renders it, the README copies it."""

from __future__ import annotations

from .formatting import WAITING_GLYPH

KEYS: tuple[tuple[str, str, str], ...] = (
    ("everywhere", "? / f1", "this help"),
    ("everywhere", "ctrl+p", "command palette: open, plan or sync any activation by name"),
    ("everywhere", "r", "reload the manifest, dinmo.yml and the run history"),
    ("everywhere", "q / ctrl+q", "quit"),
    ("tables", "↑ ↓ / k j", "move"),
    ("tables", "g / G", "first / last row"),
    ("tables", "pgup / pgdn", "page up / down"),
    ("activations", "/", "filter by any text: name, model, owner, tag, attribute…"),
    ("activations", "escape", "leave the filter; press again to clear it"),
    ("activations", "enter", "open the activation: configuration, changes per run, run history"),
    ("activations, detail", "p", "plan: a dry run in the background, nothing is sent"),
    ("activations, detail, plan", "s", "sync now, after a confirmation (y / n)"),
    ("detail", "enter", "open the highlighted run"),
    ("detail, run, plan", "escape", "back"),
    ("run", "tab", "switch between the activations of the run and its rejected rows"),
    ("run", "/", "search the rejected rows (identifier, reason, origin, detail)"),
    ("run", "y", "copy the highlighted rejected row (tab-separated)"),
    ("run", "o", "open the row's user in the Braze dashboard"),
)

NOTES = (
    "Times are relative to now (3m ago, in 12m).",
    "Changes: +inserted ~updated -deleted !rejected; a segment (subscription group, user list): "
    f"+entered -exited; {WAITING_GLYPH} users waiting for a Braze profile (not sent, checked again "
    "next run).",
    "Errors (Braze unreachable, the state locked by a running `dbt-dinmo run`, a config problem) "
    "show as notifications.",
)


def markdown_table() -> str:
    """The keys as a Markdown table (for the README)."""
    lines = ["| Where | Key | Does |", "| --- | --- | --- |"]
    for where, keys, does in KEYS:
        shown = " / ".join(f"`{k.strip()}`" for k in keys.split(" / "))
        lines.append(f"| {where} | {shown} | {does} |")
    return "\n".join(lines)
