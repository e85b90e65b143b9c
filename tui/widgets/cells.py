"""Table cells styled from the theme's variables (so every theme works)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import App

from ..formatting import STATUS_GLYPH, STATUS_SHORT, STATUS_STYLE, WAITING_GLYPH

if TYPE_CHECKING:
    from dbt_dinmo.catalog import ActivationRun

_cache: dict[tuple[int, str], dict[str, str]] = {}


def theme_style(app: App[Any], variable: str) -> str:
    """A Rich style string for a theme variable such as ``$text-success`` (cached per theme)."""
    key = (id(app), app.theme)
    variables = _cache.get(key)
    if variables is None:  # computing the theme's variables is slow: once per theme, not per cell
        _cache.clear()
        variables = _cache[key] = app.get_css_variables()
    value = variables.get(variable.lstrip("$"), "")
    if not value or value.startswith("ansi_default"):
        return "dim" if "muted" in variable else ""
    return value.split()[0]


def status_cell(app: App[Any], status: str, suffix: str = "") -> Text:
    """A glyph, the short status word and an optional plain suffix."""
    if not status:
        return Text("never run", style=theme_style(app, "$text-muted"))
    glyph = STATUS_GLYPH.get(status, "?")
    text = Text(
        f"{glyph} {STATUS_SHORT.get(status, status)}", style=theme_style(app, STATUS_STYLE.get(status, ""))
    )
    if suffix:
        text.append(f" {suffix}")
    return text


def plain(value: object) -> Text:
    """Text that is never read as markup (reasons and identifiers may contain brackets)."""
    return Text(str(value), no_wrap=True, overflow="ellipsis")


def number(value: int, *, warn: bool = False, app: App[Any] | None = None) -> Text:
    """A right-aligned count, in the warning colour when ``warn`` and non-zero."""
    style = theme_style(app, "$text-warning") if warn and value and app is not None else ""
    return Text(f"{value:,}", style=style, justify="right")


def changes(
    inserted: int, updated: int, deleted: int, rejected: int, app: App[Any], *, waiting: int = 0
) -> Text:
    """``+40 ~3 -1 !2 ◷5``: inserted, updated, deleted, rejected and waiting users."""
    text = Text()
    text.append(f"+{inserted:,}", style=theme_style(app, "$text-success") if inserted else "")
    text.append(f" ~{updated:,}")
    text.append(f" -{deleted:,}", style=theme_style(app, "$text-error") if deleted else "")
    _problems(text, rejected, waiting, app)
    return text


def segment_changes(entered: int, exited: int, rejected: int, app: App[Any], *, waiting: int = 0) -> Text:
    """``+12 -3 !1 ◷5``: members who entered and left a segment, rejected and waiting users."""
    text = Text()
    text.append(f"+{entered:,}", style=theme_style(app, "$text-success") if entered else "")
    text.append(f" -{exited:,}", style=theme_style(app, "$text-error") if exited else "")
    _problems(text, rejected, waiting, app)
    return text


def run_changes(run: ActivationRun, app: App[Any]) -> Text:
    """A run's changes: ``+entered -exited`` for a segment, ``+inserted ~updated -deleted``
    otherwise; then ``!rejected`` and ``◷waiting`` when there are any."""
    if run.is_segment:
        return segment_changes(run.entered, run.exited, run.rejected, app, waiting=run.waiting)
    return changes(run.inserted, run.updated, run.deleted, run.rejected, app, waiting=run.waiting)


def _problems(text: Text, rejected: int, waiting: int, app: App[Any]) -> None:
    if rejected:
        text.append(f" !{rejected:,}", style=theme_style(app, "$text-warning"))
    if waiting:
        text.append(f" {WAITING_GLYPH}{waiting:,}", style=theme_style(app, "$text-accent"))


def blocked(value: int, blocked: int) -> Text:
    """A right-aligned count with the users a guard blocked: ``3 +2 blocked``."""
    text = number(value)
    if blocked:
        text.append(f" +{blocked:,} blocked")
    return text
