"""Typed messages posted between the runner's thread, the app and its screens."""

from __future__ import annotations

from textual.message import Message


class SyncProgress(Message):
    """The runner reports a phase or acknowledged objects of a sync (posted from its thread)."""

    def __init__(self, name: str, phase: str, done: int = 0, total: int = 0) -> None:
        super().__init__()
        self.name = name
        self.phase = phase
        self.done = done
        self.total = total


class LogNotice(Message):
    """A warning logged by the core while the dashboard runs (shown as a notification)."""

    def __init__(self, text: str, severity: str) -> None:
        super().__init__()
        self.text = text
        self.severity = severity


class RunsChanged(Message):
    """The run history changed (a sync ended): screens showing it reload."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.activation = activation
