"""The activation contract: ``config.meta.dinmo`` of an exposure, parsed and checked.

Every problem is collected (never the first only) with the exposure's name, the key, what was
expected and how to fix it. Checks that need the warehouse (real columns, built relation) live in
:mod:`dbt_dinmo.validate`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Literal

from dbt_dinmo.config import Destination, DinmoConfig
from dbt_dinmo.errors import Problem
from dbt_dinmo.manifest import Exposure, Manifest, ModelNode

SyncMode = Literal["update", "upsert", "mirror", "append", "segment"]
IdentifierType = Literal["external_id", "braze_id", "user_alias"]

EVENT_SERVICES = ("custom_events", "purchases")
SEGMENT_SERVICES = ("subscription_status", "user_lists")
SERVICES = ("user_attributes", *EVENT_SERVICES, *SEGMENT_SERVICES)
# What a user may write under sync_mode (event services are append-only: "append", implied).
SYNC_MODES: tuple[SyncMode, ...] = ("update", "upsert", "mirror")
IDENTIFIER_TYPES: tuple[IdentifierType, ...] = ("external_id", "braze_id", "user_alias")
NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
COMMON_KEYS = {"destination", "service", "identifier", "schedule", "description"}
ATTRIBUTE_KEYS = {"sync_mode", "mapping", "max_deletes"}
EVENT_KEYS = {"event_time", "event_id", "properties", "cursor", "lookback", "backfill"}
CUSTOM_EVENT_KEYS = {"event_name"}
PURCHASE_KEYS = {"product_id", "price", "currency", "quantity"}
SUBSCRIPTION_KEYS = {"subscription_group_id", "max_exits"}
USER_LIST_KEYS = {"audience_name", "max_exits"}
KNOWN_KEYS = (
    COMMON_KEYS
    | ATTRIBUTE_KEYS
    | EVENT_KEYS
    | CUSTOM_EVENT_KEYS
    | PURCHASE_KEYS
    | SUBSCRIPTION_KEYS
    | USER_LIST_KEYS
)
SERVICE_KEYS = {
    "user_attributes": COMMON_KEYS | ATTRIBUTE_KEYS,
    "custom_events": COMMON_KEYS | EVENT_KEYS | CUSTOM_EVENT_KEYS,
    "purchases": COMMON_KEYS | EVENT_KEYS | PURCHASE_KEYS,
    "subscription_status": COMMON_KEYS | SUBSCRIPTION_KEYS,
    "user_lists": COMMON_KEYS | USER_LIST_KEYS,
}
_MISPLACED_FIX = {
    "sync_mode": "events are append-only: each row is sent once and never updated",
    "mapping": "name event properties under properties: {column: property_name}",
    "max_deletes": "events are never deleted",
}
_SEGMENT_FIX = {
    "sync_mode": "the model is the segment: each row is a member; entries and exits are synced",
    "mapping": "a segment sends membership only; sync attributes with a user_attributes activation",
    "max_deletes": "segments delete no users; use max_exits to bound the users leaving in one run",
}
# A subscription group id as Braze shows it (Subscription Groups page): a UUID.
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Braze's standard profile fields (braze-api.md 3.6): never a user list's boolean attribute.
STANDARD_ATTRIBUTES = {
    "country",
    "current_location",
    "date_of_first_session",
    "date_of_last_session",
    "dob",
    "email",
    "email_subscribe",
    "email_open_tracking_disabled",
    "email_click_tracking_disabled",
    "facebook",
    "first_name",
    "gender",
    "home_city",
    "language",
    "last_name",
    "marked_email_as_spam_at",
    "phone",
    "push_subscribe",
    "push_tokens",
    "subscription_groups",
    "time_zone",
    "twitter",
}
# Event and purchase property names Braze reserves (braze-api.md 3.8).
RESERVED_PROPERTIES = {"time", "event_name"}
MAX_NAME = 255
_DURATION_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_LOOKBACK_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]+)?$")
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")
# Keys Braze reads as identifiers or flags: never valid as a mapped attribute name.
RESERVED_ATTRIBUTES = {
    "external_id",
    "braze_id",
    "user_alias",
    "_update_existing_only",
    "_merge_objects",
    "push_token_import",
    "alias_name",
    "alias_label",
}
DEFAULT_MAX_DELETES = "10%"
META = "config.meta.dinmo"


@dataclass(frozen=True)
class Identifier:
    """How a model row names its Braze user."""

    column: str
    type: IdentifierType = "external_id"
    alias_label: str | None = None


@dataclass(frozen=True)
class MaxDeletes:
    """The mirror guard: an absolute count or a percentage of the synced state."""

    count: int | None = None
    percent: float | None = None

    def limit(self, synced: int) -> int:
        """How many deletions are allowed when ``synced`` users are in the state."""
        if self.count is not None:
            return self.count
        return int(synced * (self.percent or 0.0) / 100.0)

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent:g}%"


@dataclass(frozen=True)
class Lookback:
    """How far before the last acknowledged cursor a run starts reading.

    A duration (``"3 days"``: ``seconds`` set) for timestamp and date cursors, or a plain number
    (``amount`` set) for numeric cursors. ``0`` suits both.
    """

    text: str = "0"
    seconds: float | None = 0.0
    amount: float | None = 0.0

    @property
    def is_zero(self) -> bool:
        """True when there is no lookback at all."""
        return not self.seconds and not self.amount


@dataclass(frozen=True)
class EventSpec:
    """The event part of a ``custom_events`` or ``purchases`` activation (real column names
    are resolved against the warehouse later, see :class:`dbt_dinmo.project.ResolvedColumns`)."""

    event_time: str
    event_id: str | None = None
    event_name: str | None = None  # custom_events
    cursor: str | None = None
    lookback: Lookback = Lookback()
    # True: the first run sends history; False: it marks existing rows as sent; a datetime (UTC):
    # events before it are never sent (marked as sent whenever they are seen).
    backfill: bool | dt.datetime = True
    product_id: str | None = None  # purchases
    price: str | None = None
    currency_column: str | None = None
    currency_value: str | None = None
    quantity: str | None = None

    @property
    def is_purchase(self) -> bool:
        """True for the purchases service."""
        return self.product_id is not None


@dataclass(frozen=True)
class SegmentSpec:
    """The segment part of a ``subscription_status`` or ``user_lists`` activation: each model row
    is one member; users entering are subscribed (or flagged ``true``), users leaving are
    unsubscribed (or flagged ``false``)."""

    subscription_group_id: str | None = None  # subscription_status
    audience_name: str | None = None  # user_lists
    max_exits: MaxDeletes | None = None  # None: only the empty-model guard

    @property
    def attribute(self) -> str | None:
        """The boolean custom attribute a user list becomes (spaces replaced by underscores)."""
        return list_attribute(self.audience_name) if self.audience_name is not None else None

    @property
    def target(self) -> str:
        """What membership is written to: the subscription group id or the list attribute."""
        return self.subscription_group_id or self.attribute or ""


def list_attribute(audience_name: str) -> str:
    """The Braze attribute name of a user list: the audience name with spaces as underscores."""
    return audience_name.strip().replace(" ", "_")


@dataclass(frozen=True)
class Activation:
    """One activation: a model's rows sent to a Braze destination by one service."""

    name: str
    unique_id: str
    exposure: Exposure
    model: ModelNode
    destination: Destination
    service: str
    sync_mode: SyncMode
    identifier: Identifier
    mapping: tuple[tuple[str, str], ...]  # (model column, Braze attribute), in declared order
    max_deletes: MaxDeletes
    schedule: str | None
    events: EventSpec | None = None  # set for custom_events and purchases
    segment: SegmentSpec | None = None  # set for subscription_status and user_lists

    @property
    def attributes(self) -> tuple[str, ...]:
        """The Braze attribute names (event services: property names), in mapping order."""
        return tuple(attr for _, attr in self.mapping)

    @property
    def is_event(self) -> bool:
        """True for the custom_events and purchases services."""
        return self.events is not None

    @property
    def is_segment(self) -> bool:
        """True for the subscription_status and user_lists services."""
        return self.segment is not None

    @property
    def updates_existing_only(self) -> bool:
        """True when the activation may only touch users that already exist in Braze (update
        mode and the segment services): its sends wait until a user's profile is known to exist."""
        return self.segment is not None or (self.events is None and self.sync_mode == "update")

    @property
    def creates_users(self) -> bool:
        """True when an acknowledged object of this activation means the user exists (upsert
        and mirror attribute syncs create the users they send)."""
        return self.events is None and self.segment is None and self.sync_mode in ("upsert", "mirror")

    @property
    def mapping_key(self) -> str:
        """The contract key holding the column -> name pairs."""
        return "properties" if self.is_event else "mapping"

    @property
    def identity(self) -> str:
        """What the synced state depends on besides the mapping.

        Attributes: destination and identifier. Events: destination, service and event name (the
        identifier column may change without making every sent event look new).
        """
        if self.events is not None:
            return f"{self.destination.identity}|{self.service}|{self.events.event_name or ''}"
        ident = self.identifier
        if self.segment is not None:  # the members' identifiers, not the column they come from
            return (
                f"{self.destination.identity}|{self.service}|{ident.type}|{ident.alias_label or ''}|"
                f"{self.segment.target}"
            )
        return f"{self.destination.identity}|{ident.type}|{ident.column}|{ident.alias_label or ''}"

    @property
    def mapped_attributes(self) -> tuple[str, ...]:
        """The Braze attributes this activation writes (a user list: its boolean attribute)."""
        if self.segment is not None:
            return (self.segment.attribute,) if self.segment.attribute else ()
        return () if self.events is not None else self.attributes

    def role_columns(self) -> list[tuple[str, str, str]]:
        """Columns besides the identifier and the mapping: (role, column, contract key)."""
        ev = self.events
        if ev is None:
            return []
        roles = [("event_time", ev.event_time), ("event_id", ev.event_id), ("cursor", ev.cursor)]
        roles += [("product_id", ev.product_id), ("price", ev.price)]
        roles += [("currency", ev.currency_column), ("quantity", ev.quantity)]
        return [(role, col, f"{META}.{role}") for role, col in roles if col]


def parse_activations(manifest: Manifest, config: DinmoConfig) -> tuple[list[Activation], list[Problem]]:
    """Parse every activation of the manifest; return the valid ones and all problems."""
    activations: list[Activation] = []
    problems: list[Problem] = []
    for exposure in manifest.activations():
        activation, found = parse_activation(exposure, manifest, config)
        problems.extend(found)
        if activation is not None and not found:
            activations.append(activation)
    problems.extend(conflicts(activations, activations))
    return activations, problems


def conflicts(chosen: list[Activation], every: list[Activation]) -> list[Problem]:
    """Activations of ``chosen`` that would fight another activation of ``every`` on the same
    destination: two subscription_status activations of one group, or a user list whose attribute
    is also written by another activation."""
    problems: list[Problem] = []
    for a in chosen:
        seg = a.segment
        if seg is None:
            continue
        for other in every:
            if other.name == a.name or other.destination.name != a.destination.name:
                continue
            same_group = other.segment is not None and other.segment.subscription_group_id
            if seg.subscription_group_id and same_group == seg.subscription_group_id:
                problems.append(
                    Problem(
                        f"exposure {a.name}",
                        f"{META}.subscription_group_id",
                        f"group {seg.subscription_group_id} is also synced by activation {other.name} "
                        f"on destination {a.destination.name}; two segments would subscribe and "
                        "unsubscribe each other's members.",
                        "keep one activation per subscription group (union the segments in one model).",
                    )
                )
            attribute = seg.attribute
            if attribute and attribute in other.mapped_attributes:
                what = "another user list" if other.segment is not None else f"its mapping ({other.service})"
                problems.append(
                    Problem(
                        f"exposure {a.name}",
                        f"{META}.audience_name",
                        f"{seg.audience_name!r} becomes the Braze attribute {attribute}, which activation "
                        f"{other.name} also writes on destination {a.destination.name} through {what}.",
                        "rename the audience (or the other activation's attribute) so each attribute "
                        "has one writer.",
                    )
                )
    return problems


def parse_activation(
    exposure: Exposure, manifest: Manifest, config: DinmoConfig
) -> tuple[Activation | None, list[Problem]]:
    """Parse one exposure's ``dinmo`` block, collecting every problem.

    The activation is returned whenever it can be built, even with problems, so that checks needing
    the warehouse (columns) can still run and every problem is reported at once.
    """
    where = f"exposure {exposure.name}"
    problems: list[Problem] = []

    def problem(key: str, message: str, fix: str = "") -> None:
        problems.append(Problem(where, key, message, fix))

    meta: dict[str, Any] = dict(exposure.dinmo or {})
    if not NAME_RE.match(exposure.name):
        problem("name", "must use only letters, digits and underscores.", "rename the exposure.")
    if exposure.type != "application":
        problem(
            "type",
            f"is {exposure.type!r}; activations must be 'application'.",
            "set type: application.",
        )
    service = meta.get("service")
    for key in meta:
        if key not in KNOWN_KEYS:
            problem(f"{META}.{key}", "unknown key.", f"known keys: {', '.join(sorted(KNOWN_KEYS))}.")
        elif service in SERVICE_KEYS and key not in SERVICE_KEYS[service]:
            fix = (
                _MISPLACED_FIX.get(key)
                if service in EVENT_SERVICES
                else _SEGMENT_FIX.get(key)
                if service in SEGMENT_SERVICES
                else None
            )
            problem(
                f"{META}.{key}",
                f"does not apply to service {service}.",
                f"remove it; {fix or service + ' takes: ' + ', '.join(sorted(SERVICE_KEYS[service]))}.",
            )

    model = _single_model(exposure, manifest, problem)
    destination = _destination(meta, config, problem, problems)
    if service is None:
        problem(f"{META}.service", "is missing.", f"add service: one of {', '.join(SERVICES)}.")
    elif service not in SERVICES:
        problem(
            f"{META}.service",
            f"unknown service {service!r}.",
            f"use one of: {', '.join(SERVICES)}.",
        )
    identifier = _identifier(meta.get("identifier"), problem)
    schedule = meta.get("schedule")
    if schedule is not None:
        schedule = str(schedule)
        if not _valid_schedule(schedule):
            problem(
                f"{META}.schedule",
                f"{schedule!r} is not a cron expression or alias.",
                "use e.g. '*/15 * * * *' or '@hourly'.",
            )

    events: EventSpec | None = None
    segment: SegmentSpec | None = None
    max_deletes: MaxDeletes | None = MaxDeletes(percent=10.0)
    if service in EVENT_SERVICES:
        sync_mode: Any = "append"
        events, mapping = _event_spec(str(service), meta, problem)
    elif service in SEGMENT_SERVICES:
        sync_mode = "segment"
        mapping = ()
        segment = _segment_spec(str(service), meta, problem)
        if identifier is not None:
            allowed = ("external_id",) if service == "subscription_status" else IDENTIFIER_TYPES
            if identifier.type not in allowed:
                problem(
                    f"{META}.identifier.type",
                    f"{service} identifies users by external_id only (Braze's "
                    "/v2/subscription/status/set takes external_ids), not by "
                    f"{identifier.type}.",
                    "use identifier: {column: <external id column>, type: external_id}.",
                )
    else:
        sync_mode = meta.get("sync_mode", "upsert")
        if sync_mode not in SYNC_MODES:
            problem(
                f"{META}.sync_mode",
                f"unknown sync mode {sync_mode!r}.",
                "use update, upsert or mirror.",
            )
        if identifier and identifier.type == "braze_id" and sync_mode in ("upsert", "mirror"):
            problem(
                f"{META}.sync_mode",
                f"{sync_mode} needs to create users, but a braze_id identifier can only update them.",
                "use sync_mode: update, or identify users by external_id.",
            )
        mapping = _mapping(meta.get("mapping"), problem)
        max_deletes = _max_deletes(meta.get("max_deletes", DEFAULT_MAX_DELETES), problem)
        if "max_deletes" in meta and sync_mode != "mirror":
            problem(f"{META}.max_deletes", "only applies to sync_mode: mirror.", "remove it or use mirror.")
        if sync_mode not in SYNC_MODES:
            return None, problems
    if model is None or destination is None or identifier is None or mapping is None:
        return None, problems
    if service not in SERVICES or (service in EVENT_SERVICES and events is None):
        return None, problems
    if service in SEGMENT_SERVICES and segment is None:
        return None, problems
    return (
        Activation(
            name=exposure.name,
            unique_id=exposure.unique_id,
            exposure=exposure,
            model=model,
            destination=destination,
            service=str(service),
            sync_mode=sync_mode,
            identifier=identifier,
            mapping=mapping,
            max_deletes=max_deletes or MaxDeletes(percent=10.0),
            schedule=schedule,
            events=events,
            segment=segment,
        ),
        problems,
    )


def _segment_spec(service: str, meta: dict[str, Any], problem: Any) -> SegmentSpec | None:
    """Parse the keys of a subscription_status or user_lists activation."""
    max_exits: MaxDeletes | None = None
    ok = True
    if "max_exits" in meta:
        max_exits = _max_deletes(meta["max_exits"], problem, key="max_exits")
        ok = max_exits is not None
    if service == "subscription_status":
        group = meta.get("subscription_group_id")
        key = f"{META}.subscription_group_id"
        fix = (
            "copy the group's ID from the Braze dashboard (Audience > Subscriptions), "
            'e.g. subscription_group_id: "0c2d9c3e-7f2a-4c1e-9b8d-5a6f3e2d1c0b".'
        )
        if group is None or group == "":
            problem(key, "is missing.", fix)
            return None
        if not isinstance(group, str) or not _UUID_RE.match(group.strip()):
            problem(key, f"{group!r} is not a Braze subscription group ID (a UUID).", fix)
            return None
        return SegmentSpec(subscription_group_id=group.strip().lower(), max_exits=max_exits) if ok else None
    name = meta.get("audience_name")
    key = f"{META}.audience_name"
    if not isinstance(name, str) or not name.strip():
        problem(
            key,
            "is missing." if name is None else f"must be a non-empty string, got {name!r}.",
            'add audience_name: "<the list\'s name>", e.g. audience_name: "High Value Customers".',
        )
        return None
    attribute = list_attribute(name)
    bad = _attribute_problem(attribute)
    if attribute in STANDARD_ATTRIBUTES:
        bad = f"is Braze's standard profile field {attribute!r}"
    if bad:
        problem(
            key,
            f"{name!r} becomes the Braze attribute {attribute!r}, which {bad}.",
            "choose another audience name (spaces become underscores).",
        )
        return None
    return SegmentSpec(audience_name=name.strip(), max_exits=max_exits) if ok else None


def _attribute_problem(attr: str) -> str | None:
    """Why ``attr`` cannot be a custom attribute name, or None when it can."""
    if attr in RESERVED_ATTRIBUTES:
        return "is a Braze identifier or flag, not an attribute"
    if attr.startswith("$") or len(attr) > MAX_NAME:
        return f"is not a valid Braze attribute name (at most {MAX_NAME} characters, not starting with '$')"
    if any(not c.isprintable() for c in attr):
        return "holds non-printable characters"
    return None


def _column(meta: dict[str, Any], key: str, problem: Any, *, required: bool, example: str) -> str | None:
    """A contract key naming one model column (``key: col`` or ``key: {column: col}``)."""
    raw = meta.get(key)
    if isinstance(raw, dict) and set(raw) == {"column"}:
        raw = raw["column"]
    if raw is None or raw == "":
        if required:
            problem(f"{META}.{key}", "is missing.", f"add {key}: <column>, e.g. {key}: {example}.")
        return None
    if not isinstance(raw, str):
        problem(f"{META}.{key}", f"must name a model column, got {raw!r}.", f"e.g. {key}: {example}.")
        return None
    return raw


def _event_spec(
    service: str, meta: dict[str, Any], problem: Any
) -> tuple[EventSpec | None, tuple[tuple[str, str], ...] | None]:
    """Parse the keys of a custom_events or purchases activation; (spec, properties)."""
    ok = True
    name: str | None = None
    if service == "custom_events":
        raw_name = meta.get("event_name")
        if not isinstance(raw_name, str) or not raw_name.strip():
            problem(
                f"{META}.event_name",
                "is missing." if raw_name is None else f"must be a non-empty string, got {raw_name!r}.",
                "add event_name: <the event's name in Braze>, e.g. event_name: order_placed.",
            )
            ok = False
        elif len(raw_name) > MAX_NAME:
            problem(f"{META}.event_name", f"is over {MAX_NAME} characters.", "use a shorter event name.")
            ok = False
        else:
            name = raw_name
    event_time = _column(meta, "event_time", problem, required=True, example="ordered_at")
    event_id = _column(meta, "event_id", problem, required=False, example="order_id")
    cursor = _column(meta, "cursor", problem, required=False, example="ordered_at")
    lookback = _lookback(meta.get("lookback"), problem)
    if "lookback" in meta and cursor is None:
        problem(f"{META}.lookback", "only applies with a cursor.", "add cursor: <column> or remove it.")
    backfill = _backfill(meta.get("backfill", True), problem)
    properties = _properties(meta.get("properties"), problem)
    spec_kw: dict[str, Any] = {}
    if service == "purchases":
        product_id = _column(meta, "product_id", problem, required=True, example="product_sku")
        price = _column(meta, "price", problem, required=True, example="unit_price")
        quantity = _column(meta, "quantity", problem, required=False, example="quantity")
        currency_column, currency_value, currency_ok = _currency(meta.get("currency"), problem)
        ok = ok and product_id is not None and price is not None and currency_ok
        spec_kw = {
            "product_id": product_id,
            "price": price,
            "quantity": quantity,
            "currency_column": currency_column,
            "currency_value": currency_value,
        }
    if not ok or event_time is None or lookback is None or backfill is None or properties is None:
        return None, properties
    spec = EventSpec(
        event_time=event_time,
        event_id=event_id,
        event_name=name,
        cursor=cursor,
        lookback=lookback,
        backfill=backfill,
        **spec_kw,
    )
    return spec, properties


def _currency(raw: Any, problem: Any) -> tuple[str | None, str | None, bool]:
    """``{value: USD}`` (a literal) or a column name; (column, value, ok)."""
    key = f"{META}.currency"
    fix = "use currency: {value: USD} for one currency, or currency: <column> holding ISO 4217 codes."
    if raw is None:
        problem(key, "is missing.", fix)
        return None, None, False
    if isinstance(raw, dict):
        if set(raw) == {"value"}:
            value = str(raw["value"] or "")
            if not _CURRENCY_RE.match(value):
                problem(key, f"{value!r} is not a three-letter ISO 4217 code.", "e.g. {value: EUR}.")
                return None, None, False
            return None, value.upper(), True
        if set(raw) == {"column"} and isinstance(raw["column"], str) and raw["column"]:
            return raw["column"], None, True
        problem(key, f"must be {{value: <code>}} or a column name, got {raw!r}.", fix)
        return None, None, False
    if isinstance(raw, str) and raw:
        return raw, None, True
    problem(key, f"must be {{value: <code>}} or a column name, got {raw!r}.", fix)
    return None, None, False


def _properties(raw: Any, problem: Any) -> tuple[tuple[str, str], ...] | None:
    """``properties: {column: property_name}`` (optional), with Braze's naming rules."""
    key = f"{META}.properties"
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problem(key, "must map model columns to property names.", "e.g. properties: {amount: order_total}.")
        return None
    pairs: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for column, prop in raw.items():
        name = str(prop) if prop is not None else ""
        where = f"{key}.{column}"
        if not name:
            problem(where, "has no property name.", "write column: property_name.")
            continue
        if name.startswith("$") or len(name) > MAX_NAME:
            problem(
                where,
                f"{name!r} is not a valid Braze property name.",
                f"use 1-{MAX_NAME} characters, not starting with '$'.",
            )
        elif name in RESERVED_PROPERTIES:
            problem(where, f"{name!r} is reserved by Braze for events.", "map the column to another name.")
        if name in seen:
            problem(where, f"property {name!r} is already mapped from {seen[name]!r}.", "map each once.")
        seen[name] = str(column)
        pairs.append((str(column), name))
    return tuple(pairs)


def parse_lookback(raw: Any) -> Lookback:
    """``"3 days"``, ``"12 hours"``, ``"90 minutes"``, ``"30s"`` or a plain number; ValueError else."""
    if isinstance(raw, bool):
        raise ValueError
    if isinstance(raw, int | float):
        if raw < 0:
            raise ValueError
        return Lookback(str(raw), 0.0 if raw == 0 else None, float(raw))
    text = str(raw).strip().lower()
    match = _LOOKBACK_RE.match(text)
    if match is None:
        raise ValueError
    amount = float(match.group(1))
    unit = match.group(2)
    if unit is None:
        return Lookback(str(raw), 0.0 if amount == 0 else None, amount)
    if unit not in _DURATION_UNITS:
        raise ValueError
    return Lookback(str(raw), amount * _DURATION_UNITS[unit], None)


def _lookback(raw: Any, problem: Any) -> Lookback | None:
    if raw is None:
        return Lookback()
    try:
        return parse_lookback(raw)
    except ValueError:
        problem(
            f"{META}.lookback",
            f"{raw!r} is neither a duration nor a number.",
            "use e.g. '3 days', '12 hours' or '90 minutes' (a number for numeric cursors).",
        )
        return None


def parse_backfill(raw: Any) -> bool | dt.datetime:
    """``true``, ``false`` or a date / ISO-8601 time (UTC when naive); ValueError else."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, dt.datetime):
        value = raw
    elif isinstance(raw, dt.date):
        value = dt.datetime(raw.year, raw.month, raw.day)
    else:
        text = str(raw).strip()
        if text.lower() in ("true", "yes"):
            return True
        if text.lower() in ("false", "no"):
            return False
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _backfill(raw: Any, problem: Any) -> bool | dt.datetime | None:
    try:
        return parse_backfill(raw)
    except ValueError:
        problem(
            f"{META}.backfill",
            f"{raw!r} is neither true, false nor a date.",
            "use true (send history), false (send only rows that appear later) or a date like 2024-01-01.",
        )
        return None


def _single_model(exposure: Exposure, manifest: Manifest, problem: Any) -> ModelNode | None:
    models = [uid for uid in exposure.depends_on if uid in manifest.nodes]
    if exposure.sources:
        problem(
            "depends_on",
            "reads a source; activations read exactly one model.",
            "ref() a model instead.",
        )
    if len(models) != 1:
        problem(
            "depends_on",
            f"must reference exactly one model, found {len(models)}.",
            "list one ref('your_model') under depends_on.",
        )
        return None
    node = manifest.nodes[models[0]]
    if node.materialized == "ephemeral" or not node.relation_name:
        problem(
            "depends_on",
            f"model {node.name} is ephemeral and has no relation to read.",
            "materialize it as a table or view.",
        )
        return None
    return node


def _destination(
    meta: dict[str, Any], config: DinmoConfig, problem: Any, problems: list[Problem]
) -> Destination | None:
    name = meta.get("destination")
    if not name:
        problem(
            f"{META}.destination",
            "is missing.",
            f"name one of: {', '.join(config.destinations) or 'none'} (dinmo.yml).",
        )
        return None
    if name not in config.destinations and name not in config.problems:
        problem(
            f"{META}.destination",
            f"unknown destination {name!r}.",
            f"define it under destinations: in {config.path.name}, or use one of: "
            f"{', '.join(config.destinations) or 'none'}.",
        )
        return None
    problems.extend(config.problems.get(str(name), []))
    return config.destinations.get(str(name))


def _identifier(raw: Any, problem: Any) -> Identifier | None:
    key = f"{META}.identifier"
    if raw is None:
        problem(key, "is missing.", "add identifier: {column: <your id column>, type: external_id}.")
        return None
    if isinstance(raw, str):
        raw = {"column": raw}
    if not isinstance(raw, dict) or not raw.get("column"):
        problem(
            key,
            "must be a mapping with a 'column'.",
            "e.g. identifier: {column: customer_id, type: external_id}.",
        )
        return None
    id_type = raw.get("type", "external_id")
    if id_type not in IDENTIFIER_TYPES:
        problem(
            f"{key}.type",
            f"unknown identifier type {id_type!r}.",
            "use external_id, braze_id or user_alias.",
        )
        return None
    label = raw.get("alias_label")
    if id_type == "user_alias" and not label:
        problem(
            f"{key}.alias_label",
            "is required with type: user_alias.",
            "add alias_label: <your label>.",
        )
        return None
    for extra in set(raw) - {"column", "type", "alias_label"}:
        problem(f"{key}.{extra}", "unknown key.", "use column, type and alias_label.")
    return Identifier(column=str(raw["column"]), type=id_type, alias_label=str(label) if label else None)


def _mapping(raw: Any, problem: Any) -> tuple[tuple[str, str], ...] | None:
    key = f"{META}.mapping"
    if not isinstance(raw, dict) or not raw:
        problem(
            key,
            "must map at least one model column to a Braze attribute.",
            "e.g. mapping: {first_name: first_name}.",
        )
        return None
    pairs: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for column, attribute in raw.items():
        attr = str(attribute) if attribute is not None else ""
        if not attr:
            problem(f"{key}.{column}", "has no Braze attribute name.", "write column: attribute_name.")
            continue
        if attr in RESERVED_ATTRIBUTES:
            problem(
                f"{key}.{column}",
                f"{attr!r} is a Braze identifier or flag, not an attribute.",
                "map it to another name.",
            )
        elif attr.startswith("$") or len(attr) > 255:
            problem(
                f"{key}.{column}",
                f"{attr!r} is not a valid Braze attribute name.",
                "use at most 255 characters, not starting with '$'.",
            )
        if attr in seen:
            problem(
                f"{key}.{column}",
                f"attribute {attr!r} is already mapped from column {seen[attr]!r}.",
                "map each attribute once.",
            )
        seen[attr] = str(column)
        pairs.append((str(column), attr))
    return tuple(pairs)


def _max_deletes(raw: Any, problem: Any, key: str = "max_deletes") -> MaxDeletes | None:
    key = f"{META}.{key}"
    text = str(raw).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 <= pct <= 100:
                raise ValueError
            return MaxDeletes(percent=pct)
        count = int(text)
        if count < 0:
            raise ValueError
        return MaxDeletes(count=count)
    except ValueError:
        problem(key, f"{raw!r} is neither a count nor a percentage.", "use e.g. 100 or '10%'.")
        return None


def _valid_schedule(text: str) -> bool:
    from croniter import croniter

    try:
        return bool(croniter.is_valid(text))
    except Exception:
        return False
