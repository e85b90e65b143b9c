"""Request-level validation and response bodies of the Braze REST endpoints.

Each endpoint takes the workspace, the settings and the parsed JSON body and returns
``(status, body)``. Request-level problems raise :class:`BadRequest` (a 400).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._counters import ARRAYS
from ._settings import EmulatorSettings
from ._workspace import Workspace

Result = tuple[int, dict[str, Any]]
Endpoint = Callable[[Workspace, EmulatorSettings, Any], Result]

VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
MAX_INPUT = "Max Input Length Exceeded"
MAX_DELETE_IDS = "The max number of external_ids and aliases per request was exceeded"
MAX_IDS = "The max number of ids per request was exceeded"
EMAIL_AND_PHONE = "Either an email address or a phone number should be provided, but not both."
SUBSCRIPTION_STATES = ("subscribed", "unsubscribed")


class BadRequest(Exception):
    """A fatal request error: HTTP 400 with ``{"message": ...}`` (plus extras)."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.body: dict[str, Any] = {"message": message, **extra}


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object")
    return body


def _strings(body: dict[str, Any], key: str, *, single: bool = False) -> list[str]:
    """An optional array of strings (or, with ``single``, one string)."""
    value = body.get(key)
    if value is None:
        return []
    if single and isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"'{key}' must be an array of strings")
    return value


def _alias(value: Any) -> tuple[str, str] | None:
    if (
        isinstance(value, dict)
        and isinstance(value.get("alias_name"), str)
        and isinstance(value.get("alias_label"), str)
    ):
        return value["alias_label"], value["alias_name"]
    return None


def _aliases(body: dict[str, Any], key: str) -> list[tuple[str, str]]:
    out = []
    for value in body.get(key) or []:
        alias = _alias(value)
        if alias is None:
            raise BadRequest(f"'{key}' entries need 'alias_name' and 'alias_label' strings")
        out.append(alias)
    return out


def track(ws: Workspace, s: EmulatorSettings, body: Any) -> Result:
    """POST /users/track."""
    body = _object(body)
    arrays: dict[str, list[Any]] = {}
    for name in ARRAYS:
        if body.get(name) is not None:
            if not isinstance(body[name], list):
                raise BadRequest(f"'{name}' must be an array")
            arrays[name] = body[name]
    per_array, combined = s.batch_limits
    sizes = [len(v) for v in arrays.values()]
    if (per_array and any(n > per_array for n in sizes)) or (combined and sum(sizes) > combined):
        raise BadRequest(MAX_INPUT)
    if not any(sizes):
        raise BadRequest(VALID_DATA, errors=[])
    result = ws.track(arrays, cap=s.string_array_cap, alias_events_create=s.alias_events_create)
    out: dict[str, Any] = {"message": "success"}
    out.update((f"{name}_processed", n) for name, n in result.processed.items())
    if result.errors:
        out["errors"] = result.errors
    if not any(result.processed.values()):
        out["message"] = VALID_DATA
        return 400, out
    return 201, out


def _prioritized(body: dict[str, Any], key: str, field: str) -> list[tuple[str, list[str]]]:
    out = []
    for item in body.get(key) or []:
        if not isinstance(item, dict) or not isinstance(item.get(field), str):
            raise BadRequest(f"'{key}' entries need a '{field}' string")
        order = item.get("prioritization")
        if not isinstance(order, list) or not order:
            raise BadRequest(f"'prioritization' is required for '{key}'")
        out.append((item[field], [str(p) for p in order]))
    return out


def delete(ws: Workspace, s: EmulatorSettings, body: Any) -> Result:
    """POST /users/delete. ``deleted`` counts existing users actually deleted."""
    body = _object(body)
    external_ids = _strings(body, "external_ids")
    braze_ids = _strings(body, "braze_ids")
    aliases = _aliases(body, "user_aliases")
    emails = _prioritized(body, "email_addresses", "email")
    phones = _prioritized(body, "phone_numbers", "phone")
    groups: list[list[Any]] = [external_ids, braze_ids, aliases, emails, phones]
    total = sum(len(g) for g in groups)
    if total > s.max_ids_per_request:
        raise BadRequest(MAX_DELETE_IDS)
    if total == 0:
        raise BadRequest(
            "'external_ids', 'user_aliases', 'braze_ids', 'email_addresses' or 'phone_numbers' is required"
        )
    if s.delete_one_identifier_type and sum(bool(g) for g in groups) > 1:
        raise BadRequest(
            "Only one of external_ids, user_aliases, braze_ids, email_addresses, or phone_numbers "
            "can be included in a single request"
        )
    deleted = ws.delete(
        external_ids=external_ids, aliases=aliases, braze_ids=braze_ids, emails=emails, phones=phones
    )
    return 201, {"deleted": deleted, "message": "success"}


def export_ids(ws: Workspace, s: EmulatorSettings, body: Any) -> Result:
    """POST /users/export/ids."""
    body = _object(body)
    external_ids = _strings(body, "external_ids")
    aliases = _aliases(body, "user_aliases")
    if len(external_ids) + len(aliases) > s.max_ids_per_request:
        raise BadRequest(MAX_IDS)
    singles = {k: body.get(k) for k in ("braze_id", "device_id", "email_address", "phone")}
    for key, value in singles.items():
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"'{key}' must be a string")
    if sum(singles[k] is not None for k in ("device_id", "email_address", "phone")) > 1:
        raise BadRequest("Only one of 'device_id', 'email_address' or 'phone' may be provided")
    if not (external_ids or aliases or any(v is not None for v in singles.values())):
        raise BadRequest("An identifier to export is required")
    fields = body.get("fields_to_export")
    if fields is None and s.export_requires_fields:
        raise BadRequest("'fields_to_export' is required")
    if fields is not None and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
        raise BadRequest("'fields_to_export' must be an array of strings")
    users, invalid = ws.export(
        external_ids=external_ids,
        aliases=aliases,
        braze_id=singles["braze_id"],
        email=singles["email_address"],
        phone=singles["phone"],
        fields=fields,
    )
    return 201, {"message": "success", "users": users, "invalid_user_ids": invalid}


def _group(body: dict[str, Any], s: EmulatorSettings, keys: tuple[str, str, str]) -> Any:
    group_id = body.get("subscription_group_id")
    if not isinstance(group_id, str) or not group_id:
        raise BadRequest("'subscription_group_id' is required")
    state = body.get("subscription_state")
    if state not in SUBSCRIPTION_STATES:
        raise BadRequest("'subscription_state' must be 'subscribed' or 'unsubscribed'")
    ids = [_strings(body, k, single=True) for k in keys]
    if any(len(v) > s.max_ids_per_request for v in ids):
        raise BadRequest(MAX_IDS)
    if ids[1] and ids[2]:
        raise BadRequest(EMAIL_AND_PHONE)
    if not any(ids):
        raise BadRequest(f"'{keys[0]}', '{keys[1]}' or '{keys[2]}' is required")
    return (group_id, state, *ids)


def _subscribe(ws: Workspace, s: EmulatorSettings, groups: list[Any]) -> Result:
    strict = s.unknown_subscription_ids == "error"
    unknown = ws.set_subscriptions(groups, strict=strict)
    if strict and unknown:
        raise BadRequest("Some identifiers do not match any user", invalid_user_ids=unknown)
    return 201, {"message": "success"}


def subscription_v1(ws: Workspace, s: EmulatorSettings, body: Any) -> Result:
    """POST /subscription/status/set: never creates users."""
    return _subscribe(ws, s, [_group(_object(body), s, ("external_id", "email", "phone"))])


def subscription_v2(ws: Workspace, s: EmulatorSettings, body: Any) -> Result:
    """POST /v2/subscription/status/set: several groups per call; never creates users."""
    groups = _object(body).get("subscription_groups")
    if not isinstance(groups, list) or not groups:
        raise BadRequest("'subscription_groups' must be a non-empty array")
    return _subscribe(ws, s, [_group(_object(g), s, ("external_ids", "emails", "phones")) for g in groups])


def _entries(body: Any, key: str, s: EmulatorSettings) -> list[Any]:
    entries = _object(body).get(key)
    if not isinstance(entries, list) or not entries:
        raise BadRequest(f"'{key}' must be a non-empty array")
    if len(entries) > s.max_ids_per_request:
        raise BadRequest(MAX_IDS)
    return entries


def _minor(message: str, array: str, index: int) -> dict[str, Any]:
    return {"type": message, "input_array": array, "index": index}


def alias_new(ws: Workspace, s: EmulatorSettings, body: Any) -> Result:
    """POST /users/alias/new: with external_id adds the alias, without creates an alias-only user."""
    valid: list[tuple[str | None, str, str]] = []
    errors = []
    for i, item in enumerate(_entries(body, "user_aliases", s)):
        alias = _alias(item)
        external_id = item.get("external_id") if isinstance(item, dict) else None
        if alias is None:
            errors.append(_minor("'alias_name' and 'alias_label' must be Strings", "user_aliases", i))
        elif external_id is not None and not isinstance(external_id, str):
            errors.append(_minor("'external_id' must be a String", "user_aliases", i))
        else:
            valid.append((external_id, alias[0], alias[1]))
    ws.new_aliases(valid)
    out: dict[str, Any] = {"aliases_processed": len(valid), "message": "success"}
    return 201, {**out, "errors": errors} if errors else out


def alias_update(ws: Workspace, s: EmulatorSettings, body: Any) -> Result:
    """POST /users/alias/update (response body UNCONFIRMED; plain success)."""
    updates = []
    for item in _entries(body, "alias_updates", s):
        keys = ("alias_label", "old_alias_name", "new_alias_name")
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in keys):
            raise BadRequest("'alias_updates' entries need alias_label, old_alias_name, new_alias_name")
        updates.append((item["alias_label"], item["old_alias_name"], item["new_alias_name"]))
    ws.rename_aliases(updates)
    return 201, {"message": "success"}


def identify(ws: Workspace, s: EmulatorSettings, body: Any) -> Result:
    """POST /users/identify (aliases only; emails/phones to identify are ignored)."""
    valid: list[tuple[str, tuple[str, str]]] = []
    errors = []
    for i, item in enumerate(_entries(body, "aliases_to_identify", s)):
        alias = _alias(item.get("user_alias")) if isinstance(item, dict) else None
        external_id = item.get("external_id") if isinstance(item, dict) else None
        if alias is None:
            errors.append(_minor("'alias_name' must be a String", "aliases_to_identify", i))
        elif not isinstance(external_id, str):
            errors.append(_minor("'external_id' must be a String", "aliases_to_identify", i))
        else:
            valid.append((external_id, alias))
    ws.identify(valid)
    out: dict[str, Any] = {"aliases_processed": len(valid), "message": "success"}
    return 201, {**out, "errors": errors} if errors else out


ENDPOINTS: dict[str, Endpoint] = {
    "/users/track": track,
    "/users/delete": delete,
    "/users/export/ids": export_ids,
    "/subscription/status/set": subscription_v1,
    "/v2/subscription/status/set": subscription_v2,
    "/users/alias/new": alias_new,
    "/users/alias/update": alias_update,
    "/users/identify": identify,
}
