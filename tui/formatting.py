"""Pure formatting helpers (no Textual): times relative to an injected clock, counts, statuses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]

STATUS_GLYPH = {
    "success": "✔",
    "partial success": "◐",
    "error": "✖",
    "skipped": "·",
    "running": "…",
}
STATUS_STYLE = {
    "success": "$text-success",
    "partial success": "$text-warning",
    "error": "$text-error",
    "skipped": "$text-muted",
    "running": "$text-accent",
}
STATUS_SHORT = {"partial success": "partial"}
# Users not sent because their Braze profile does not exist yet (checked again next run).
WAITING_GLYPH = "◷"
SEGMENT_MODE = "segment (entries and exits)"


def system_clock() -> dt.datetime:
    """Now, in the local time zone."""
    return dt.datetime.now().astimezone()


def status_markup(status: str) -> str:
    """A glyph and the status word, styled (Textual content markup)."""
    if not status:
        return "[$text-muted]never run[/]"
    glyph = STATUS_GLYPH.get(status, "?")
    style = STATUS_STYLE.get(status, "$text-muted")
    return f"[{style}]{glyph} {STATUS_SHORT.get(status, status)}[/]"


def relative(ts: dt.datetime | None, now: dt.datetime) -> str:
    """``now``, ``3m ago``, ``2h ago``, ``4d ago``, ``in 12m``: relative to the clock's ``now``."""
    if ts is None:
        return "—"
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    seconds = (now - ts).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "in <1m" if future else "now"
    for size, unit in ((86_400 * 365, "y"), (86_400, "d"), (3_600, "h"), (60, "m")):
        if seconds >= size * 0.75 or unit == "m":
            text = f"{max(1, round(seconds / size))}{unit}"
            break
    return f"in {text}" if future else f"{text} ago"


def absolute(ts: dt.datetime | None, now: dt.datetime) -> str:
    """``2026-05-01 14:03`` in the clock's time zone."""
    if ts is None:
        return "—"
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    return ts.astimezone(now.tzinfo).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def export_time(seconds: float, calls: int) -> str:
    """The least time ``calls`` /users/export/ids requests take under their rate limit."""
    if calls <= 0:
        return "no request needed"
    if seconds <= 0:
        return "within one rate-limit window"
    return f"at least {duration(seconds)} under the rate limit"


def count(value: int) -> str:
    """Thousands separated by a thin space-like comma: ``12,345``."""
    return f"{value:,}"


def short_id(run_id: str) -> str:
    """The first eight characters of a run id (as ``dbt-dinmo history`` shows it)."""
    return run_id[:8]


def matches(text: str, words: str) -> bool:
    """True when every whitespace-separated word of ``words`` occurs in ``text`` (any case)."""
    haystack = text.lower()
    return all(word in haystack for word in words.lower().split())
