"""Sans-IO packing of /users/track bodies and mapping of Braze's answers back to objects."""

from __future__ import annotations

import itertools

import orjson
import pytest

from dbt_dinmo.braze import (
    KINDS,
    BatchRule,
    PreparedObject,
    TrackBatch,
    TrackPacker,
    TrackResponse,
    classify,
    pack,
    parse_track_response,
)


def attr(i: int, pad: int = 0) -> PreparedObject:
    return PreparedObject("attributes", b'{"external_id":"u%d","x":"%s"}' % (i, b"a" * pad), ref=("a", i))


def event(i: int) -> PreparedObject:
    return PreparedObject("events", b'{"external_id":"u%d","name":"e","time":"2026-01-01"}' % i, ref=("e", i))


def purchase(i: int) -> PreparedObject:
    return PreparedObject("purchases", b'{"external_id":"u%d","product_id":"p"}' % i, ref=("p", i))


def counts(batch: TrackBatch) -> tuple[int, int, int]:
    return (batch.count("attributes"), batch.count("events"), batch.count("purchases"))


# -- BatchRule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "per_array", "combined"),
    [
        ("75_per_array", 75, None),
        ("75_combined", 75, 75),
        ("50_combined", 50, 50),
        (" 50-Combined ", 50, 50),
        ("legacy", 75, None),
        ("mau50", 50, 50),
        ("10_per_array", 10, None),
    ],
)
def test_batch_rule_parse(text: str, per_array: int, combined: int | None) -> None:
    rule = BatchRule.parse(text)
    assert (rule.per_array, rule.combined) == (per_array, combined)


def test_batch_rule_default_and_str() -> None:
    assert BatchRule() == BatchRule.parse("75_per_array")
    assert str(BatchRule.parse("50_combined")) == "50_combined"


@pytest.mark.parametrize("text", ["", "75", "100_combined", "0_per_array", "75 per request", "combined"])
def test_batch_rule_rejects_unknown_text_helpfully(text: str) -> None:
    with pytest.raises(ValueError, match="75_per_array") as info:
        BatchRule.parse(text)
    assert "50_combined" in str(info.value)


# -- bodies ------------------------------------------------------------------------------------


def test_body_is_exact_json_and_omits_empty_arrays() -> None:
    batch = TrackBatch([attr(1), event(2), attr(3)])
    body = batch.body()
    assert body.startswith(b'{"attributes":[')
    doc = orjson.loads(body)
    assert list(doc) == ["attributes", "events"]
    assert [o["external_id"] for o in doc["attributes"]] == ["u1", "u3"]
    assert batch.size_bytes == len(body)
    assert len(batch) == 3
    assert [o.ref for o in batch.objects] == [("a", 1), ("a", 3), ("e", 2)]
    assert batch.kind_lists["purchases"] == []


@pytest.mark.parametrize(
    "objects",
    [
        [],
        [purchase(1)],
        [event(1), purchase(2)],
        [attr(1), attr(2), event(3), purchase(4), purchase(5)],
    ],
)
def test_size_bytes_tracks_the_body_exactly(objects: list[PreparedObject]) -> None:
    batch = TrackBatch(objects)
    assert batch.size_bytes == len(batch.body())
    assert orjson.loads(batch.body()) is not None


def test_split_halves_keep_every_object() -> None:
    batch = TrackBatch([attr(i) for i in range(5)] + [event(9)])
    first, second = batch.split()
    assert [o.ref for o in first.objects + second.objects] == [o.ref for o in batch.objects]
    assert (len(first), len(second)) == (3, 3)
    with pytest.raises(ValueError, match="split"):
        TrackBatch([attr(1)]).split()


def test_unknown_kind_is_refused() -> None:
    bad = PreparedObject("users", b"{}")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown object kind"):
        TrackPacker(BatchRule()).add(bad)


# -- packing by count ----------------------------------------------------------------------------


def test_per_array_rule_fills_each_array_to_75() -> None:
    batches = list(pack([attr(i) for i in range(200)], BatchRule.parse("75_per_array")))
    assert [len(b) for b in batches] == [75, 75, 50]


def test_per_array_rule_allows_75_of_each_kind_together() -> None:
    objects = [o for i in range(100) for o in (attr(i), event(i), purchase(i))]
    batches = list(pack(objects, BatchRule.parse("75_per_array")))
    assert [counts(b) for b in batches] == [(75, 75, 75), (25, 25, 25)]
    assert max(b.count(k) for b in batches for k in KINDS) == 75


@pytest.mark.parametrize(("text", "size"), [("75_combined", 75), ("50_combined", 50)])
def test_combined_rules_cap_the_total(text: str, size: int) -> None:
    objects = [o for i in range(100) for o in (attr(i), event(i), purchase(i))]
    batches = list(pack(objects, BatchRule.parse(text)))
    assert all(len(b) == size for b in batches[:-1])
    assert sum(len(b) for b in batches) == 300
    assert len(batches) == -(-300 // size)


def test_packer_returns_a_batch_as_soon_as_it_is_full() -> None:
    packer = TrackPacker(BatchRule.parse("50_combined"))
    results = [packer.add(attr(i)) for i in range(50)]
    assert results[:49] == [None] * 49
    assert results[49] is not None
    assert len(results[49]) == 50
    assert packer.flush() is None


def test_per_array_batch_closes_when_the_next_object_does_not_fit() -> None:
    packer = TrackPacker(BatchRule.parse("75_per_array"))
    assert all(packer.add(attr(i)) is None for i in range(75))
    assert packer.add(event(0)) is None  # events still fit beside 75 attributes
    done = packer.add(attr(75))
    assert done is not None
    assert counts(done) == (75, 1, 0)
    last = packer.flush()
    assert last is not None
    assert counts(last) == (1, 0, 0)


def test_order_within_each_array_is_preserved() -> None:
    objects = [attr(i) for i in range(160)]
    refs = [o.ref for b in pack(objects, BatchRule()) for o in b.objects]
    assert refs == [o.ref for o in objects]


# -- packing by bytes ----------------------------------------------------------------------------


def test_bytes_rule_keeps_every_body_under_the_limit_and_fills_it() -> None:
    limit = 1_000
    objects = [attr(i, pad=60) for i in range(50)]  # about 80 bytes each
    batches = list(pack(objects, BatchRule(), max_body_bytes=limit))
    assert sum(len(b) for b in batches) == 50
    assert len(batches) > 1
    for b in batches:
        assert b.size_bytes == len(b.body()) <= limit
    for b, following in itertools.pairwise(batches):
        first = following.objects[0]
        # the next object would not have fit
        assert b.size_bytes + len(first.data) + 1 > limit


def test_an_object_larger_than_the_limit_travels_alone() -> None:
    objects = [attr(1), attr(2, pad=5_000), attr(3)]
    batches = list(pack(objects, BatchRule(), max_body_bytes=1_000))
    assert [[o.ref for o in b.objects] for b in batches] == [[("a", 1)], [("a", 2)], [("a", 3)]]


# -- answers -------------------------------------------------------------------------------------


def test_parse_track_response_reads_counts_and_minor_errors() -> None:
    body = orjson.dumps(
        {
            "message": "success",
            "attributes_processed": 2,
            "events_processed": 1,
            "errors": [
                {"type": "bad email", "input_array": "attributes", "index": 1},
                {"type": "odd", "input_array": "users", "index": True},
            ],
        }
    )
    parsed = parse_track_response(201, body, attempts=2)
    assert parsed == TrackResponse(
        201,
        "success",
        {"attributes": 2, "events": 1},
        [("attributes", 1, "bad email"), (None, None, "odd")],
        2,
    )
    assert parse_track_response(500, b"<html>oops</html>", 1) is None


def _mixed_batch() -> TrackBatch:
    return TrackBatch([attr(0), attr(1), attr(2), event(0), event(1), purchase(0)])


def test_minor_errors_map_to_the_exact_objects_across_arrays() -> None:
    batch = _mixed_batch()
    response = TrackResponse(
        201,
        "success",
        {"attributes": 2, "events": 1, "purchases": 1},
        [
            ("attributes", 1, "'email_subscribe' must be one of ..."),
            ("events", 0, "'time' is required"),
            ("attributes", 1, "second problem"),
        ],
        1,
    )
    result = classify(batch, response)
    assert [(o.ref, msg) for o, msg in result.rejected] == [
        (("a", 1), "'email_subscribe' must be one of ...; second problem"),
        (("e", 0), "'time' is required"),
    ]
    assert [o.ref for o in result.accepted] == [("a", 0), ("a", 2), ("e", 1), ("p", 0)]
    assert result.failed == []
    assert result.attempts == 1


def test_no_errors_accepts_everything() -> None:
    batch = _mixed_batch()
    result = classify(batch, TrackResponse(201, "success", {}, [], 1))
    assert result.accepted == batch.objects
    assert result.rejected == result.failed == []


def test_fatal_400_rejects_named_objects_and_fails_the_rest() -> None:
    batch = _mixed_batch()
    message = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
    response = TrackResponse(400, message, {}, [("attributes", 0, "bad"), ("purchases", 0, "worse")], 1)
    result = classify(batch, response)
    assert [o.ref for o, _ in result.rejected] == [("a", 0), ("p", 0)]
    assert result.accepted == []
    assert [o.ref for o, _ in result.failed] == [("a", 1), ("a", 2), ("e", 0), ("e", 1)]
    assert all("not applied" in msg and "Valid data" in msg for _, msg in result.failed)


def test_an_error_that_points_nowhere_makes_its_array_uncertain() -> None:
    batch = _mixed_batch()
    response = TrackResponse(201, "success", {}, [("events", 7, "index out of range")], 1)
    result = classify(batch, response)
    assert [o.ref for o, _ in result.failed] == [("e", 0), ("e", 1)]
    assert [o.ref for o in result.accepted] == [("a", 0), ("a", 1), ("a", 2), ("p", 0)]

    unknown = TrackResponse(201, "success", {}, [(None, None, "something")], 1)
    assert classify(batch, unknown).accepted == []
