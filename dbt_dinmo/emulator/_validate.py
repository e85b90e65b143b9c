"""Per-object validation for /users/track (braze-api.md sections 3.5-3.9).

Each ``check_*`` function returns the object's identifier or raises :class:`Invalid` whose
message becomes the ``type`` of a minor error. Validation is pure: nothing is applied here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

MAX_STRING = 255
Ident = tuple[str, Any]  # ("external_id", "u1") | ("user_alias", (label, name)) | ...

IDENTIFIER_REQUIRED = "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"
META_KEYS = frozenset(
    {"external_id", "user_alias", "braze_id", "_update_existing_only", "_merge_objects"}
    | {"push_token_import", "app_id", "alias_name", "alias_label"}
)
SUBSCRIBE_STATES = frozenset({"opted_in", "unsubscribed", "subscribed"})
GENDERS = frozenset({"M", "F", "O", "N", "P"})
GROUP_STATES = frozenset({"subscribed", "unsubscribed"})
RESERVED_PROPERTIES = frozenset({"time", "event_name"})
ARRAY_OPS = frozenset({"add", "remove"})
PLAIN_TYPES = frozenset({int, float, bool, type(None)})
OBJECT_ARRAY_OPS = frozenset({"$add", "$remove", "$update"})

_DOB = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COLON_MS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}):(\d{1,6})(.*)$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


_MISSING: Any = object()


class Invalid(ValueError):
    """An object failed validation; ``str(exc)`` is the minor error's ``type``."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (plus Braze's ``HH:mm:ss:SSS`` and a few legacy forms) or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if (m := _COLON_MS.match(text)) is not None:
        text = f"{m[1]}.{m[2]}{m[3]}"
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        for fmt in ("%Y-%m-%d %H:%M:%S", "%m/%d/%Y"):
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@lru_cache(maxsize=1024)
def valid_time_zone(name: str) -> bool:
    """True when ``name`` is an IANA time zone known to zoneinfo."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _string(key: str, value: Any, nullable: bool = True) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str):
        raise Invalid(f"'{key}' must be a String")
    if len(value) > MAX_STRING:
        raise Invalid(f"'{key}' must be {MAX_STRING} characters or fewer")


def identify(obj: dict[str, Any]) -> Ident:
    """The identifier Braze resolves the object by: external_id > alias > braze_id > email > phone."""
    external_id = obj.get("external_id", _MISSING)
    if external_id is not _MISSING:
        if type(external_id) is not str or len(external_id) > MAX_STRING:
            _string("external_id", external_id, nullable=False)
        return "external_id", external_id
    if "user_alias" in obj:
        alias = obj["user_alias"]
        if not (
            isinstance(alias, dict)
            and isinstance(alias.get("alias_name"), str)
            and isinstance(alias.get("alias_label"), str)
            and alias["alias_name"]
            and alias["alias_label"]
        ):
            raise Invalid("'user_alias' must contain 'alias_name' and 'alias_label' strings")
        return "user_alias", (alias["alias_label"], alias["alias_name"])
    for key in ("braze_id", "email", "phone"):
        if key in obj and obj[key] is not None:
            _string(key, obj[key], nullable=False)
            return key, obj[key]
    raise Invalid(IDENTIFIER_REQUIRED)


def _check_flags(obj: dict[str, Any]) -> None:
    for flag in ("_update_existing_only", "_merge_objects"):
        if flag in obj and not isinstance(obj[flag], bool):
            raise Invalid(f"'{flag}' must be a Boolean")


def _enum(allowed: frozenset[str], nullable: bool) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if value is None and nullable:
            return
        if value not in allowed:
            raise Invalid(f"'{key}' must be one of {', '.join(sorted(allowed))}")

    return check


def _dob(key: str, value: Any) -> None:
    if value is None:
        return
    try:
        if not (isinstance(value, str) and _DOB.match(value)):
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        raise Invalid("'dob' must be a date in YYYY-MM-DD format") from None


def _date(key: str, value: Any) -> None:
    if value is not None and parse_time(value) is None:
        raise Invalid(f"'{key}' must be a valid date")


def _country(key: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise Invalid("'country' must be a String")


def _time_zone(key: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not valid_time_zone(value):
        raise Invalid("'time_zone' must be a valid IANA time zone name")


def _email(key: str, value: Any) -> None:
    _string(key, value)
    if isinstance(value, str) and "@" not in value:
        raise Invalid("'email' must be a valid email address")


def _boolean(key: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise Invalid(f"'{key}' must be a Boolean")


def _hash(key: str, value: Any) -> None:
    if value is not None and not isinstance(value, dict):
        raise Invalid(f"'{key}' must be an object")


def _location(key: str, value: Any) -> None:
    if value is None:
        return
    if not (
        isinstance(value, dict) and _is_number(value.get("longitude")) and _is_number(value.get("latitude"))
    ):
        raise Invalid("'current_location' must have numeric 'longitude' and 'latitude'")


def _subscription_groups(key: str, value: Any) -> None:
    if not isinstance(value, list):
        raise Invalid("'subscription_groups' must be an array")
    for group in value:
        if not (
            isinstance(group, dict)
            and isinstance(group.get("subscription_group_id"), str)
            and group.get("subscription_state") in GROUP_STATES
        ):
            raise Invalid(
                "'subscription_groups' entries need 'subscription_group_id' and a "
                "'subscription_state' of subscribed or unsubscribed"
            )


def _push_tokens(key: str, value: Any) -> None:
    if not isinstance(value, list) or not all(
        isinstance(t, dict) and isinstance(t.get("token"), str) for t in value
    ):
        raise Invalid("'push_tokens' must be an array of objects with a 'token'")


STANDARD_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "first_name": _string,
    "last_name": _string,
    "home_city": _string,
    "bio": _string,
    "language": _string,
    "phone": _string,
    "email": _email,
    "email_subscribe": _enum(SUBSCRIBE_STATES, nullable=False),
    "push_subscribe": _enum(SUBSCRIBE_STATES, nullable=False),
    "gender": _enum(GENDERS, nullable=True),
    "dob": _dob,
    "country": _country,
    "time_zone": _time_zone,
    "date_of_first_session": _date,
    "date_of_last_session": _date,
    "marked_email_as_spam_at": _date,
    "email_open_tracking_disabled": _boolean,
    "email_click_tracking_disabled": _boolean,
    "facebook": _hash,
    "twitter": _hash,
    "current_location": _location,
    "subscription_groups": _subscription_groups,
    "push_tokens": _push_tokens,
}


def _nested(value: Any) -> None:
    """Keys <= 255 chars without spaces, '.' or '$'; strings <= 255; no nulls; valid $time."""
    if isinstance(value, dict):
        if value.keys() == {"$time"}:
            if parse_time(value["$time"]) is None:
                raise Invalid("'$time' must be a valid date")
            return
        for k, v in value.items():
            if not k or len(k) > MAX_STRING or " " in k or "." in k or "$" in k:
                raise Invalid(
                    f"Nested attribute key {k[:40]!r} must be 1-255 characters with no spaces, '.' or '$'"
                )
            _nested(v)
    elif isinstance(value, list):
        for item in value:
            _nested(item)
    elif value is None:
        raise Invalid("Nested attributes cannot contain null values")
    elif isinstance(value, str) and len(value) > MAX_STRING:
        raise Invalid(f"Nested attribute strings must be {MAX_STRING} characters or fewer")


def _max_size(key: str, value: Any, limit: int = 100 * 1024) -> None:
    if len(orjson.dumps(value)) > limit:
        raise Invalid(f"'{key}' exceeds {limit // 1024} KB")


def _scalar_array(key: str, values: Any) -> None:
    if not isinstance(values, list):
        raise Invalid(f"'{key}' array operations need an array")
    for item in values:
        if isinstance(item, str):
            if len(item) > MAX_STRING:
                raise Invalid(f"'{key}' array values must be {MAX_STRING} characters or fewer")
        elif not _is_number(item) and not isinstance(item, bool):
            raise Invalid(f"'{key}' array values must be strings or numbers")


def check_custom(key: str, value: Any) -> None:
    """One custom attribute value: scalar, string array, operator or nested object."""
    if value is None or isinstance(value, bool) or _is_number(value):
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise Invalid(f"'{key}' must be {MAX_STRING} characters or fewer")
        return
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            _nested(value)
            _max_size(key, value)
        else:
            _scalar_array(key, value)
        return
    if not isinstance(value, dict):
        raise Invalid(f"'{key}' has an unsupported value type")
    keys = value.keys()
    if keys == {"inc"}:
        if not _is_number(value["inc"]):
            raise Invalid(f"'{key}' increment must be a number")
    elif keys and keys <= ARRAY_OPS:
        for op in keys:
            _scalar_array(key, value[op])
    elif keys and keys <= OBJECT_ARRAY_OPS:
        for op, items in value.items():
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise Invalid(f"'{key}' {op} needs an array of objects")
            if op == "$add":
                _nested(items)
        _max_size(key, value)
    elif keys == {"$time"}:
        _nested(value)
    else:
        _nested(value)
        _max_size(key, value)


def check_attributes(obj: Any) -> Ident:
    """Validate an attributes object; return its identifier."""
    if not isinstance(obj, dict):
        raise Invalid("Attributes objects must be JSON objects")
    ident = identify(obj)
    _check_flags(obj)
    for key, value in obj.items():
        check = STANDARD_CHECKS.get(key)
        if check is not None:
            check(key, value)
            continue
        kind = type(value)
        if kind is str:  # fast path for the common case
            if len(value) > MAX_STRING:
                raise Invalid(f"'{key}' must be {MAX_STRING} characters or fewer")
        elif kind not in PLAIN_TYPES and key not in META_KEYS:
            check_custom(key, value)
    return ident


def _properties(kind: str, props: Any, limit: int) -> None:
    if not isinstance(props, dict):
        raise Invalid("'properties' must be an object")
    nested = False
    for k, v in props.items():
        if not k or len(k) > MAX_STRING or k[0] == "$":
            raise Invalid(
                f"{kind} property names must be non-empty strings of {MAX_STRING} characters "
                "or fewer with no leading '$'"
            )
        if k in RESERVED_PROPERTIES:
            raise Invalid(f"'{k}' is a reserved {kind.lower()} property name")
        if isinstance(v, str):
            if len(v) > MAX_STRING:
                raise Invalid(f"Property '{k}' must be {MAX_STRING} characters or fewer")
        elif isinstance(v, dict | list):
            nested = True
    if nested and len(orjson.dumps(props)) > limit:
        raise Invalid(f"'properties' exceed {limit // 1024} KB")


def _common(obj: Any, what: str) -> tuple[Ident, datetime]:
    if not isinstance(obj, dict):
        raise Invalid(f"{what} objects must be JSON objects")
    ident = identify(obj)
    _check_flags(obj)
    if "time" not in obj:
        raise Invalid("'time' is required")
    when = parse_time(obj["time"])
    if when is None:
        raise Invalid("'time' must be a valid ISO 8601 time")
    if "app_id" in obj:
        _string("app_id", obj["app_id"])
    return ident, when


def check_event(obj: Any) -> tuple[Ident, datetime]:
    """Validate a custom event; return its identifier and parsed time."""
    ident, when = _common(obj, "Event")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise Invalid("'name' is required and must be a String")
    if len(name) > MAX_STRING:
        raise Invalid(f"'name' must be {MAX_STRING} characters or fewer")
    if "properties" in obj:
        _properties("Event", obj["properties"], 100 * 1024)
    return ident, when


def check_purchase(obj: Any) -> tuple[Ident, datetime]:
    """Validate a purchase; return its identifier and parsed time."""
    ident, when = _common(obj, "Purchase")
    product = obj.get("product_id")
    if not isinstance(product, str) or not product:
        raise Invalid("'product_id' is required and must be a String")
    if len(product) > MAX_STRING:
        raise Invalid(f"'product_id' must be {MAX_STRING} characters or fewer")
    currency = obj.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise Invalid("'currency' must be a 3-letter ISO 4217 code")
    if not _is_number(obj.get("price")):
        raise Invalid("'price' is required and must be a number")
    quantity = obj.get("quantity", 1)
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= 100:
        raise Invalid("'quantity' must be an integer between 1 and 100")
    if "properties" in obj:
        _properties("Purchase", obj["properties"], 50 * 1024)
    return ident, when
