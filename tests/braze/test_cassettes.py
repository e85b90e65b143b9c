"""Replays of Braze's documented responses (hand-written cassettes, record mode "none").

Cassettes live in ``cassettes/test_cassettes/``; they hold ``Authorization: REDACTED`` and never a
key. Requests match on method, URL and JSON body, so a different payload is never answered by
another test's response. These tests go through the client's default (aiohttp) transport, which
vcrpy intercepts; no test here uses ``httpx.MockTransport``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from vcr.errors import CannotOverwriteExistingCassetteException

from dbt_dinmo.activation import Identifier
from dbt_dinmo.braze import BatchResult, BrazeClient, PreparedObject, RateLimits, RetryPolicy, TrackBatch
from dbt_dinmo.profiles import ProfileGate
from dbt_dinmo.state import KnownKey, StateStore

KEY = "cassette-key-not-real-0000"
URL = "https://rest.iad-01.braze.com"
CASSETTES = Path(__file__).parent / "cassettes" / "test_cassettes"

pytestmark = [pytest.mark.vcr, pytest.mark.block_network]


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    return {
        "filter_headers": [("authorization", "REDACTED")],
        "match_on": ["method", "scheme", "host", "port", "path", "query", "body"],
        "decode_compressed_response": True,
        "record_mode": "none",
    }


def client() -> BrazeClient:
    # No retries: a request that is not in the cassette must fail at once, not back off.
    return BrazeClient(URL, KEY, rate_limits=RateLimits.off(), retry=RetryPolicy.none())


def obj(kind: str, data: bytes, ref: object) -> PreparedObject:
    return PreparedObject(kind, data, ref)  # type: ignore[arg-type]


async def test_track_success() -> None:
    batch = TrackBatch(
        [
            obj("attributes", b'{"external_id":"u-1001","first_name":"Ada","lifetime_value":412.5}', 1),
            obj(
                "attributes",
                b'{"user_alias":{"alias_name":"lead-77","alias_label":"crm_id"},'
                b'"_update_existing_only":false,"lead_score":12}',
                2,
            ),
            obj(
                "events",
                b'{"external_id":"u-1001","name":"plan_upgraded","time":"2026-11-01T10:00:00Z",'
                b'"properties":{"plan":"pro","seats":5}}',
                3,
            ),
            obj(
                "purchases",
                b'{"external_id":"u-1001","product_id":"pro_annual","currency":"EUR","price":99.0,'
                b'"quantity":1,"time":"2026-11-01T10:00:00Z"}',
                4,
            ),
        ]
    )
    async with client() as c:
        response = await c.track(batch)
    assert response.status == 201
    assert response.message == "success"
    assert response.processed == {"attributes": 2, "events": 1, "purchases": 1}
    assert response.errors == []


async def test_track_partial_success() -> None:
    batch = TrackBatch(
        [
            obj("attributes", b'{"external_id":"u-1001","email_subscribe":"opted_in"}', "u-1001"),
            obj("attributes", b'{"first_name":"Nobody"}', "nobody"),
            obj("attributes", b'{"external_id":"u-1003","email_subscribe":"maybe"}', "u-1003"),
        ]
    )
    results: list[BatchResult] = []
    async with client() as c:
        summary = await c.send_track_batches([batch], results.append)
    [result] = results
    assert [o.ref for o in result.accepted] == ["u-1001"]
    assert [(o.ref, message) for o, message in result.rejected] == [
        ("nobody", "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"),
        ("u-1003", "'email_subscribe' must be one of 'opted_in', 'subscribed' or 'unsubscribed'"),
    ]
    assert (summary.accepted, summary.rejected, summary.failed, summary.requests) == (1, 2, 0, 1)


async def test_track_fatal_400() -> None:
    batch = TrackBatch(
        [
            obj("events", b'{"external_id":"u-1001","name":"signed_up"}', "no-time"),
            obj("events", b'{"name":"orphan","time":"2026-11-01T10:00:00Z"}', "no-id"),
        ]
    )
    results: list[BatchResult] = []
    async with client() as c:
        await c.send_track_batches([batch], results.append)
    [result] = results
    assert result.response is not None
    assert result.response.status == 400
    assert result.response.message.startswith("Valid data must be provided")
    assert [(o.ref, m) for o, m in result.rejected] == [
        ("no-time", "'time' is required"),
        ("no-id", "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"),
    ]
    assert result.accepted == []
    assert result.failed == []


async def test_users_delete() -> None:
    async with client() as c:
        deleted = await c.delete_users(
            external_ids=["u-1001", "u-1002"],
            user_aliases=[{"alias_name": "lead-77", "alias_label": "crm_id"}],
        )
    assert deleted == 3


async def test_users_export_ids() -> None:
    async with client() as c:
        export = await c.export_ids(
            external_ids=["u-1001", "u-9999"],
            fields_to_export=["external_id", "first_name", "custom_attributes"],
        )
    assert export.users == [
        {"external_id": "u-1001", "first_name": "Ada", "custom_attributes": {"lifetime_value": 412.5}}
    ]
    assert export.invalid_user_ids == ["u-9999"]
    assert export.message == "success"


async def test_subscription_status_v2() -> None:
    group = {
        "subscription_group_id": "0c2d9c3e-7f2a-4c1e-9b8d-5a6f3e2d1c0b",
        "subscription_state": "subscribed",
        "external_ids": ["u-1001", "u-1002"],
    }
    async with client() as c:
        await c.set_subscription_status([group])  # 201 {"message": "success"}: no exception


async def test_profile_check_export(tmp_path: Path) -> None:
    """The profile gate reads Braze's documented export answer: found users become known, the
    others wait for their profile."""
    started = dt.datetime.now(dt.timezone.utc)
    with StateStore(tmp_path) as store:
        con = store.cursor()
        con.register("__cand", pa.table({"__id": ["u-1001", "u-9999"]}))
        gate = ProfileGate(con, KnownKey("braze", "external_id"), Identifier("customer_id"), started)
        assert gate.split("SELECT __id FROM __cand").to_check == 2
        async with client() as c:
            assert await gate.check(c, max_in_flight=1) == 1
        assert gate.waiting_sample(5) == ["u-9999"]
        known = con.execute("SELECT identifier, source FROM known_users").fetchall()
        assert known == [("u-1001", "export")]
        con.close()


@pytest.mark.default_cassette("test_users_delete.yaml")
async def test_a_different_body_is_not_replayed() -> None:
    async with client() as c:
        with pytest.raises(CannotOverwriteExistingCassetteException):
            await c.delete_users(external_ids=["someone-else"])


@pytest.mark.parametrize("path", sorted(CASSETTES.glob("*.yaml")), ids=lambda p: p.name)
def test_cassettes_hold_no_key(path: Path) -> None:
    text = path.read_text()
    assert "REDACTED" in text
    assert KEY not in text
    assert "Bearer" not in text


def test_every_cassette_is_used() -> None:
    names = {p.stem for p in CASSETTES.glob("*.yaml")}
    assert names == {
        "test_track_success",
        "test_track_partial_success",
        "test_track_fatal_400",
        "test_users_delete",
        "test_users_export_ids",
        "test_subscription_status_v2",
        "test_profile_check_export",
    }
