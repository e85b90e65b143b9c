"""Harmless calls that tell whether a destination's API key has the permissions it needs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from dbt_dinmo.activation import Activation
from dbt_dinmo.errors import AuthError, BrazeError

# /users/track with an update-only object for an id nobody has: creates nobody, writes nothing.
PROBE_TRACK = {"attributes": [{"external_id": "dbt-dinmo-permission-check", "_update_existing_only": True}]}
# /users/delete with no identifiers: deletes nobody; Braze answers 400 when the key may delete.
PROBE_DELETE: dict[str, list[str]] = {"external_ids": []}
# /users/export/ids for an id nobody has: reads nothing (one request of the export budget).
PROBE_EXPORT = {"external_ids": ["dbt-dinmo-permission-check"], "fields_to_export": ["external_id"]}
# /v2/subscription/status/set with no groups: changes nothing; 400 when the key may set statuses.
PROBE_SUBSCRIPTION: dict[str, list[object]] = {"subscription_groups": []}
PROBES: dict[str, tuple[str, object]] = {
    "users.track": ("/users/track", PROBE_TRACK),
    "users.delete": ("/users/delete", PROBE_DELETE),
    "users.export.ids": ("/users/export/ids", PROBE_EXPORT),
    "subscription.status.set": ("/v2/subscription/status/set", PROBE_SUBSCRIPTION),
}


@dataclass(frozen=True)
class PermissionCheck:
    """The outcome of one probe."""

    destination: str
    permission: str
    ok: bool
    detail: str


def check_permissions(activations: Sequence[Activation]) -> list[PermissionCheck]:
    """Probe each destination once per permission its activations need."""
    return asyncio.run(_check(activations))


async def _check(activations: Sequence[Activation]) -> list[PermissionCheck]:
    from dbt_dinmo.runner import default_client

    needed: dict[str, set[str]] = {}
    destinations = {}
    for a in activations:
        destinations[a.destination.name] = a.destination
        perms = needed.setdefault(a.destination.name, set())
        perms.update(needed_permissions(a))
    checks: list[PermissionCheck] = []
    for name, perms in needed.items():
        client = default_client(destinations[name])
        try:
            for perm in sorted(perms):
                endpoint, body = PROBES[perm]
                checks.append(await _probe(client, name, perm, endpoint, body))
        finally:
            await client.aclose()
    return checks


def needed_permissions(a: Activation) -> set[str]:
    """The API-key permissions an activation's runs use."""
    from dbt_dinmo.profiles import namespace

    perms = {"subscription.status.set"} if a.service == "subscription_status" else {"users.track"}
    if a.sync_mode == "mirror":
        perms.add("users.delete")
    if a.updates_existing_only and namespace(a.identifier) is not None:
        perms.add("users.export.ids")  # checking that users exist before updating them
    return perms


async def _probe(client: object, name: str, perm: str, endpoint: str, body: object) -> PermissionCheck:
    try:
        await client.post(endpoint, body)  # type: ignore[attr-defined]
    except AuthError as exc:
        return PermissionCheck(name, perm, False, str(exc))
    except BrazeError as exc:
        if exc.status is not None and 400 <= exc.status < 500:
            return PermissionCheck(name, perm, True, f"key accepted (probe answered {exc.status})")
        return PermissionCheck(name, perm, False, f"could not check: {exc}")
    return PermissionCheck(name, perm, True, "key accepted")
