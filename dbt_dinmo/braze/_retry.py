"""Retry decisions and error mapping, kept free of I/O.

Two budgets are tracked separately:

* failures (5xx, 408, timeouts, dropped connections): at most ``max_attempts`` tries in
  total, waiting ``uniform(0, min(max_delay, base_delay * 2**n))`` ("full jitter") between
  them, and giving up once the waits would exceed ``max_total`` seconds;
* 429 responses: each waits until ``X-RateLimit-Reset`` has passed (at most
  ``rate_limit_max_wait`` seconds per wait; exponential backoff when the header is missing or
  already in the past), at most ``max_rate_limited`` times per request. These waits do not
  consume the failure budget.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from dbt_dinmo.braze._limits import permission_for
from dbt_dinmo.errors import (
    AuthError,
    BrazeError,
    PayloadTooLargeError,
    TerminalError,
    TransientError,
)

__all__ = [
    "MAX_INPUT_LENGTH_EXCEEDED",
    "RetryPolicy",
    "RetryState",
    "braze_message",
    "error_for_response",
    "is_retryable_status",
]

MAX_INPUT_LENGTH_EXCEEDED = "Max Input Length Exceeded"


def is_retryable_status(status: int) -> bool:
    """5xx and 408 are worth retrying; 429 is handled as rate limiting."""
    return status >= 500 or status == 408


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying one request."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total: float = 300.0
    max_rate_limited: int = 20
    rate_limit_max_wait: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_rate_limited < 0:
            raise ValueError("max_attempts must be at least 1 and max_rate_limited at least 0")
        if min(self.base_delay, self.max_delay, self.max_total, self.rate_limit_max_wait) < 0:
            raise ValueError("retry delays must not be negative")

    @classmethod
    def none(cls) -> RetryPolicy:
        """Try once; never retry or wait."""
        return cls(max_attempts=1, max_rate_limited=0)

    def backoff(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Full-jitter delay after the ``failures``-th consecutive failure (1-based)."""
        cap = min(self.max_delay, self.base_delay * 2.0 ** max(0, failures - 1))
        return cap * rand()

    def rate_limit_delay(
        self, reset: float | None, now: float, waits: int, rand: Callable[[], float] = random.random
    ) -> float:
        """How long to wait after the ``waits``-th 429 (1-based)."""
        if reset is not None and reset > now:
            return min(reset - now, self.rate_limit_max_wait)
        # No usable Reset: back off, but never less than a short pause.
        return max(0.1, min(self.rate_limit_max_wait, self.backoff(waits, rand)))

    def start(self, rand: Callable[[], float] = random.random) -> RetryState:
        """A fresh per-request state."""
        return RetryState(self, rand)


@dataclass
class RetryState:
    """Counts for one request; each method returns the delay to wait, or ``None`` to give up."""

    policy: RetryPolicy
    rand: Callable[[], float] = field(default=random.random, repr=False)
    attempts: int = 0
    failures: int = 0
    rate_limited: int = 0
    waited: float = 0.0

    def after_failure(self) -> float | None:
        """Record a retryable failure; the backoff delay, or ``None`` when exhausted."""
        self.failures += 1
        if self.failures >= self.policy.max_attempts:
            return None
        delay = self.policy.backoff(self.failures, self.rand)
        if self.waited + delay > self.policy.max_total:
            return None
        self.waited += delay
        return delay

    def after_rate_limited(self, reset: float | None, now: float) -> float | None:
        """Record a 429; the wait, or ``None`` when the 429 budget is spent."""
        self.rate_limited += 1
        if self.rate_limited > self.policy.max_rate_limited:
            return None
        return self.policy.rate_limit_delay(reset, now, self.rate_limited, self.rand)

    def describe(self) -> str:
        """Human summary used in 'gave up' messages."""
        text = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        if self.rate_limited:
            text += f", {self.rate_limited} rate-limited (429)"
        if self.waited:
            text += f", {self.waited:.1f} s of backoff"
        return text


def braze_message(content: bytes, limit: int = 300) -> str:
    """Braze's ``message`` from a (redacted) body, or the body text, shortened to ``limit``."""
    text = ""
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        text = doc["message"]
    elif content:
        text = content.decode("utf-8", "replace")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_for_response(endpoint: str, status: int, content: bytes, rest_url: str) -> BrazeError:
    """The exception for a final non-2xx response. ``content`` must already be redacted."""
    msg = braze_message(content)
    said = f": {msg}" if msg else ""
    if status == 401:
        return AuthError(
            f"Braze rejected the API key on POST {endpoint} (HTTP 401{said}). The key is "
            f"invalid or revoked, or it belongs to a workspace on another Braze instance than "
            f"{rest_url}: check that the REST URL matches your dashboard's instance and that "
            "the key is pasted without quotes.",
            status=401,
            endpoint=endpoint,
        )
    if status == 403:
        perm = permission_for(endpoint)
        needs = f"the '{perm}' permission" if perm else "the permission this endpoint needs"
        return AuthError(
            f"Braze denied POST {endpoint} (HTTP 403{said}): the API key lacks {needs}. Create "
            f"a REST API key with {needs} (Braze dashboard > Settings > APIs and Identifiers; "
            "an existing key's permissions cannot be edited) and use it instead. If the key "
            "already has it, the account or plan may not include this endpoint.",
            status=403,
            endpoint=endpoint,
            permission=perm,
        )
    if status == 413 or (status == 400 and msg == MAX_INPUT_LENGTH_EXCEEDED):
        what = "the body is over Braze's 4 MB limit" if status == 413 else "too many objects"
        return PayloadTooLargeError(
            f"Braze refused POST {endpoint} as too large (HTTP {status}{said}): {what}; "
            "the request must be split.",
            status=status,
            endpoint=endpoint,
        )
    if status == 429 or is_retryable_status(status):
        return TransientError(
            f"POST {endpoint} failed with HTTP {status}{said}", status=status, endpoint=endpoint
        )
    if status == 404:
        return TerminalError(
            f"POST {rest_url}{endpoint} returned HTTP 404{said}: check the Braze REST URL.",
            status=404,
            endpoint=endpoint,
        )
    return TerminalError(
        f"Braze rejected POST {endpoint} (HTTP {status}{said})", status=status, endpoint=endpoint
    )
