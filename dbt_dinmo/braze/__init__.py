"""Braze REST client: batching, rate limiting, retries and concurrent sending.

Typical use::

    async with BrazeClient(rest_url, api_key, rate_limits=RateLimits.parse(overrides)) as client:
        summary = await client.send_track_batches(pack(objects, BatchRule.parse(rule)), on_result)

Implementation modules are private; this package re-exports the public names.
"""

from __future__ import annotations

from dbt_dinmo.braze._batching import (
    KINDS,
    Kind,
    PreparedObject,
    TrackBatch,
    TrackPacker,
    TrackResponse,
    pack,
    parse_track_response,
)
from dbt_dinmo.braze._client import BrazeClient, BrazeResponse, ClientStats, ExportResponse
from dbt_dinmo.braze._limits import (
    BRAZE_MAX_BODY_BYTES,
    MAX_BODY_BYTES,
    MAX_IDS_PER_REQUEST,
    BatchRule,
    RateLimits,
    bucket_for,
    permission_for,
)
from dbt_dinmo.braze._ratelimit import RateLimiter
from dbt_dinmo.braze._retry import RetryPolicy
from dbt_dinmo.braze._sender import BatchResult, SendSummary, classify, send_track_batches
from dbt_dinmo.braze._transport import AiohttpTransport

__all__ = [
    "BRAZE_MAX_BODY_BYTES",
    "KINDS",
    "MAX_BODY_BYTES",
    "MAX_IDS_PER_REQUEST",
    "AiohttpTransport",
    "BatchResult",
    "BatchRule",
    "BrazeClient",
    "BrazeResponse",
    "ClientStats",
    "ExportResponse",
    "Kind",
    "PreparedObject",
    "RateLimiter",
    "RateLimits",
    "RetryPolicy",
    "SendSummary",
    "TrackBatch",
    "TrackPacker",
    "TrackResponse",
    "bucket_for",
    "classify",
    "pack",
    "parse_track_response",
    "permission_for",
    "send_track_batches",
]
