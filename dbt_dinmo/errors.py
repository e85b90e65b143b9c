"""One exception tree for the whole package.

``DinmoError`` is the root. ``ConfigError`` carries every problem found while validating the
project (exit code 2). Braze errors split into ``TransientError`` (retry later: 429, 5xx,
timeouts, dropped connections) and ``TerminalError`` (stop: 400, 401, 403, 404, 413).
"""

from __future__ import annotations

from dataclasses import dataclass


class DinmoError(Exception):
    """Root of every error raised by dbt-dinmo."""


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where it is, what is wrong and how to fix it."""

    where: str  # e.g. "exposure braze_customers" or "dinmo.yml"
    key: str  # e.g. "config.meta.dinmo.identifier.column"
    message: str  # what was expected / found
    fix: str = ""  # how to fix it

    def __str__(self) -> str:
        text = f"{self.where}: {self.key}: {self.message}"
        return f"{text} Fix: {self.fix}" if self.fix else text


class ConfigError(DinmoError):
    """The project, dinmo.yml or an activation is invalid; nothing was sent."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("dbt-dinmo", "-", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(dict.fromkeys(problems))  # one destination's problem, once
        super().__init__("\n".join(str(p) for p in problems))


class StateLockedError(DinmoError):
    """Another dbt-dinmo run holds the state store."""


class WarehouseError(DinmoError):
    """The warehouse could not be opened or queried through the dbt adapter."""


class BrazeError(DinmoError):
    """An error talking to Braze. Messages never contain the API key."""

    def __init__(self, message: str, *, status: int | None = None, endpoint: str = "") -> None:
        self.status = status
        self.endpoint = endpoint
        super().__init__(message)


class TransientError(BrazeError):
    """Worth retrying: 429, 5xx, timeouts and dropped connections."""


class TerminalError(BrazeError):
    """Not worth retrying as is: 400, 404, 413 and other client errors."""


class AuthError(TerminalError):
    """401 (bad key or wrong instance) or 403 (missing permission): stops the activation."""

    def __init__(
        self, message: str, *, status: int, endpoint: str = "", permission: str | None = None
    ) -> None:
        self.permission = permission
        super().__init__(message, status=status, endpoint=endpoint)


class PayloadTooLargeError(TerminalError):
    """413 or "Max Input Length Exceeded": the batch must be split, not retried as is."""
