"""Turn model values into Braze JSON, reject what Braze would refuse, count data points.

Converters are built once per Arrow column type and applied only to the values that changed, so
the cost stays proportional to what is sent. A value Braze would refuse raises
:class:`ValueRejected` with a reason; the row is then reported instead of silently altered.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import available_timezones

import orjson
import pyarrow as pa
import pyarrow.types as pat

Converter = Callable[[Any], Any]
MAX_STRING = 255
SUBSCRIBE_STATES = ("opted_in", "subscribed", "unsubscribed")
GENDERS = ("M", "F", "O", "N", "P")
NOT_BILLED = frozenset({"email_subscribe", "push_subscribe", "subscription_groups"})
_DOB = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_LANGUAGE = re.compile(r"^[a-z]{2}$")
_TIMEZONES: frozenset[str] | None = None


class ValueRejected(ValueError):
    """A value Braze would refuse; the message is the reason shown to the user."""


def iso_utc(value: dt.datetime) -> str:
    """ISO-8601 in UTC with a Z; naive timestamps are taken as UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat() + "Z"


def _string(value: Any) -> Any:
    if value is not None and len(value) > MAX_STRING:
        raise ValueRejected(f"is {len(value)} characters long; Braze accepts at most {MAX_STRING}")
    return value


def _number(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueRejected(f"is {value}, which JSON cannot carry")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueRejected(f"is {value}, which JSON cannot carry")
    return value


def _timestamp(value: Any) -> Any:
    return None if value is None else iso_utc(value)


def _date(value: Any) -> Any:
    return None if value is None else value.isoformat()


def _time(value: Any) -> Any:
    return None if value is None else value.isoformat()


def _json_text(value: Any) -> Any:
    if value is None:
        return None
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueRejected("is not valid JSON") from None
    return _check_nested(_strip(parsed))


def _strip(value: Any) -> Any:
    """Drop null keys inside nested objects: Braze refuses nulls there, and since a nested object
    replaces the stored one, an absent key and a null key mean the same."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _check_nested(value: Any, depth: int = 0) -> Any:
    """Check keys and string sizes inside a nested object or array (Braze's nested rules)."""
    if isinstance(value, dict):
        if set(value) == {"$time"}:  # Braze's own wrapper for dates inside objects
            return value
        for key, item in value.items():
            if not key or len(key) > MAX_STRING or any(c in key for c in ".$ "):
                raise ValueRejected(
                    f"has the nested key {key!r}; nested keys need 1-255 characters without "
                    "'.', '$' or spaces"
                )
            _check_nested(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_nested(item, depth + 1)
    elif isinstance(value, str):
        _string(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueRejected(f"holds {value}, which JSON cannot carry")
    return value


def make_converter(arrow_type: pa.DataType, declared_type: str | None = None) -> Converter:
    """Return a function mapping a Python value of this Arrow type to Braze JSON."""
    return _converter(arrow_type, declared_type, nested=False)


def _converter(arrow_type: pa.DataType, declared: str | None, nested: bool) -> Converter:
    if pat.is_dictionary(arrow_type):
        return _converter(arrow_type.value_type, declared, nested)
    if pat.is_string(arrow_type) or pat.is_large_string(arrow_type):
        if declared and declared.strip().lower() in ("json", "jsonb"):
            return _json_text
        return _string
    if pat.is_boolean(arrow_type):
        return lambda v: v
    if pat.is_integer(arrow_type):
        return lambda v: v
    if pat.is_floating(arrow_type) or pat.is_decimal(arrow_type):
        return _number
    if pat.is_timestamp(arrow_type):
        if nested:
            return lambda v: None if v is None else {"$time": iso_utc(v)}
        return _timestamp
    if pat.is_date(arrow_type):
        if nested:
            return lambda v: None if v is None else {"$time": v.isoformat()}
        return _date
    if pat.is_time(arrow_type):
        return _time
    if pat.is_list(arrow_type) or pat.is_large_list(arrow_type) or pat.is_fixed_size_list(arrow_type):
        item = _converter(arrow_type.value_type, None, nested=True)
        return lambda v: None if v is None else [item(x) for x in v]
    if pat.is_map(arrow_type):
        key_conv = _converter(arrow_type.key_type, None, nested=True)
        val_conv = _converter(arrow_type.item_type, None, nested=True)
        return lambda v: (
            None if v is None else _check_nested(_strip({str(key_conv(k)): val_conv(x) for k, x in v}))
        )
    if pat.is_struct(arrow_type):
        fields = [(f.name, _converter(f.type, None, nested=True)) for f in arrow_type]
        return lambda v: None if v is None else _check_nested(_strip({n: c(v.get(n)) for n, c in fields}))
    if pat.is_null(arrow_type):
        return lambda v: None
    if pat.is_binary(arrow_type) or pat.is_large_binary(arrow_type):

        def _binary(v: Any) -> Any:
            if v is None:
                return None
            raise ValueRejected("is binary data, which Braze attributes cannot hold")

        return _binary
    return lambda v: None if v is None else str(v)


def check_standard(attribute: str, value: Any) -> None:
    """Raise ValueRejected when a standard Braze profile field holds a malformed value."""
    if value is None:
        return
    if attribute in ("email_subscribe", "push_subscribe"):
        if value not in SUBSCRIBE_STATES:
            raise ValueRejected(f"is {value!r}; Braze accepts {', '.join(SUBSCRIBE_STATES)}")
    elif attribute == "gender":
        if value not in GENDERS:
            raise ValueRejected(f"is {value!r}; Braze accepts {', '.join(GENDERS)} or null")
    elif attribute == "dob":
        if not isinstance(value, str) or not _DOB.match(value):
            raise ValueRejected(f"is {value!r}; Braze expects a date as YYYY-MM-DD")
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise ValueRejected(f"is {value!r}, which is not a real date") from None
    elif attribute == "country":
        if not isinstance(value, str) or not _COUNTRY.match(value):
            raise ValueRejected(f"is {value!r}; Braze expects an ISO-3166 alpha-2 code such as FR")
    elif attribute == "language":
        if not isinstance(value, str) or not _LANGUAGE.match(value):
            raise ValueRejected(f"is {value!r}; Braze expects an ISO-639-1 code such as fr")
    elif attribute == "time_zone":
        global _TIMEZONES
        if _TIMEZONES is None:
            _TIMEZONES = frozenset(available_timezones())
        if value not in _TIMEZONES:
            raise ValueRejected(f"is {value!r}, which is not an IANA time zone")


def data_points(attribute: str, value: Any) -> int:
    """Data points Braze bills for writing ``attribute`` (legacy billing rules)."""
    if attribute in NOT_BILLED:
        return 0
    if isinstance(value, dict):
        return max(1, _count_keys(value))
    return 1


def _count_keys(value: dict[str, Any]) -> int:
    total = 0
    for item in value.values():
        total += 1 + (_count_keys(item) if isinstance(item, dict) and "$time" not in item else 0)
    return total


def dumps(value: Any) -> bytes:
    """Encode JSON the way it goes to Braze."""
    return orjson.dumps(value)
