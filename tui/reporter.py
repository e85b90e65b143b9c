"""The runner's Reporter, turned into messages for the app (safe from the runner's thread)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .messages import SyncProgress

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

    from dbt_dinmo.activation import Activation
    from dbt_dinmo.results import ActivationResult


class AppReporter:
    """Posts :class:`SyncProgress` messages to a message pump (the app)."""

    def __init__(self, target: MessagePump) -> None:
        self.target = target

    def activation_started(self, activation: Activation, phase: str) -> None:
        """A phase begins: reading, sending or deleting."""
        self.target.post_message(SyncProgress(activation.name, phase))

    def progress(self, activation: Activation, done: int, total: int) -> None:
        """Objects acknowledged so far."""
        self.target.post_message(SyncProgress(activation.name, "sending", done, total))

    def activation_finished(self, result: ActivationResult) -> None:
        """The activation ended; the worker's result carries the figures."""
        self.target.post_message(SyncProgress(result.activation, "finished"))
