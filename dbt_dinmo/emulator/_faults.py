"""Scripted fault injection: consumed in order, per endpoint path or for any endpoint."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FAULT_KINDS = ("status", "rate_limit", "drop", "lost_ack", "delay")

DEFAULT_MESSAGES = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Fault:
    """One scripted fault.

    ``kind``: ``status`` (reply ``status`` with ``{"message": message}``, not applied),
    ``rate_limit`` (429 with Remaining 0 and Reset ``seconds`` ahead, not applied), ``drop`` (close
    the connection without a response, not applied), ``lost_ack`` (apply, then close without a
    response) or ``delay`` (sleep ``seconds``, then handle normally).
    ``path`` is an endpoint such as ``"/users/track"``; ``None`` or ``"*"`` matches every API
    endpoint. The first ``after`` matching requests pass untouched, then ``times`` requests fire.
    """

    kind: str
    path: str | None = None
    status: int = 500
    message: str | None = None
    seconds: float = 1.0
    times: int = 1
    after: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}, not {self.kind!r}")
        if self.path in ("*", ""):
            self.path = None
        elif self.path is not None:
            self.path = "/" + self.path.strip("/")
        if not 100 <= self.status <= 599:
            raise ValueError("fault status must be an HTTP status code")
        if self.times < 1 or self.after < 0 or self.seconds < 0:
            raise ValueError("fault times must be >= 1, after and seconds >= 0")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """Build from a JSON object, rejecting unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        return cls(**dict(data))

    @property
    def body_message(self) -> str:
        return self.message or DEFAULT_MESSAGES.get(self.status, "Error")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FaultQueue:
    """Pending faults, thread-safe. The first fault matching a path governs that request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, faults: Iterable[Fault | Mapping[str, Any]]) -> None:
        parsed = [f if isinstance(f, Fault) else Fault.from_json(f) for f in faults]
        with self._lock:
            self._faults.extend(dataclasses.replace(f) for f in parsed)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def take(self, path: str) -> Fault | None:
        """The fault to apply to this request, if any (decrementing ``after``/``times``)."""
        if not self._faults:
            return None
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.path is not None and fault.path != path:
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    del self._faults[i]
                return dataclasses.replace(fault, times=1)
        return None
