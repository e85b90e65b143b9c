from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from dbt_dinmo.payloads import ValueRejected, check_standard, data_points, make_converter


def test_timestamps_become_iso_utc() -> None:
    conv = make_converter(pa.timestamp("us", tz="Europe/Paris"))
    value = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert conv(value) == "2024-05-01T10:00:00Z"
    naive = make_converter(pa.timestamp("us"))
    assert naive(dt.datetime(2024, 5, 1, 12, 0, 0, 500)) == "2024-05-01T12:00:00.000500Z"


def test_numbers_dates_lists_structs_maps() -> None:
    assert make_converter(pa.decimal128(12, 2))(Decimal("412.50")) == 412.5
    assert make_converter(pa.decimal128(12, 2))(Decimal("10.00")) == 10
    assert make_converter(pa.date32())(dt.date(1990, 1, 31)) == "1990-01-31"
    assert make_converter(pa.list_(pa.string()))(["a", "b"]) == ["a", "b"]
    struct = pa.struct([("city", pa.string()), ("since", pa.date32())])
    assert make_converter(struct)({"city": "Lyon", "since": dt.date(2020, 1, 1)}) == {
        "city": "Lyon",
        "since": {"$time": "2020-01-01"},
    }
    assert make_converter(pa.map_(pa.string(), pa.int64()))([("a", 1)]) == {"a": 1}
    assert make_converter(pa.string(), "JSON")('{"tier": "gold"}') == {"tier": "gold"}
    assert make_converter(pa.int64())(None) is None


@pytest.mark.parametrize(
    ("arrow_type", "declared", "value"),
    [
        (pa.string(), None, "x" * 256),
        (pa.float64(), None, float("nan")),
        (pa.string(), "json", "{not json"),
        (pa.string(), "json", '{"bad.key": 1}'),
        (pa.binary(), None, b"\x00"),
    ],
)
def test_values_braze_would_refuse(arrow_type: pa.DataType, declared: str | None, value: object) -> None:
    with pytest.raises(ValueRejected):
        make_converter(arrow_type, declared)(value)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("email_subscribe", "yes"),
        ("gender", "male"),
        ("dob", "31/01/1990"),
        ("dob", "1990-02-31"),
        ("country", "France"),
        ("language", "FR"),
        ("time_zone", "Mars/Olympus"),
    ],
)
def test_standard_fields_rejected(attribute: str, value: str) -> None:
    with pytest.raises(ValueRejected):
        check_standard(attribute, value)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("email_subscribe", "opted_in"),
        ("gender", "F"),
        ("gender", None),
        ("dob", "1990-01-31"),
        ("country", "FR"),
        ("language", "fr"),
        ("time_zone", "Europe/Paris"),
        ("anything", "x"),
    ],
)
def test_standard_fields_accepted(attribute: str, value: str | None) -> None:
    check_standard(attribute, value)


def test_data_points() -> None:
    assert data_points("first_name", "Ada") == 1
    assert data_points("email_subscribe", "opted_in") == 0
    assert data_points("tags", ["a", "b"]) == 1
    assert data_points("address", {"city": "Lyon", "zip": "69001"}) == 2
    assert data_points("address", None) == 1


def test_null_keys_inside_nested_objects_are_dropped() -> None:
    struct = pa.struct([("city", pa.string()), ("zip", pa.string())])
    assert make_converter(struct)({"city": "Lyon", "zip": None}) == {"city": "Lyon"}
    assert make_converter(pa.string(), "json")('{"a": {"b": null, "c": 1}}') == {"a": {"c": 1}}
