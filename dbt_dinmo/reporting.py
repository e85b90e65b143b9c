"""How the runner tells its face (CLI, TUI, tests) what is happening; the core never prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dbt_dinmo.activation import Activation
    from dbt_dinmo.results import ActivationResult


class Reporter(Protocol):
    """Callbacks the runner makes while it works."""

    def activation_started(self, activation: Activation, phase: str) -> None:
        """An activation begins a phase ("reading", "sending", "deleting")."""

    def progress(self, activation: Activation, done: int, total: int) -> None:
        """Objects acknowledged so far out of the total to send."""

    def activation_finished(self, result: ActivationResult) -> None:
        """An activation ended (any status)."""


class NullReporter:
    """A reporter that ignores everything."""

    def activation_started(self, activation: Activation, phase: str) -> None:
        """Ignore."""

    def progress(self, activation: Activation, done: int, total: int) -> None:
        """Ignore."""

    def activation_finished(self, result: ActivationResult) -> None:
        """Ignore."""
