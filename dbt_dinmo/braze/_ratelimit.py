"""Client-side rate limiting, one state per Braze bucket.

Each bucket combines two brakes:

* pacing: a sliding-window log of send times keeps at most ``requests`` sends in any
  ``period`` seconds (exact, and it only remembers the sends of the current window);
* Braze's own view: after every response the ``X-RateLimit-Remaining`` / ``-Reset`` headers are
  read (case-insensitively); when Remaining reaches 0, or on a 429, the whole bucket is paused
  until Reset (epoch seconds) has passed, capped at ``max_block`` seconds from now.

Waiters queue on a per-bucket lock, so they are served in order and only one sleeps at a time.
Times come from ``clock`` (wall time by default, since Reset is an epoch timestamp).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

from dbt_dinmo.braze._limits import RateLimits

__all__ = ["RateLimitHeaders", "RateLimiter", "parse_rate_limit_headers"]

_EPOCH_THRESHOLD = 1e9  # a Reset below this is read as seconds from now, not a timestamp


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The three X-RateLimit-* headers, as numbers (``None`` when absent or unreadable)."""

    limit: float | None
    remaining: float | None
    reset: float | None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def parse_rate_limit_headers(headers: Mapping[str, str], now: float) -> RateLimitHeaders:
    """Read the headers (names in any case); ``reset`` becomes an absolute time on ``now``'s clock.

    Braze sends Reset as epoch seconds; a value below 1e9 is read as seconds from now.
    """
    if not isinstance(headers, httpx.Headers):
        headers = {k.lower(): v for k, v in headers.items()}
    reset = _number(headers.get("x-ratelimit-reset"))
    if reset is not None and reset < _EPOCH_THRESHOLD:
        reset = now + reset
    return RateLimitHeaders(
        limit=_number(headers.get("x-ratelimit-limit")),
        remaining=_number(headers.get("x-ratelimit-remaining")),
        reset=reset,
    )


class _Bucket:
    __slots__ = ("blocked_until", "limit", "lock", "period", "sent")

    def __init__(self, pacing: tuple[int, float] | None) -> None:
        self.limit, self.period = pacing if pacing is not None else (0, 0.0)
        self.sent: deque[float] = deque()
        self.blocked_until = 0.0
        self.lock = asyncio.Lock()


class RateLimiter:
    """Async limiter shared by every request of one client."""

    def __init__(
        self,
        limits: RateLimits,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_block: float = 120.0,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._max_block = max_block
        self._buckets: dict[str, _Bucket] = {}
        #: Number of acquisitions that had to wait, and the seconds spent waiting.
        self.waits = 0
        self.waited = 0.0

    def _bucket(self, name: str) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(self._limits.for_bucket(name))
        return bucket

    def _delay(self, bucket: _Bucket, now: float) -> float:
        delay = bucket.blocked_until - now
        if delay > 0 or not bucket.limit:
            return delay
        sent, cutoff = bucket.sent, now - bucket.period
        while sent and sent[0] <= cutoff:
            sent.popleft()
        if len(sent) >= bucket.limit:
            return sent[0] - cutoff
        return 0.0

    async def acquire(self, name: str) -> float:
        """Wait until one more request of bucket ``name`` may be sent; return seconds waited."""
        bucket = self._bucket(name)
        if not bucket.limit and bucket.blocked_until <= 0.0:
            return 0.0  # unpaced and never blocked: the hot path for benchmarks
        waited = 0.0
        async with bucket.lock:
            while True:
                now = self._clock()
                delay = self._delay(bucket, now)
                if delay <= 0:
                    break
                await self._sleep(delay)
                waited += delay
            if bucket.limit:
                bucket.sent.append(now)
        if waited:
            self.waits += 1
            self.waited += waited
        return waited

    def block(self, name: str, until: float) -> None:
        """Pause bucket ``name`` until ``until`` (capped at ``max_block`` seconds from now)."""
        bucket = self._bucket(name)
        until = min(until, self._clock() + self._max_block)
        if until > bucket.blocked_until:
            bucket.blocked_until = until

    def observe(self, name: str, headers: Mapping[str, str]) -> RateLimitHeaders | None:
        """Follow Braze's headers from one response; pause the bucket when Remaining is 0."""
        if not isinstance(headers, httpx.Headers):
            headers = {k.lower(): v for k, v in headers.items()}
        if "x-ratelimit-remaining" not in headers and "x-ratelimit-reset" not in headers:
            return None
        info = parse_rate_limit_headers(headers, self._clock())
        if info.remaining is not None and info.remaining <= 0 and info.reset is not None:
            self.block(name, info.reset)
        return info

    def blocked_until(self, name: str) -> float:
        """When the bucket unblocks (0.0 if it never was)."""
        return self._bucket(name).blocked_until
