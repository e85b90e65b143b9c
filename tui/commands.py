"""Command palette: every action by name, with ``group: action`` titles (fuzzy-searchable)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from .app import DinmoApp


class DinmoCommands(Provider):
    """Open, plan or sync any activation; refresh; help."""

    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        app = cast("DinmoApp", self.app)
        commands: list[tuple[str, str, Callable[[], object]]] = [
            ("dashboard: refresh", "Reload the manifest, config and run history", app.action_refresh),
            ("dashboard: key bindings", "Show every key", app.action_help),
        ]
        listing = app.listing
        for a in listing.activations if listing is not None else ():
            commands += [
                (
                    f"open: {a.name}",
                    f"Configuration and run history of {a.name}",
                    partial(app.open_activation, a.name),
                ),
                (
                    f"plan: {a.name}",
                    f"Dry run of {a.name}: nothing is sent",
                    partial(app.request_plan, a.name),
                ),
                (
                    f"sync: {a.name}",
                    f"Sync {a.name} to {a.destination.name} now",
                    partial(app.request_sync, a.name),
                ),
            ]
        return commands

    async def discover(self) -> Hits:
        """Shown before anything is typed."""
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        """Fuzzy match on the titles."""
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
