"""Braze's documented limits: objects per /users/track request, body size, rate-limit buckets
and the API-key permission each endpoint needs (braze-api.md sections 2, 3.4 and 5.1)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "BRAZE_MAX_BODY_BYTES",
    "DEFAULT_BUCKET",
    "ENDPOINT_BUCKETS",
    "ENDPOINT_PERMISSIONS",
    "MAX_BODY_BYTES",
    "MAX_IDS_PER_REQUEST",
    "BatchRule",
    "RateLimits",
    "bucket_for",
    "permission_for",
]

#: Braze rejects bodies over 4 MB with 413 (braze-api.md 3.4).
BRAZE_MAX_BODY_BYTES = 4_000_000
#: What the packer aims for: a 500 kB margin under Braze's ceiling.
MAX_BODY_BYTES = 3_500_000
#: Identifiers per /users/delete and /users/export/ids request (and per subscription list).
MAX_IDS_PER_REQUEST = 50

DEFAULT_BUCKET = "default"

#: Endpoint path -> rate-limit bucket. Endpoints not listed share the default bucket.
ENDPOINT_BUCKETS: Mapping[str, str] = {
    "/users/track": "users.track",
    "/users/delete": "users.delete",
    "/users/alias/new": "users.delete",
    "/users/alias/update": "users.delete",
    "/users/identify": "users.delete",
    "/users/merge": "users.delete",
    "/users/export/ids": "users.export.ids",
    "/users/external_ids/rename": "users.external_ids",
    "/users/external_ids/remove": "users.external_ids",
    "/subscription/status/set": "subscription.status.set",
    "/v2/subscription/status/set": "subscription.status.set",
}

#: Endpoint path -> the REST API key permission Braze checks (403 when it is missing).
ENDPOINT_PERMISSIONS: Mapping[str, str] = {
    "/users/track": "users.track",
    "/users/track/sync": "users.track.sync",
    "/users/track/bulk": "users.track.bulk",
    "/users/delete": "users.delete",
    "/users/alias/new": "users.alias.new",
    "/users/alias/update": "users.alias.update",
    "/users/identify": "users.identify",
    "/users/merge": "users.merge",
    "/users/export/ids": "users.export.ids",
    "/users/export/segment": "users.export.segment",
    "/users/external_ids/rename": "users.external_ids.rename",
    "/users/external_ids/remove": "users.external_ids.remove",
    "/subscription/status/set": "subscription.status.set",
    "/v2/subscription/status/set": "subscription.status.set",
    "/subscription/status/get": "subscription.status.get",
    "/subscription/user/status": "subscription.groups.get",
}


def bucket_for(endpoint: str) -> str:
    """The rate-limit bucket an endpoint path counts against."""
    return ENDPOINT_BUCKETS.get(endpoint, DEFAULT_BUCKET)


def permission_for(endpoint: str) -> str | None:
    """The API-key permission an endpoint path needs, if known."""
    return ENDPOINT_PERMISSIONS.get(endpoint)


_RULES_HELP = (
    "'75_per_array' (legacy: up to 75 attributes, 75 events and 75 purchases per request), "
    "'75_combined' (75 objects in total) or '50_combined' (Monthly Active Users CY 24-25 "
    "plans); '<n>_per_array' and '<n>_combined' with n from 1 to 75 are accepted too"
)
_RULE_ALIASES = {"legacy": "75_per_array", "combined75": "75_combined", "mau50": "50_combined"}
_RULE_RE = re.compile(r"(\d+)_(per_array|combined)")


@dataclass(frozen=True)
class BatchRule:
    """How many objects one /users/track request may hold (braze-api.md 3.4)."""

    per_array: int = 75
    combined: int | None = None

    def __post_init__(self) -> None:
        if self.per_array < 1 or (self.combined is not None and self.combined < 1):
            raise ValueError(f"batch limits must be at least 1, got {self}")

    @classmethod
    def parse(cls, text: str) -> BatchRule:
        """Parse ``75_per_array`` (default), ``75_combined`` or ``50_combined``."""
        key = text.strip().lower().replace("-", "_")
        key = _RULE_ALIASES.get(key, key)
        match = _RULE_RE.fullmatch(key)
        if match is None or not 1 <= int(match.group(1)) <= 75:
            raise ValueError(f"unknown Braze batch rule {text!r}: use {_RULES_HELP}")
        n = int(match.group(1))
        if match.group(2) == "per_array":
            return cls(per_array=n, combined=None)
        return cls(per_array=n, combined=n)

    def __str__(self) -> str:
        if self.combined is None:
            return f"{self.per_array}_per_array"
        return f"{self.combined}_combined"


_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
_LIMIT_RE = re.compile(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)")

_DOCUMENTED: Mapping[str, tuple[int, float]] = {
    "users.track": (3000, 3.0),
    "users.delete": (20_000, 60.0),  # shared with alias/new, alias/update, identify, merge
    "users.export.ids": (250, 60.0),
    "users.external_ids": (1000, 60.0),
    "subscription.status.set": (5000, 60.0),  # v1 and v2 share it
    DEFAULT_BUCKET: (250_000, 3600.0),
}


def _parse_limit(bucket: str, text: str) -> tuple[int, float]:
    match = _LIMIT_RE.fullmatch(text.strip().lower())
    unit = _UNITS.get(match.group(3)) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"rate limit for {bucket!r} must look like '3000/3s', '250/min' or '250000/h' "
            f"(requests / period with unit s, min or h); got {text!r}"
        )
    requests = int(match.group(1))
    period = float(match.group(2) or 1) * unit
    if requests < 1 or period <= 0:
        raise ValueError(f"rate limit for {bucket!r} must be positive; got {text!r}")
    return requests, period


@dataclass(frozen=True)
class RateLimits:
    """Bucket name -> (requests, period in seconds); ``None`` turns pacing off."""

    buckets: Mapping[str, tuple[int, float]] | None

    @classmethod
    def documented(cls) -> RateLimits:
        """Braze's documented default limits (braze-api.md 5.1)."""
        return cls(dict(_DOCUMENTED))

    @classmethod
    def off(cls) -> RateLimits:
        """No client-side pacing (benchmarks, emulator). Braze's headers and 429s still apply."""
        return cls(None)

    @classmethod
    def parse(cls, overrides: Mapping[str, str] | None) -> RateLimits:
        """Merge ``{"users.track": "3000/3s", ...}`` over the documented limits."""
        buckets = dict(_DOCUMENTED)
        for bucket, text in (overrides or {}).items():
            if bucket not in _DOCUMENTED:
                known = ", ".join(sorted(_DOCUMENTED))
                raise ValueError(f"unknown rate-limit bucket {bucket!r}; known buckets: {known}")
            buckets[bucket] = _parse_limit(bucket, str(text))
        return cls(buckets)

    def for_bucket(self, bucket: str) -> tuple[int, float] | None:
        """The (requests, period) pacing a bucket, or ``None`` when unpaced."""
        if self.buckets is None:
            return None
        return self.buckets.get(bucket, self.buckets.get(DEFAULT_BUCKET))
