"""The pure workspace model: validation, identity, value semantics, billing, persistence."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dbt_dinmo.emulator import Workspace, parse_api_keys
from dbt_dinmo.emulator._countries import normalize_country

T = "2024-05-01T10:00:00Z"


def attrs(ws: Workspace, *objects: dict[str, Any], **kw: Any) -> Any:
    return ws.track({"attributes": list(objects)}, **kw)


def custom(ws: Workspace, external_id: str) -> dict[str, Any]:
    user = ws.find_user(external_id=external_id)
    assert user is not None
    return user["custom_attributes"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- validation


def test_minor_errors_carry_array_and_index_and_valid_objects_still_apply() -> None:
    ws = Workspace()
    result = ws.track(
        {
            "attributes": [
                {"external_id": "a0", "first_name": "Ada"},
                {"first_name": "no identifier"},
                {"external_id": "a2", "email_subscribe": "maybe"},
                {"external_id": "a3", "gender": "X"},
                {"external_id": "a4", "dob": "01/02/1990"},
                {"external_id": "a5", "nickname": "x" * 256},
                {"external_id": "a6", "time_zone": "Mars/Olympus"},
                {"external_id": "a7", "country": 12},
                {"external_id": "a8", "profile": {"bad key": 1}},
                {"external_id": "a9", "gender": None, "time_zone": "Europe/Paris", "dob": "1990-02-01"},
            ],
            "events": [
                {"external_id": "a0", "name": "ok", "time": T},
                {"external_id": "a0", "name": "no_time"},
                {"external_id": "a0", "name": "bad", "time": T, "properties": {"$x": 1}},
                {"external_id": "a0", "name": "bad", "time": T, "properties": {"time": 1}},
                {"external_id": "a0", "time": T},
                {"external_id": "a0", "name": "long", "time": T, "properties": {"p": "y" * 256}},
            ],
            "purchases": [
                {"external_id": "a0", "product_id": "p", "currency": "EUR", "price": 1.5, "time": T},
                {"external_id": "a0", "product_id": "p", "currency": "EURO", "price": 1, "time": T},
                {
                    "external_id": "a0",
                    "product_id": "p",
                    "currency": "EUR",
                    "price": 1,
                    "quantity": 0,
                    "time": T,
                },
                {
                    "external_id": "a0",
                    "product_id": "p",
                    "currency": "EUR",
                    "price": 1,
                    "quantity": 101,
                    "time": T,
                },
                {"external_id": "a0", "product_id": "p", "currency": "EUR", "price": "1", "time": T},
                {"external_id": "a0", "product_id": "p" * 256, "currency": "EUR", "price": 1, "time": T},
            ],
        }
    )
    where = [(e["input_array"], e["index"]) for e in result.errors]
    assert where == [
        *(("attributes", i) for i in range(1, 9)),
        *(("events", i) for i in range(1, 6)),
        *(("purchases", i) for i in range(1, 6)),
    ]
    assert (
        "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required" in result.errors[0]["type"]
    )
    assert "email_subscribe" in result.errors[1]["type"]
    assert result.processed == {"attributes": 2, "events": 1, "purchases": 1}
    assert ws.find_user(external_id="a2") is None  # invalid objects are not applied at all
    a9 = ws.find_user(external_id="a9")
    assert a9 is not None
    assert a9["standard_attributes"]["time_zone"] == "Europe/Paris"


def test_country_is_mapped_best_effort_and_unmappable_is_stored_null() -> None:
    ws = Workspace()
    result = attrs(
        ws,
        {"external_id": "au", "country": "Australia"},
        {"external_id": "fr", "country": "fr"},
        {"external_id": "xx", "country": "Narnia"},
    )
    assert not result.errors
    std = {u["external_id"]: u["standard_attributes"] for u in ws.users()}
    assert std["au"]["country"] == "AU"
    assert std["fr"]["country"] == "FR"
    assert "country" not in std["xx"]
    assert normalize_country("United Kingdom") == "GB" == normalize_country("UK")


# ---------------------------------------------------------------------------- identity


@pytest.mark.parametrize(
    ("array", "ident", "flag", "created"),
    [
        ("attributes", {"external_id": "e1"}, None, True),
        ("attributes", {"external_id": "e1"}, False, True),
        ("attributes", {"external_id": "e1"}, True, False),
        ("attributes", {"user_alias": {"alias_name": "n", "alias_label": "l"}}, None, False),
        ("attributes", {"user_alias": {"alias_name": "n", "alias_label": "l"}}, False, True),
        ("attributes", {"user_alias": {"alias_name": "n", "alias_label": "l"}}, True, False),
        ("attributes", {"braze_id": "0" * 24}, None, False),
        ("attributes", {"braze_id": "0" * 24}, False, False),
        ("attributes", {"email": "a@x.io"}, None, True),
        ("attributes", {"email": "a@x.io"}, True, False),
        ("attributes", {"phone": "+33600000000"}, None, True),
        ("events", {"external_id": "e1"}, None, True),
        ("events", {"external_id": "e1"}, True, False),
        ("events", {"user_alias": {"alias_name": "n", "alias_label": "l"}}, None, False),
        ("events", {"user_alias": {"alias_name": "n", "alias_label": "l"}}, False, False),
        ("purchases", {"user_alias": {"alias_name": "n", "alias_label": "l"}}, False, False),
    ],
)
def test_identity_table(array: str, ident: dict[str, Any], flag: bool | None, created: bool) -> None:
    ws = Workspace()
    obj: dict[str, Any] = {**ident}
    if flag is not None:
        obj["_update_existing_only"] = flag
    if array == "events":
        obj.update(name="e", time=T)
    elif array == "purchases":
        obj.update(product_id="p", currency="USD", price=1, time=T)
    else:
        obj["plan"] = "pro"
    result = ws.track({array: [obj]})
    assert result.processed == {array: 1}  # skipped objects still count as processed
    assert not result.errors
    assert len(ws) == (1 if created else 0)
    assert result.skipped == (0 if created else 1)


def test_alias_events_can_create_when_configured() -> None:
    ws = Workspace()
    alias = {"alias_name": "n", "alias_label": "l"}
    ws.track(
        {"events": [{"user_alias": alias, "_update_existing_only": False, "name": "e", "time": T}]},
        alias_events_create=True,
    )
    user = ws.find_user(user_alias=alias)
    assert user is not None
    assert user["external_id"] is None
    assert len(user["events"]) == 1


def test_existing_users_are_updated_by_every_identifier() -> None:
    ws = Workspace()
    attrs(ws, {"external_id": "u1", "email": "u1@x.io"})
    ws.new_aliases([("u1", "crm", "c-1")])
    braze_id = ws.find_user(external_id="u1")["braze_id"]  # type: ignore[index]
    attrs(
        ws,
        {"user_alias": {"alias_name": "c-1", "alias_label": "crm"}, "a": 1},
        {"braze_id": braze_id, "b": 2, "_update_existing_only": True},
        {"email": "u1@x.io", "c": 3},
    )
    assert len(ws) == 1
    assert custom(ws, "u1") == {"a": 1, "b": 2, "c": 3}


def test_email_prefers_the_most_recent_profile_with_an_external_id() -> None:
    ws = Workspace()
    attrs(ws, {"external_id": "old", "email": "s@x.io"})
    attrs(ws, {"email": "s@x.io", "_update_existing_only": True, "x": 0})  # goes to "old"
    ws.create_users([{"email": "s@x.io"}])  # an email-only duplicate, more recent
    attrs(ws, {"email": "s@x.io", "x": 1})
    assert custom(ws, "old") == {"x": 1}


def test_braze_ids_look_like_object_ids_and_are_unique() -> None:
    ws = Workspace()
    attrs(ws, *({"external_id": f"u{i}"} for i in range(50)))
    ids = {u["braze_id"] for u in ws.users()}
    assert len(ids) == 50
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)


# ---------------------------------------------------------------------------- values


def test_value_semantics() -> None:
    ws = Workspace()
    attrs(
        ws,
        {
            "external_id": "u",
            "gone": "x",
            "tags": ["a", "b", "a", "c"],
            "visits": 2,
            "pets": ["cat"],
            "profile": {"city": "Paris", "zip": "75001"},
            "cars": [{"id": 1, "color": "red"}, {"id": 2, "color": "blue"}],
        },
    )
    assert custom(ws, "u")["tags"] == ["b", "a", "c"]  # last occurrence wins the position
    attrs(
        ws,
        {
            "external_id": "u",
            "gone": None,
            "visits": {"inc": 3},
            "new_counter": {"inc": -1},
            "pets": {"add": ["dog", "cat"], "remove": ["fish"]},
            "profile": {"city": "Lyon"},
            "cars": {"$remove": [{"$identifier_key": "id", "$identifier_value": 1}]},
        },
    )
    c = custom(ws, "u")
    assert "gone" not in c
    assert c["visits"] == 5
    assert c["new_counter"] == -1
    assert c["pets"] == ["dog", "cat"]  # re-adding moves to the end
    assert c["profile"] == {"city": "Lyon"}  # replaced without _merge_objects
    assert c["cars"] == [{"id": 2, "color": "blue"}]
    attrs(
        ws,
        {
            "external_id": "u",
            "_merge_objects": True,
            "profile": {"zip": "69001", "geo": {"lat": 1}},
            "cars": {
                "$update": [
                    {"$identifier_key": "id", "$identifier_value": 2, "$new_object": {"color": "green"}}
                ]
            },
            "pets": {"remove": ["dog"]},
        },
    )
    c = custom(ws, "u")
    assert c["profile"] == {"city": "Lyon", "zip": "69001", "geo": {"lat": 1}}
    assert c["cars"] == [{"id": 2, "color": "green"}]
    assert c["pets"] == ["cat"]


def test_string_arrays_drop_the_oldest_value_at_the_cap() -> None:
    ws = Workspace()
    attrs(ws, {"external_id": "u", "t": ["a", "b", "c"]}, cap=3)
    attrs(ws, {"external_id": "u", "t": {"add": ["d"]}}, cap=3)
    assert custom(ws, "u")["t"] == ["b", "c", "d"]


def test_events_and_purchases_are_never_deduplicated_and_future_times_are_clamped() -> None:
    ws = Workspace()
    future = (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()
    event = {"external_id": "u", "name": "click", "time": T, "properties": {"k": "v"}}
    purchase = {
        "external_id": "u",
        "product_id": "p",
        "currency": "eur",
        "price": 2,
        "quantity": 3,
        "time": T,
    }
    ws.track({"events": [event, event, {**event, "time": future}], "purchases": [purchase, purchase]})
    user = ws.find_user(external_id="u")
    assert user is not None
    assert len(user["events"]) == 3
    assert len(ws.events()) == 3
    assert datetime.fromisoformat(user["events"][2]["time"].replace("Z", "+00:00")) <= datetime.now(
        timezone.utc
    )
    assert [p["quantity"] for p in ws.purchases("u")] == [3, 3]
    assert ws.purchases()[0]["currency"] == "EUR"


# ---------------------------------------------------------------------------- data points


def test_data_points_count_every_billable_key_changed_or_not() -> None:
    ws = Workspace()
    obj = {
        "external_id": "u",  # 0
        "_update_existing_only": False,  # 0
        "_merge_objects": False,  # 0
        "email_subscribe": "opted_in",  # 0
        "push_subscribe": "subscribed",  # 0
        "subscription_groups": [{"subscription_group_id": "g", "subscription_state": "subscribed"}],  # 0
        "first_name": "Ada",  # 1
        "country": "FR",  # 1
        "plan": "pro",  # 1
        "score": None,  # 1
        "tags": ["a", "b", "c"],  # 1 (whole array)
        "pets": {"add": ["cat", "dog"]},  # 2 (per value)
        "visits": {"inc": 1},  # 1
        "profile": {"city": "Paris", "geo": {"lat": 1, "lon": 2}},  # 4 (every key, every depth)
    }
    first = attrs(ws, obj)
    assert first.data_points == 12
    assert attrs(ws, obj).data_points == 12  # unchanged values are billed again
    result = ws.track(
        {
            "events": [{"external_id": "u", "name": "e", "time": T, "properties": {"a": 1, "b": 2}}],  # 3
            "purchases": [
                {"external_id": "u", "product_id": "p", "currency": "USD", "price": 1, "time": T}
            ],  # 1
        }
    )
    assert result.data_points == 4
    counters = ws.counters()["data_points"]
    assert counters == {"total": 28, "attributes": 24, "events": 3, "purchases": 1}
    assert ws.data_points == 28
    assert ws.find_user(external_id="u")["subscription_groups"] == {"g": "subscribed"}  # type: ignore[index]


def test_email_used_as_identifier_is_free_but_as_attribute_costs_one() -> None:
    ws = Workspace()
    assert attrs(ws, {"email": "a@x.io", "plan": "p"}).data_points == 1
    assert attrs(ws, {"external_id": "u", "email": "b@x.io"}).data_points == 1
    assert attrs(ws, {"external_id": "u", "_update_existing_only": True, "email": "b@x.io"}).data_points == 1


def test_skipped_objects_bill_nothing() -> None:
    ws = Workspace()
    assert attrs(ws, {"braze_id": "f" * 24, "plan": "x"}).data_points == 0


# ---------------------------------------------------------------------------- other operations


def test_delete_by_each_identifier_and_record_deletions() -> None:
    ws = Workspace()
    attrs(ws, *({"external_id": f"u{i}", "email": f"u{i}@x.io"} for i in range(4)))
    ws.track({"events": [{"external_id": "u0", "name": "e", "time": T}]})
    ws.new_aliases([("u1", "crm", "c1")])
    braze_id = ws.find_user(external_id="u2")["braze_id"]  # type: ignore[index]
    deleted = ws.delete(
        external_ids=["u0", "nobody"],
        aliases=[("crm", "c1")],
        braze_ids=[braze_id],
        emails=[("u3@x.io", ["identified"])],
    )
    assert deleted == 4
    assert len(ws) == 0
    assert sorted(d["deleted_by"] for d in ws.deletions()) == [
        "braze_id",
        "email",
        "external_id",
        "user_alias",
    ]
    assert len(ws.events()) == 1  # event counts are not decremented
    assert ws.delete(external_ids=["u0"]) == 0


def test_delete_by_email_needs_a_single_prioritized_match() -> None:
    ws = Workspace()
    ws.create_users([{"email": "d@x.io"}, {"email": "d@x.io"}])
    assert ws.delete(emails=[("d@x.io", ["unidentified"])]) == 0  # still two candidates
    assert ws.delete(emails=[("d@x.io", ["unidentified", "most_recently_updated"])]) == 1
    assert len(ws) == 1


def test_subscriptions_never_create_users_and_strict_mode_applies_nothing() -> None:
    ws = Workspace()
    attrs(ws, {"external_id": "u1", "email": "s@x.io"}, {"external_id": "u2", "email": "s@x.io"})
    billed = ws.data_points
    unknown = ws.set_subscriptions([("g1", "subscribed", ["u1", "ghost"], [], [])])
    assert unknown == ["ghost"]
    assert len(ws) == 2
    assert ws.find_user(external_id="ghost") is None
    assert ws.set_subscriptions([("g2", "unsubscribed", [], ["s@x.io"], [])]) == []
    assert ws.set_subscriptions([("g3", "subscribed", ["u1", "ghost"], [], [])], strict=True) == ["ghost"]
    u1, u2 = ws.find_user(external_id="u1"), ws.find_user(external_id="u2")
    assert u1 is not None
    assert u1["subscription_groups"] == {"g1": "subscribed", "g2": "unsubscribed"}
    assert u2 is not None
    assert u2["subscription_groups"] == {"g2": "unsubscribed"}
    assert ws.data_points == billed  # subscription changes are free


def test_aliases_and_identify_merge_profiles() -> None:
    ws = Workspace()
    assert ws.new_aliases([(None, "crm", "lead-1"), (None, "crm", "lead-2"), ("missing", "crm", "x")]) == 2
    attrs(ws, {"user_alias": {"alias_name": "lead-1", "alias_label": "crm"}, "score": 5, "plan": "free"})
    ws.track(
        {"events": [{"user_alias": {"alias_name": "lead-1", "alias_label": "crm"}, "name": "e", "time": T}]}
    )
    attrs(ws, {"external_id": "u1", "plan": "pro"})
    assert ws.identify([("u1", ("crm", "lead-1")), ("u9", ("crm", "lead-2"))]) == 2
    merged = ws.find_user(external_id="u1")
    assert merged is not None
    assert merged["custom_attributes"] == {"plan": "pro", "score": 5}  # the identified profile wins
    assert merged["user_aliases"] == [{"alias_name": "lead-1", "alias_label": "crm"}]
    assert [e["external_id"] for e in merged["events"]] == ["u1"]
    assert ws.find_user(user_alias={"alias_name": "lead-2", "alias_label": "crm"})["external_id"] == "u9"  # type: ignore[index]
    assert len(ws) == 2
    assert ws.rename_aliases([("crm", "lead-2", "lead-3")]) == 1
    assert ws.find_user(user_alias=("crm", "lead-3")) is not None


def test_create_users_validates_and_does_not_bill() -> None:
    ws = Workspace()
    ids = ws.create_users([{"external_id": "u1", "attributes": {"first_name": "Ada", "plan": "pro"}}])
    assert len(ids) == 1
    assert ws.data_points == 0
    assert ws.find_user(braze_id=ids[0])["standard_attributes"] == {"first_name": "Ada"}  # type: ignore[index]
    with pytest.raises(ValueError, match="gender"):
        ws.create_users([{"external_id": "u2", "attributes": {"gender": "?"}}])
    assert len(ws) == 1


def test_export_returns_requested_fields_and_invalid_ids() -> None:
    ws = Workspace()
    attrs(ws, {"external_id": "u1", "first_name": "Ada", "email": "a@x.io", "plan": "pro"})
    users, invalid = ws.export(
        external_ids=["u1", "nope"], fields=["external_id", "first_name", "custom_attributes"]
    )
    assert users == [{"external_id": "u1", "first_name": "Ada", "custom_attributes": {"plan": "pro"}}]
    assert invalid == ["nope"]
    users, _ = ws.export(email="a@x.io", fields=None)
    assert users[0]["email"] == "a@x.io"
    assert users[0]["created_at"].endswith(" UTC")


# ---------------------------------------------------------------------------- state


def test_state_round_trip_keeps_users_events_deletions_and_counters() -> None:
    ws = Workspace()
    attrs(ws, {"external_id": "u1", "email": "a@x.io", "plan": "pro"}, {"external_id": "u2"})
    ws.track({"events": [{"external_id": "u1", "name": "e", "time": T}]})
    ws.new_aliases([("u1", "crm", "c1")])
    ws.set_subscriptions([("g", "subscribed", ["u1"], [], [])])
    ws.delete(external_ids=["u2"])
    ws.record_request("/users/track", 201)
    copy = Workspace()
    copy.load_state(ws.to_state())
    assert copy.users() == ws.users()
    assert copy.deletions() == ws.deletions()
    assert copy.counters() == ws.counters()
    assert copy.find_user(email="a@x.io") is not None
    assert copy.find_user(user_alias=("crm", "c1")) is not None
    attrs(copy, {"external_id": "u3"})  # new ids still work after a load
    assert len(copy) == 2


def test_concurrent_tracks_lose_nothing() -> None:
    ws = Workspace()

    def worker(n: int) -> None:
        for i in range(50):
            attrs(
                ws, {"external_id": f"t{n}-{i}", "v": {"inc": 1}}, {"external_id": "shared", "v": {"inc": 1}}
            )

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ws) == 201
    assert custom(ws, "shared")["v"] == 200


def test_parse_api_keys() -> None:
    assert parse_api_keys(" k1 ; k2=users.track, users.delete ;") == {
        "k1": None,
        "k2": frozenset({"users.track", "users.delete"}),
    }
    with pytest.raises(ValueError, match="empty API key"):
        parse_api_keys("=users.track")
    with pytest.raises(ValueError, match="invalid permission"):
        parse_api_keys("k=Users Track")
