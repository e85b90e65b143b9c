"""Async Braze REST client: one shared request path with rate limiting, retries and error mapping.

The API key lives only in the request headers. Every response body is redacted (each occurrence
of the key replaced by ``***``) before any part of it reaches a message, a log record or a
returned object; Braze has been reported to echo the key in its 401 body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from dbt_dinmo import __version__
from dbt_dinmo.braze._batching import TrackBatch, TrackResponse, parse_track_response
from dbt_dinmo.braze._limits import MAX_IDS_PER_REQUEST, RateLimits, bucket_for
from dbt_dinmo.braze._ratelimit import RateLimiter
from dbt_dinmo.braze._retry import (
    MAX_INPUT_LENGTH_EXCEEDED,
    RetryPolicy,
    braze_message,
    error_for_response,
    is_retryable_status,
)
from dbt_dinmo.braze._sender import BatchResult, SendSummary, send_track_batches
from dbt_dinmo.braze._transport import AiohttpTransport
from dbt_dinmo.errors import TerminalError, TransientError

if TYPE_CHECKING:
    pass

__all__ = ["BrazeClient", "BrazeResponse", "ClientStats", "ExportResponse"]

log = logging.getLogger("dbt_dinmo.braze")

# Worth retrying: timeouts, refused/reset connections, servers closing without a response.
_RETRYABLE_EXC = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class BrazeResponse:
    """The final response of one request (after retries); ``content`` is already redacted."""

    endpoint: str
    status: int
    content: bytes
    headers: httpx.Headers
    attempts: int
    elapsed: float

    def json(self) -> Any:
        """The body decoded with orjson."""
        return orjson.loads(self.content)

    @property
    def status_code(self) -> int:
        """Alias of ``status``, as on ``httpx.Response``."""
        return self.status


@dataclass(frozen=True)
class ExportResponse:
    """A /users/export/ids answer."""

    users: list[dict[str, Any]]
    invalid_user_ids: list[str]
    message: str = ""


@dataclass
class ClientStats:
    """Running totals for one client."""

    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0  # re-sends after a failure or a 429
    rate_limited: int = 0  # 429 responses received
    rate_limited_waits: int = 0  # times a request waited for its rate-limit bucket


@dataclass(frozen=True)
class _Secret:
    """The API key, as text and bytes; never shown by repr."""

    value: str = field(repr=False)
    raw: bytes = field(repr=False)


class BrazeClient:
    """Async client for the Braze REST endpoints dbt-dinmo uses. Use as ``async with``."""

    def __init__(
        self,
        rest_url: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rate_limits: RateLimits | None = None,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, safe to share
        timeout: float = 30.0,
        max_connections: int = 16,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        rest_url = rest_url.strip().rstrip("/")
        if not rest_url.startswith(("https://", "http://")):
            raise ValueError(f"Braze REST URL must start with https://, got {rest_url!r}")
        api_key = api_key.strip()
        if not api_key:
            raise ValueError("the Braze API key is empty")
        self.rest_url = rest_url
        self._key = _Secret(api_key, api_key.encode())
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._limiter = RateLimiter(
            rate_limits or RateLimits.documented(),
            clock=clock,
            sleep=sleep,
            max_block=retry.rate_limit_max_wait,
        )
        self._stats = ClientStats()
        # The transport is driven directly (no httpx.AsyncClient): one fixed set of headers, no
        # cookies or redirects, and a fraction of the per-request CPU.
        self._transport = transport or AiohttpTransport(max_connections=max_connections)
        self._headers = httpx.Headers(
            {
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"dbt-dinmo/{__version__}",
                "X-Braze-Bulk": "true",
            }
        )
        self._timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": None}
        self._urls: dict[str, httpx.URL] = {}

    def __repr__(self) -> str:
        return f"BrazeClient(rest_url={self.rest_url!r}, api_key='***')"

    async def __aenter__(self) -> BrazeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._transport.aclose()

    @property
    def stats(self) -> ClientStats:
        """Running totals (a snapshot)."""
        s = self._stats
        return ClientStats(s.requests, s.retries, s.rate_limited, self._limiter.waits)

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter shared by every request of this client."""
        return self._limiter

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the API key replaced by ``***``."""
        return text.replace(self._key.value, "***")

    def _clean(self, content: bytes) -> bytes:
        raw = self._key.raw
        return content.replace(raw, b"***") if raw in content else content

    # -- the shared request path -------------------------------------------------------------

    async def _exchange(self, endpoint: str, content: bytes) -> tuple[int, httpx.Headers, bytes]:
        """One HTTP round trip through the transport: status, headers and the whole body."""
        url = self._urls.get(endpoint)
        if url is None:
            url = self._urls[endpoint] = httpx.URL(self.rest_url + endpoint)
        extensions = {"timeout": self._timeouts}
        request = httpx.Request("POST", url, headers=self._headers, content=content, extensions=extensions)
        response = await self._transport.handle_async_request(request)
        try:
            raw = await response.aread()
        finally:
            await response.aclose()
        return response.status_code, response.headers, raw

    async def request(self, endpoint: str, body: bytes | Mapping[str, object]) -> BrazeResponse:
        """POST with rate limiting and retries; return the final response whatever its status.

        Raises ``TransientError`` when retries are exhausted and ``TerminalError`` for transport
        problems that retrying cannot fix (for example an unsupported URL scheme).
        """
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        bucket = bucket_for(endpoint)
        state = self._retry.start()
        started = time.perf_counter()
        while True:
            await self._limiter.acquire(bucket)
            state.attempts += 1
            self._stats.requests += 1
            t0 = time.perf_counter()
            status: int | None = None
            try:
                status, headers, raw = await self._exchange(endpoint, content)
            except _RETRYABLE_EXC as exc:
                last = f"{type(exc).__name__}: {self.redact(str(exc)) or 'no detail'}"
                log.debug(
                    "POST %s failed after %.1f ms (attempt %d): %s",
                    endpoint,
                    (time.perf_counter() - t0) * 1000,
                    state.attempts,
                    last,
                )
            except httpx.HTTPError as exc:
                detail = f"{type(exc).__name__}: {self.redact(str(exc))}"
                raise TerminalError(
                    f"POST {self.rest_url}{endpoint} could not be sent: {detail}", endpoint=endpoint
                ) from None
            else:
                log.debug(
                    "POST %s %d %.1f ms (attempt %d)",
                    endpoint,
                    status,
                    (time.perf_counter() - t0) * 1000,
                    state.attempts,
                )
                info = self._limiter.observe(bucket, headers)
                if status != 429 and not is_retryable_status(status):
                    return BrazeResponse(
                        endpoint=endpoint,
                        status=status,
                        content=self._clean(raw),
                        headers=headers,
                        attempts=state.attempts,
                        elapsed=time.perf_counter() - started,
                    )
                said = braze_message(self._clean(raw))
                last = f"HTTP {status}: {said}" if said else f"HTTP {status}"
                if status == 429:
                    self._stats.rate_limited += 1
                    delay = state.after_rate_limited(info.reset if info else None, self._clock())
                    if delay is None:
                        raise TransientError(
                            f"POST {endpoint}: still rate limited by Braze (HTTP 429) after "
                            f"{state.describe()}; lower the configured rate limit or retry later",
                            status=429,
                            endpoint=endpoint,
                        )
                    self._stats.retries += 1
                    log.warning(
                        "POST %s rate limited (HTTP 429); pausing the bucket for %.1f s", endpoint, delay
                    )
                    self._limiter.block(bucket, self._clock() + delay)
                    continue
            delay = state.after_failure()
            if delay is None:
                raise TransientError(
                    f"POST {endpoint} failed after {state.describe()}; last error: {last}",
                    status=status,
                    endpoint=endpoint,
                )
            self._stats.retries += 1
            log.warning(
                "POST %s failed (%s); retrying in %.2f s (attempt %d of %d)",
                endpoint,
                last,
                delay,
                state.failures + 1,
                self._retry.max_attempts,
            )
            await self._sleep(delay)

    async def post(self, endpoint: str, body: bytes | Mapping[str, object]) -> BrazeResponse:
        """:meth:`request`, raising the mapped ``BrazeError`` for any non-2xx final status."""
        response = await self.request(endpoint, body)
        if response.status >= 300:
            raise error_for_response(endpoint, response.status, response.content, self.rest_url)
        return response

    # -- endpoints ------------------------------------------------------------------------------

    async def track(self, batch: TrackBatch) -> TrackResponse:
        """POST /users/track.

        Returns 2xx responses (with any minor errors) and the fatal 400 that lists per-object
        errors ("Valid data must be provided ..."), whose ``status`` is then 400. Raises
        ``PayloadTooLargeError`` on 413 / "Max Input Length Exceeded" and the mapped error for
        anything else.
        """
        if not batch:
            raise ValueError("cannot send an empty batch")
        response = await self.request("/users/track", batch.body())
        status = response.status
        if status < 300:
            parsed = parse_track_response(status, response.content, response.attempts)
            return parsed or TrackResponse(status, "", {}, [], response.attempts)
        if status == 400:
            parsed = parse_track_response(status, response.content, response.attempts)
            if parsed is not None and parsed.errors and parsed.message != MAX_INPUT_LENGTH_EXCEEDED:
                return parsed
        raise error_for_response("/users/track", status, response.content, self.rest_url)

    async def delete_users(
        self,
        *,
        external_ids: Sequence[str] = (),
        user_aliases: Sequence[Mapping[str, str]] = (),
        braze_ids: Sequence[str] = (),
    ) -> int:
        """POST /users/delete for at most 50 identifiers; returns Braze's ``deleted`` count."""
        body = _id_body(external_ids=external_ids, user_aliases=user_aliases, braze_ids=braze_ids)
        doc = (await self.post("/users/delete", body)).json()
        return int(doc.get("deleted", 0)) if isinstance(doc, dict) else 0

    async def export_ids(
        self,
        *,
        external_ids: Sequence[str] = (),
        user_aliases: Sequence[Mapping[str, str]] = (),
        fields_to_export: Sequence[str] = ("external_id", "braze_id"),
    ) -> ExportResponse:
        """POST /users/export/ids for at most 50 external IDs and aliases."""
        body = _id_body(external_ids=external_ids, user_aliases=user_aliases)
        if fields_to_export:
            body["fields_to_export"] = list(fields_to_export)
        doc = (await self.post("/users/export/ids", body)).json()
        doc = doc if isinstance(doc, dict) else {}
        users = doc.get("users") or []
        invalid = doc.get("invalid_user_ids") or []
        return ExportResponse(
            users=[u for u in users if isinstance(u, dict)],
            invalid_user_ids=[str(i) for i in invalid],
            message=str(doc.get("message", "")),
        )

    async def set_subscription_status(self, groups: Sequence[Mapping[str, object]]) -> None:
        """POST /v2/subscription/status/set with one or more subscription-group objects."""
        if not groups:
            raise ValueError("no subscription groups given")
        for group in groups:
            for key in ("external_ids", "emails", "phones"):
                ids = group.get(key)
                if isinstance(ids, Sequence) and len(ids) > MAX_IDS_PER_REQUEST:
                    raise ValueError(
                        f"a subscription group may list at most {MAX_IDS_PER_REQUEST} {key}, got {len(ids)}"
                    )
        await self.post("/v2/subscription/status/set", {"subscription_groups": list(groups)})

    async def send_track_batches(
        self,
        batches: Iterable[TrackBatch],
        on_result: Callable[[BatchResult], None],
        *,
        max_in_flight: int = 8,
    ) -> SendSummary:
        """Send many batches concurrently; see :func:`dbt_dinmo.braze.send_track_batches`."""
        return await send_track_batches(self, batches, on_result, max_in_flight=max_in_flight)


def _id_body(**lists: Sequence[Any]) -> dict[str, object]:
    """A body holding the non-empty identifier lists; 1 to 50 identifiers in total."""
    body: dict[str, object] = {key: list(values) for key, values in lists.items() if values}
    total = sum(len(values) for values in lists.values())
    if not 1 <= total <= MAX_IDS_PER_REQUEST:
        raise ValueError(f"give between 1 and {MAX_IDS_PER_REQUEST} identifiers per request, got {total}")
    return body
