"""Fixed-window rate limiting per bucket, with Braze's X-RateLimit-* headers (section 5)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

Limits = Mapping[str, "tuple[int, float] | None"]


class Decision(NamedTuple):
    """Whether a request may proceed, and the headers to send either way."""

    allowed: bool
    headers: dict[str, str]


class RateLimiter:
    """Windows are aligned to multiples of their length since the epoch; thread-safe."""

    def __init__(self, limits: Limits | None, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._limits: dict[str, tuple[int, float] | None] | None = None
        self._windows: dict[str, tuple[float, int]] = {}  # bucket -> (window start, count)
        self.configure(limits)

    def configure(self, limits: Limits | None) -> None:
        """Replace the limits (``None`` disables limiting); current counts are kept."""
        with self._lock:
            self._limits = None if limits is None else dict(limits)

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self._windows.clear()

    def check(self, bucket: str, *, consume: bool = True) -> Decision:
        """Count a request against ``bucket`` (unless ``consume`` is false) and decide."""
        limits = self._limits
        if limits is None:
            return Decision(True, {})
        limit = limits.get(bucket, limits.get("default"))
        if limit is None:
            return Decision(True, {})
        count_max, window = limit
        now = self._clock()
        start = math.floor(now / window) * window
        with self._lock:
            seen_start, count = self._windows.get(bucket, (start, 0))
            if seen_start != start:
                count = 0
            allowed = count < count_max
            if consume and allowed:
                count += 1
            self._windows[bucket] = (start, count)
        return Decision(allowed, headers(count_max, count_max - count, start + window))

    def exhausted(self, bucket: str, seconds: float) -> dict[str, str]:
        """Headers for a scripted 429: nothing remaining, reset ``seconds`` from now."""
        limits = self._limits or {}
        limit = limits.get(bucket, limits.get("default"))
        return headers(limit[0] if limit else 0, 0, self._clock() + seconds)


def headers(limit: int, remaining: int, reset_at: float) -> dict[str, str]:
    """The three X-RateLimit-* headers; the reset is integer epoch seconds, rounded up."""
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(remaining, 0)),
        "X-RateLimit-Reset": str(math.ceil(reset_at)),
    }
