"""Rate-limit settings, the per-bucket limiter and the retry policy (with a fake clock)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from dbt_dinmo.braze import RateLimiter, RateLimits, RetryPolicy, bucket_for, permission_for

T0 = 1_700_000_000.0


class FakeClock:
    """Wall clock whose sleeps advance time instantly and are recorded."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)


# -- settings ------------------------------------------------------------------------------------


def test_documented_limits() -> None:
    buckets = RateLimits.documented().buckets
    assert buckets is not None
    assert buckets["users.track"] == (3000, 3.0)
    assert buckets["users.delete"] == (20_000, 60.0)
    assert buckets["users.export.ids"] == (250, 60.0)
    assert buckets["subscription.status.set"] == (5000, 60.0)
    assert buckets["default"] == (250_000, 3600.0)
    assert RateLimits.off().buckets is None


@pytest.mark.parametrize(
    ("endpoint", "bucket"),
    [
        ("/users/track", "users.track"),
        ("/users/delete", "users.delete"),
        ("/users/alias/new", "users.delete"),
        ("/users/alias/update", "users.delete"),
        ("/users/identify", "users.delete"),
        ("/users/merge", "users.delete"),
        ("/users/export/ids", "users.export.ids"),
        ("/subscription/status/set", "subscription.status.set"),
        ("/v2/subscription/status/set", "subscription.status.set"),
        ("/subscription/status/get", "default"),
    ],
)
def test_endpoint_buckets(endpoint: str, bucket: str) -> None:
    assert bucket_for(endpoint) == bucket


def test_endpoint_permissions() -> None:
    assert permission_for("/users/track") == "users.track"
    assert permission_for("/users/alias/new") == "users.alias.new"
    assert permission_for("/v2/subscription/status/set") == "subscription.status.set"
    assert permission_for("/nope") is None


def test_parse_merges_overrides_over_documented() -> None:
    limits = RateLimits.parse({"users.track": "100/3s", "users.export.ids": "40/min", "default": "10/h"})
    assert limits.buckets is not None
    assert limits.buckets["users.track"] == (100, 3.0)
    assert limits.buckets["users.export.ids"] == (40, 60.0)
    assert limits.buckets["default"] == (10, 3600.0)
    assert limits.buckets["users.delete"] == (20_000, 60.0)
    assert RateLimits.parse({"users.track": "5 / 1.5 seconds"}).for_bucket("users.track") == (5, 1.5)
    assert RateLimits.parse(None) == RateLimits.documented()


@pytest.mark.parametrize("text", ["fast", "3000", "3000/3 fortnights", "0/s", "-1/s", "10/0s"])
def test_parse_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"users\.track"):
        RateLimits.parse({"users.track": text})


def test_parse_rejects_unknown_bucket() -> None:
    with pytest.raises(ValueError, match=r"unknown rate-limit bucket 'users\.trakc'.*users\.track"):
        RateLimits.parse({"users.trakc": "1/s"})


# -- limiter -------------------------------------------------------------------------------------


async def test_pacing_keeps_at_most_n_requests_per_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits({"users.track": (3, 1.0)}), clock=clock.time, sleep=clock.sleep)
    start = clock.now
    sent_at = []
    for _ in range(7):
        await limiter.acquire("users.track")
        sent_at.append(round(clock.now - start, 6))
    assert sent_at == [0, 0, 0, 1, 1, 1, 2]
    assert limiter.waits == 2


async def test_pacing_is_safe_under_concurrency() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits({"users.track": (5, 2.0)}), clock=clock.time, sleep=clock.sleep)
    sent_at: list[float] = []

    async def one() -> None:
        await limiter.acquire("users.track")
        sent_at.append(clock.now)

    await asyncio.gather(*(one() for _ in range(23)))
    assert len(sent_at) == 23
    for t in sent_at:  # no rolling 2-second window holds more than 5 sends
        assert sum(1 for u in sent_at if t <= u < t + 2.0) <= 5


async def test_off_never_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits.off(), clock=clock.time, sleep=clock.sleep)
    for _ in range(10_000):
        await limiter.acquire("users.track")
    assert clock.sleeps == []


async def test_remaining_zero_pauses_the_bucket_until_reset() -> None:
    clock = FakeClock(T0 + 0.5)
    limiter = RateLimiter(RateLimits.off(), clock=clock.time, sleep=clock.sleep)
    headers = httpx.Headers(
        {"X-RATELIMIT-LIMIT": "3000", "x-ratelimit-remaining": "0", "X-RateLimit-Reset": str(T0 + 3)}
    )
    info = limiter.observe("users.track", headers)
    assert info is not None
    assert info.remaining == 0
    assert info.reset == T0 + 3
    await limiter.acquire("users.export.ids")  # other buckets are not paused
    assert clock.sleeps == []
    await limiter.acquire("users.track")
    assert clock.sleeps == [pytest.approx(2.5)]
    await limiter.acquire("users.track")  # reset has passed: no second wait
    assert len(clock.sleeps) == 1


async def test_remaining_above_zero_and_plain_mappings() -> None:
    clock = FakeClock(T0)
    limiter = RateLimiter(RateLimits.off(), clock=clock.time, sleep=clock.sleep)
    assert limiter.observe("users.track", {"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": str(T0 + 3)})
    assert limiter.observe("users.track", {"Content-Type": "application/json"}) is None
    await limiter.acquire("users.track")
    assert clock.sleeps == []
    limiter.observe("users.track", {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(T0 + 2)})
    await limiter.acquire("users.track")
    assert clock.sleeps == [2.0]


async def test_small_reset_is_read_as_seconds_from_now() -> None:
    clock = FakeClock(T0)
    limiter = RateLimiter(RateLimits.off(), clock=clock.time, sleep=clock.sleep)
    limiter.observe("users.track", {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "4"})
    await limiter.acquire("users.track")
    assert clock.sleeps == [4.0]


async def test_block_is_capped() -> None:
    clock = FakeClock(T0)
    limiter = RateLimiter(RateLimits.off(), clock=clock.time, sleep=clock.sleep, max_block=60)
    limiter.block("default", clock.now + 3600)
    await limiter.acquire("default")
    assert clock.sleeps == [60]


# -- retry policy --------------------------------------------------------------------------------


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    assert policy.backoff(1, rand=lambda: 1.0) == 0.5
    assert policy.backoff(3, rand=lambda: 1.0) == 2.0
    assert policy.backoff(10, rand=lambda: 1.0) == 4.0
    assert policy.backoff(10, rand=lambda: 0.0) == 0.0
    assert policy.backoff(2, rand=lambda: 0.5) == 0.5


def test_failure_budget_is_bounded_by_attempts_and_total_time() -> None:
    state = RetryPolicy(max_attempts=3).start(rand=lambda: 1.0)
    assert state.after_failure() is not None
    assert state.after_failure() is not None
    assert state.after_failure() is None  # third failure: no more attempts

    state = RetryPolicy(max_attempts=10, base_delay=10, max_delay=10, max_total=25).start(rand=lambda: 1.0)
    assert state.after_failure() == 10
    assert state.after_failure() == 10
    assert state.after_failure() is None  # 30 s would exceed max_total


def test_rate_limit_budget_is_separate() -> None:
    state = RetryPolicy(max_attempts=1, max_rate_limited=2, rate_limit_max_wait=30).start(rand=lambda: 1.0)
    assert state.after_rate_limited(reset=110.0, now=100.0) == 10.0
    assert state.after_rate_limited(reset=1000.0, now=100.0) == 30.0  # capped
    assert state.after_rate_limited(reset=110.0, now=100.0) is None
    assert state.failures == 0


def test_rate_limit_without_reset_backs_off() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    assert policy.rate_limit_delay(None, now=100.0, waits=3, rand=lambda: 1.0) == 4.0
    assert policy.rate_limit_delay(90.0, now=100.0, waits=1, rand=lambda: 0.0) == 0.1  # past reset


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    assert RetryPolicy.none().max_attempts == 1
