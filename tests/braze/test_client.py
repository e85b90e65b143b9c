"""BrazeClient and the batch sender against httpx.MockTransport (no network, no vcr)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from dbt_dinmo import __version__
from dbt_dinmo.braze import (
    BatchResult,
    BatchRule,
    BrazeClient,
    PreparedObject,
    RateLimits,
    RetryPolicy,
    TrackBatch,
    pack,
)
from dbt_dinmo.errors import AuthError, PayloadTooLargeError, TerminalError, TransientError

KEY = "test-key-f00d-not-a-real-key"
URL = "https://rest.iad-01.braze.com"
T0 = 1_700_000_000.0
Handler = Callable[..., Any]  # sync or async httpx.MockTransport handler


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)


def client(handler: Handler, clock: FakeClock | None = None, **kwargs: Any) -> BrazeClient:
    clock = clock or FakeClock()
    kwargs.setdefault("rate_limits", RateLimits.off())
    return BrazeClient(
        URL + "/",
        KEY,
        transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        clock=clock.time,
        **kwargs,
    )


def attrs(n: int, start: int = 0) -> list[PreparedObject]:
    return [
        PreparedObject("attributes", b'{"external_id":"u%d","n":%d}' % (i, i), ref=i)
        for i in range(start, start + n)
    ]


def ok(request: httpx.Request) -> httpx.Response:
    doc = orjson.loads(request.content)
    body = {"message": "success", **{f"{k}_processed": len(v) for k, v in doc.items()}}
    return httpx.Response(201, json=body)


def ids(request: httpx.Request) -> list[str]:
    return [o["external_id"] for o in orjson.loads(request.content).get("attributes", [])]


def accepted_refs(results: list[BatchResult]) -> list[int]:
    return sorted(o.ref for r in results for o in r.accepted if isinstance(o.ref, int))


def assert_no_key(*texts: object) -> None:
    for text in texts:
        assert KEY not in str(text)


# -- the request path ----------------------------------------------------------------------------


def test_public_api_is_pinned() -> None:
    import dbt_dinmo.braze as braze

    assert sorted(braze.__all__) == sorted(
        [
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
    )
    assert all(hasattr(braze, name) for name in braze.__all__)


async def test_headers_url_and_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(request)

    batch = TrackBatch(attrs(3))
    async with client(handler) as c:
        response = await c.track(batch)
    [request] = seen
    assert str(request.url) == URL + "/users/track"
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"dbt-dinmo/{__version__}"
    assert request.headers["x-braze-bulk"] == "true"
    assert request.content == batch.body()
    assert response.status == 201
    assert response.processed == {"attributes": 3}
    assert response.errors == []
    assert response.attempts == 1


def test_repr_and_validation_never_show_the_key() -> None:
    c = client(ok)
    assert "***" in repr(c)
    assert_no_key(repr(c), c.__dict__.get("_key"))
    with pytest.raises(ValueError, match="https"):
        BrazeClient("rest.iad-01.braze.com", KEY)
    with pytest.raises(ValueError, match="empty"):
        BrazeClient(URL, "  ")


async def test_429_waits_until_reset_then_retries() -> None:
    clock = FakeClock(T0 + 0.25)
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(clock.now)
        if len(calls) == 1:
            headers = {
                "X-RateLimit-Limit": "3000",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(T0 + 3)),
            }
            return httpx.Response(429, headers=headers, json={"message": "Rate limited"})
        return ok(request)

    async with client(handler, clock) as c:
        response = await c.track(TrackBatch(attrs(2)))
        stats = c.stats
    assert clock.sleeps == [pytest.approx(2.75)]
    assert calls[1] >= T0 + 3
    assert response.attempts == 2
    assert (stats.requests, stats.retries, stats.rate_limited, stats.rate_limited_waits) == (2, 1, 1, 1)


async def test_429_without_reset_backs_off_and_is_bounded() -> None:
    clock = FakeClock()
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429, text="slow down")

    retry = RetryPolicy(max_attempts=2, max_rate_limited=3, base_delay=1.0, max_delay=4.0)
    async with client(handler, clock, retry=retry) as c:
        with pytest.raises(TransientError, match=r"429.*4 attempts, 4 rate-limited") as info:
            await c.track(TrackBatch(attrs(1)))
    assert calls == 4  # the 429 budget is separate from max_attempts
    assert len(clock.sleeps) == 3
    assert all(0.09 <= s <= 4.0 for s in clock.sleeps)  # float noise at epoch magnitudes
    assert info.value.status == 429


async def test_5xx_is_retried_then_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    statuses = iter([503, 502])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses, None)
        return httpx.Response(status, text="upstream down") if status else ok(request)

    retry = RetryPolicy(base_delay=0.5, max_delay=30.0)
    with caplog.at_level(logging.DEBUG, logger="dbt_dinmo.braze"):
        async with client(handler, clock, retry=retry) as c:
            response = await c.track(TrackBatch(attrs(1)))
    assert response.attempts == 3
    assert len(clock.sleeps) == 2
    assert clock.sleeps[0] <= 0.5
    assert clock.sleeps[1] <= 1.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "HTTP 503" in warnings[0].getMessage()
    assert "retrying" in warnings[0].getMessage()
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("/users/track 201" in m and "attempt 3" in m for m in debug)


async def test_retries_exhausted_raise_transient_error() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500, json={"message": "Internal error"})

    async with client(handler) as c:
        with pytest.raises(TransientError) as info:
            await c.track(TrackBatch(attrs(1)))
    assert calls == 6
    message = str(info.value)
    assert "6 attempts" in message
    assert "HTTP 500" in message
    assert "Internal error" in message
    assert info.value.status == 500
    assert info.value.endpoint == "/users/track"


async def test_total_backoff_time_is_bounded() -> None:
    clock = FakeClock()
    retry = RetryPolicy(max_attempts=100, base_delay=10, max_delay=10, max_total=25)
    async with client(lambda r: httpx.Response(503), clock, retry=retry) as c:
        with pytest.raises(TransientError, match=r"attempts, .* s of backoff; last error: HTTP 503$"):
            await c.post("/users/track", {"attributes": []})
    assert sum(clock.sleeps) <= 25
    assert len(clock.sleeps) < 99


async def test_dropped_connection_is_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if calls == 2:
            raise httpx.ConnectError("connection refused", request=request)
        return ok(request)

    async with client(handler) as c:
        response = await c.track(TrackBatch(attrs(1)))
    assert calls == 3
    assert response.attempts == 3


async def test_timeouts_exhausted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with client(handler, retry=RetryPolicy(max_attempts=3)) as c:
        with pytest.raises(TransientError, match=r"3 attempts.*ReadTimeout: timed out"):
            await c.track(TrackBatch(attrs(1)))


async def test_unfixable_transport_errors_are_terminal() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.UnsupportedProtocol("no", request=request)

    async with client(handler) as c:
        with pytest.raises(TerminalError, match="could not be sent"):
            await c.track(TrackBatch(attrs(1)))


# -- error mapping and secrets -------------------------------------------------------------------


async def test_401_message_explains_and_never_leaks_the_key(caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text=f"Invalid API key: {KEY}")

    with caplog.at_level(logging.DEBUG):
        async with client(handler) as c:
            with pytest.raises(AuthError) as info:
                await c.track(TrackBatch(attrs(1)))
            with pytest.raises(AuthError):
                await c.post("/users/delete", {"external_ids": ["u1"]})
            response = await c.request("/users/track", b"{}")  # the raw path redacts too
    exc = info.value
    assert exc.status == 401
    assert exc.permission is None
    text = str(exc)
    assert "Invalid API key: ***" in text
    assert "instance" in text
    assert URL in text
    assert_no_key(text, repr(exc), exc.args, exc.__cause__, exc.__context__, caplog.text, response.content)
    assert all(KEY not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("call", "permission"),
    [
        (lambda c: c.track(TrackBatch(attrs(1))), "users.track"),
        (lambda c: c.delete_users(external_ids=["u1"]), "users.delete"),
        (lambda c: c.export_ids(external_ids=["u1"]), "users.export.ids"),
        (
            lambda c: c.set_subscription_status(
                [{"subscription_group_id": "g", "subscription_state": "subscribed"}]
            ),
            "subscription.status.set",
        ),
        (lambda c: c.post("/users/alias/new", {"user_aliases": []}), "users.alias.new"),
    ],
)
async def test_403_names_the_missing_permission(
    call: Callable[[BrazeClient], Awaitable[object]], permission: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"message": f"Access Denied for {KEY}"})

    async with client(handler) as c:
        with pytest.raises(AuthError) as info:
            await call(c)
    exc = info.value
    assert exc.status == 403
    assert exc.permission == permission
    assert f"'{permission}' permission" in str(exc)
    assert "Create a REST API key" in str(exc)
    assert_no_key(str(exc), repr(exc))


async def test_413_and_max_input_length_are_payload_too_large() -> None:
    responses = iter(
        [
            httpx.Response(413, text="Request Entity Too Large"),
            httpx.Response(400, json={"message": "Max Input Length Exceeded"}),
        ]
    )
    async with client(lambda r: next(responses)) as c:
        with pytest.raises(PayloadTooLargeError, match="413"):
            await c.track(TrackBatch(attrs(1)))
        with pytest.raises(PayloadTooLargeError, match="Max Input Length Exceeded"):
            await c.track(TrackBatch(attrs(1)))


async def test_400_and_404_are_terminal_with_brazes_message() -> None:
    responses = iter(
        [httpx.Response(400, json={"message": "Bad syntax"}), httpx.Response(404, text="Not Found")]
    )
    async with client(lambda r: next(responses)) as c:
        with pytest.raises(TerminalError, match="HTTP 400: Bad syntax") as info:
            await c.post("/users/delete", {"external_ids": ["u1"]})
        assert not isinstance(info.value, (AuthError, PayloadTooLargeError))
        with pytest.raises(TerminalError, match=r"404.*REST URL"):
            await c.track(TrackBatch(attrs(1)))


async def test_track_returns_the_fatal_400_with_per_object_errors() -> None:
    body = {
        "message": "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields.",
        "errors": [{"type": "bad", "input_array": "attributes", "index": 0}],
    }
    async with client(lambda r: httpx.Response(400, json=body)) as c:
        response = await c.track(TrackBatch(attrs(2)))
    assert response.status == 400
    assert response.errors == [("attributes", 0, "bad")]


async def test_remaining_zero_pauses_the_next_request_until_reset() -> None:
    clock = FakeClock(T0 + 0.5)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            201,
            json={"message": "success"},
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(T0 + 2))},
        )

    async with client(handler, clock) as c:
        await c.track(TrackBatch(attrs(1)))
        assert clock.sleeps == []
        await c.track(TrackBatch(attrs(1)))
    assert clock.sleeps == [pytest.approx(1.5)]


async def test_documented_pacing_applies_per_bucket() -> None:
    clock = FakeClock()
    async with client(ok, clock, rate_limits=RateLimits.parse({"users.export.ids": "2/min"})) as c:
        for _ in range(3):
            await c.post("/users/export/ids", {"external_ids": ["u1"]})
    assert clock.sleeps == [pytest.approx(60.0)]


# -- other endpoints -----------------------------------------------------------------------------


async def test_delete_users() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(orjson.loads(request.content))
        return httpx.Response(201, json={"deleted": 2, "message": "success"})

    async with client(handler) as c:
        deleted = await c.delete_users(
            external_ids=["u1"], user_aliases=[{"alias_name": "a", "alias_label": "l"}]
        )
        with pytest.raises(ValueError, match="between 1 and 50"):
            await c.delete_users(external_ids=[str(i) for i in range(51)])
        with pytest.raises(ValueError, match="between 1 and 50"):
            await c.delete_users()
    assert deleted == 2
    assert seen == [{"external_ids": ["u1"], "user_aliases": [{"alias_name": "a", "alias_label": "l"}]}]


async def test_export_ids() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(orjson.loads(request.content))
        body = {
            "message": "success",
            "users": [{"external_id": "u1", "braze_id": "b1"}],
            "invalid_user_ids": ["u9"],
        }
        return httpx.Response(201, json=body)

    async with client(handler) as c:
        result = await c.export_ids(external_ids=["u1", "u9"])
    assert seen == [{"external_ids": ["u1", "u9"], "fields_to_export": ["external_id", "braze_id"]}]
    assert result.users == [{"external_id": "u1", "braze_id": "b1"}]
    assert result.invalid_user_ids == ["u9"]


async def test_set_subscription_status() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"message": "success"})

    groups = [{"subscription_group_id": "g1", "subscription_state": "subscribed", "external_ids": ["u1"]}]
    async with client(handler) as c:
        await c.set_subscription_status(groups)
        with pytest.raises(ValueError, match="at most 50"):
            await c.set_subscription_status([{"subscription_group_id": "g", "emails": ["x"] * 51}])
    assert seen[0].url.path == "/v2/subscription/status/set"
    assert orjson.loads(seen[0].content) == {"subscription_groups": groups}


# -- sending many batches ------------------------------------------------------------------------


async def send(c: BrazeClient, batches: Any, max_in_flight: int = 8) -> tuple[list[BatchResult], Any]:
    results: list[BatchResult] = []
    summary = await c.send_track_batches(batches, results.append, max_in_flight=max_in_flight)
    return results, summary


async def test_send_maps_minor_errors_and_counts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        names = ids(request)
        errors = [
            {"type": "bad value", "input_array": "attributes", "index": i}
            for i, n in enumerate(names)
            if n == "u7"
        ]
        return httpx.Response(
            201, json={"message": "success", "attributes_processed": len(names), "errors": errors}
        )

    async with client(handler) as c:
        results, summary = await send(c, pack(attrs(20), BatchRule.parse("10_per_array")))
    rejected = [(o.ref, m) for r in results for o, m in r.rejected]
    assert rejected == [(7, "bad value")]
    assert accepted_refs(results) == [i for i in range(20) if i != 7]
    assert (summary.requests, summary.batches, summary.accepted, summary.rejected, summary.failed) == (
        2,
        2,
        19,
        1,
        0,
    )


async def test_too_large_batches_are_split_in_halves() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        n = len(ids(request))
        sizes.append(n)
        return httpx.Response(413, text="Request Entity Too Large") if n > 10 else ok(request)

    async with client(handler) as c:
        results, summary = await send(c, [TrackBatch(attrs(40))])
    assert sizes[0] == 40
    assert accepted_refs(results) == list(range(40))
    assert all(len(r.batch) <= 10 for r in results)
    assert summary.splits == 3
    assert summary.batches == 1
    assert summary.requests == len(sizes) == 7


async def test_a_single_object_too_large_is_rejected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        big = any(n == "u1" for n in ids(request))
        return httpx.Response(413) if big else ok(request)

    async with client(handler) as c:
        results, summary = await send(c, [TrackBatch(attrs(3))])
    [(obj, message)] = [x for r in results for x in r.rejected]
    assert obj.ref == 1
    assert "too large" in message
    assert "alone" in message
    assert summary.accepted == 2
    assert summary.rejected == 1


async def test_fatal_400_through_the_sender() -> None:
    body = {
        "message": "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields.",
        "errors": [{"type": "'external_id' is required", "input_array": "attributes", "index": 1}],
    }
    async with client(lambda r: httpx.Response(400, json=body)) as c:
        [result], summary = await send(c, [TrackBatch(attrs(3))])
    assert [o.ref for o, _ in result.rejected] == [1]
    assert [o.ref for o, _ in result.failed] == [0, 2]
    assert result.accepted == []
    assert (summary.rejected, summary.failed) == (1, 2)


async def test_other_4xx_fail_the_batch_and_go_on() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"message": "Bad syntax"}) if "u0" in ids(request) else ok(request)

    async with client(handler) as c:
        results, summary = await send(c, pack(attrs(6), BatchRule.parse("3_per_array")))
    assert summary.failed == 3
    assert summary.accepted == 3
    failed = next(r for r in results if r.failed)
    assert isinstance(failed.error, TerminalError)
    assert "Bad syntax" in failed.failed[0][1]


async def test_max_in_flight_is_respected() -> None:
    active = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.002)
        active -= 1
        return ok(request)

    async with client(handler) as c:
        _, summary = await send(c, pack(attrs(60), BatchRule.parse("2_per_array")), max_in_flight=4)
    assert peak == 4
    assert summary.batches == 30
    assert summary.accepted == 60


async def test_batches_are_pulled_lazily() -> None:
    pulled = 0

    def batches() -> Iterator[TrackBatch]:
        nonlocal pulled
        for i in range(20):
            pulled += 1
            yield TrackBatch(attrs(1, start=i))

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.001)
        return ok(request)

    seen: list[int] = []

    def on_result(result: BatchResult) -> None:
        seen.append(pulled)
        # a batch is pulled only when a slot frees: never more than 3 ahead of the results
        assert pulled <= len(seen) - 1 + 3

    async with client(handler) as c:
        await c.send_track_batches(batches(), on_result, max_in_flight=3)
    assert seen[0] == 3
    assert len(seen) == 20


async def test_auth_error_stops_pulling_reports_in_flight_and_raises() -> None:
    pulled = 0

    def batches() -> Iterator[TrackBatch]:
        nonlocal pulled
        for i in range(100):
            pulled += 1
            yield TrackBatch(attrs(1, start=i))

    async def handler(request: httpx.Request) -> httpx.Response:
        if ids(request) == ["u2"]:
            return httpx.Response(401, text=f"Invalid API key: {KEY}")
        await asyncio.sleep(0.005)  # the others are still in flight when the 401 arrives
        return ok(request)

    results: list[BatchResult] = []
    async with client(handler) as c:
        with pytest.raises(AuthError) as info:
            await c.send_track_batches(batches(), results.append, max_in_flight=4)
    assert pulled == 4
    assert len(results) == 4
    [failed] = [r for r in results if r.failed]
    assert failed.error is info.value
    assert [o.ref for o, _ in failed.failed] == [2]
    assert accepted_refs(results) == [0, 1, 3]
    assert_no_key(info.value, failed.failed[0][1])


async def test_exhausted_retries_stop_the_run_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503) if ids(request) == ["u0"] else ok(request)

    results: list[BatchResult] = []
    async with client(handler, retry=RetryPolicy(max_attempts=2)) as c:
        with pytest.raises(TransientError, match="2 attempts"):
            await c.send_track_batches(
                (TrackBatch(attrs(1, start=i)) for i in range(50)), results.append, max_in_flight=1
            )
    assert len(results) == 1
    assert results[0].failed


async def test_errors_from_the_iterable_surface_after_in_flight_finish() -> None:
    def batches() -> Iterator[TrackBatch]:
        yield TrackBatch(attrs(1))
        raise RuntimeError("warehouse went away")

    results: list[BatchResult] = []
    async with client(ok) as c:
        with pytest.raises(RuntimeError, match="warehouse"):
            await c.send_track_batches(batches(), results.append)
    assert len(results) == 1
    assert results[0].accepted


async def test_an_exception_in_on_result_cancels_the_rest() -> None:
    started = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal started
        started += 1
        await asyncio.sleep(0 if ids(request) == ["u0"] else 10)
        return ok(request)

    def on_result(result: BatchResult) -> None:
        raise KeyError("caller bug")

    async with client(handler) as c:
        with pytest.raises(KeyError, match="caller bug"):
            await c.send_track_batches(
                (TrackBatch(attrs(1, start=i)) for i in range(10)), on_result, max_in_flight=3
            )
    assert started == 3


async def test_many_batches_quick_sanity() -> None:
    """Not timed: 300 full requests through the hot path with limits off."""
    objects = (PreparedObject("attributes", b'{"external_id":"u%d","a":1}' % i, i) for i in range(300 * 75))
    async with client(ok) as c:
        _, summary = await send(c, pack(objects, BatchRule()), max_in_flight=16)
    assert summary.requests == summary.batches == 300
    assert summary.accepted == 300 * 75
    assert summary.rejected == summary.failed == 0
    assert summary.elapsed > 0


# -- the default transport (aiohttp) against a loopback server -----------------------------------


class Loopback:
    """A tiny HTTP/1.1 server; ``script`` holds what to do with each request, then 201s."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import gzip

        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length")
                )
                body = orjson.loads(await reader.readexactly(length))
                action = self.script.pop(0) if self.script else "ok"
                if action == "drop":
                    writer.close()
                    return
                payload = orjson.dumps(
                    {"message": "success", "attributes_processed": len(body.get("attributes", []))}
                )
                extra = b""
                if action == "gzip":
                    payload, extra = gzip.compress(payload), b"Content-Encoding: gzip\r\n"
                head = (
                    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n"
                )
                writer.write(head % (extra, len(payload)) + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def test_default_transport_sends_and_decodes() -> None:
    loopback = Loopback()
    loopback.script = ["ok", "gzip"]
    async with loopback as url, BrazeClient(url, KEY, rate_limits=RateLimits.off()) as c:
        results, summary = await send(c, pack(attrs(40 * 75), BatchRule()), max_in_flight=8)
    assert summary.requests == 40
    assert summary.accepted == 40 * 75
    assert all(r.response is not None and r.response.processed == {"attributes": 75} for r in results)
    head = loopback.heads[0].lower()
    assert b"post /users/track http/1.1" in head
    assert f"authorization: bearer {KEY}".lower().encode() in head
    assert b"x-braze-bulk: true" in head
    assert b"user-agent: dbt-dinmo/" in head


async def test_default_transport_retries_a_dropped_connection() -> None:
    loopback = Loopback()
    loopback.script = ["drop"]
    clock = FakeClock()
    async with loopback as url, BrazeClient(url, KEY, rate_limits=RateLimits.off(), sleep=clock.sleep) as c:
        response = await c.track(TrackBatch(attrs(2)))
    assert response.attempts == 2
    assert len(clock.sleeps) == 1


async def test_default_transport_maps_refused_connections() -> None:
    loopback = Loopback()
    async with loopback as url:
        pass  # closed again: nothing listens on that port now
    async with BrazeClient(url, KEY, retry=RetryPolicy(max_attempts=2, base_delay=0)) as c:
        with pytest.raises(TransientError, match=r"2 attempts.*ConnectError"):
            await c.track(TrackBatch(attrs(1)))
