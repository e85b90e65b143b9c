"""The activation contract: ``config.meta.dinmo`` of an exposure, parsed and checked.

Every problem is collected (never the first only) with the exposure's name, the key, what was
expected and how to fix it. Checks that need the warehouse (real columns, built relation) live in
:mod:`dbt_dinmo.validate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from dbt_dinmo.config import Destination, DinmoConfig
from dbt_dinmo.errors import Problem
from dbt_dinmo.manifest import Exposure, Manifest, ModelNode

SyncMode = Literal["update", "upsert", "mirror"]
IdentifierType = Literal["external_id", "braze_id", "user_alias"]

SERVICES = ("user_attributes",)
PLANNED_SERVICES = ("custom_events", "purchases", "subscription_status", "user_lists")
SYNC_MODES: tuple[SyncMode, ...] = ("update", "upsert", "mirror")
IDENTIFIER_TYPES: tuple[IdentifierType, ...] = ("external_id", "braze_id", "user_alias")
NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
KNOWN_KEYS = {
    "destination",
    "service",
    "sync_mode",
    "identifier",
    "mapping",
    "max_deletes",
    "schedule",
    "description",
}
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

    @property
    def attributes(self) -> tuple[str, ...]:
        """The Braze attribute names, in mapping order."""
        return tuple(attr for _, attr in self.mapping)

    @property
    def identity(self) -> str:
        """What the synced state depends on besides the mapping: destination and identifier."""
        ident = self.identifier
        return f"{self.destination.identity}|{ident.type}|{ident.column}|{ident.alias_label or ''}"


def parse_activations(manifest: Manifest, config: DinmoConfig) -> tuple[list[Activation], list[Problem]]:
    """Parse every activation of the manifest; return the valid ones and all problems."""
    activations: list[Activation] = []
    problems: list[Problem] = []
    for exposure in manifest.activations():
        activation, found = parse_activation(exposure, manifest, config)
        problems.extend(found)
        if activation is not None and not found:
            activations.append(activation)
    return activations, problems


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
    for key in meta:
        if key not in KNOWN_KEYS:
            problem(f"{META}.{key}", "unknown key.", f"known keys: {', '.join(sorted(KNOWN_KEYS))}.")

    model = _single_model(exposure, manifest, problem)
    destination = _destination(meta, config, problem, problems)
    service = meta.get("service")
    if service is None:
        problem(f"{META}.service", "is missing.", "add service: user_attributes.")
    elif service in PLANNED_SERVICES:
        problem(
            f"{META}.service",
            f"service {service!r} is not available in this version of dbt-dinmo.",
            "upgrade dbt-dinmo, or use service: user_attributes.",
        )
    elif service not in SERVICES:
        problem(
            f"{META}.service",
            f"unknown service {service!r}.",
            f"use one of: {', '.join(SERVICES)}.",
        )

    sync_mode = meta.get("sync_mode", "upsert")
    if sync_mode not in SYNC_MODES:
        problem(
            f"{META}.sync_mode",
            f"unknown sync mode {sync_mode!r}.",
            "use update, upsert or mirror.",
        )
    identifier = _identifier(meta.get("identifier"), problem)
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
    schedule = meta.get("schedule")
    if schedule is not None:
        schedule = str(schedule)
        if not _valid_schedule(schedule):
            problem(
                f"{META}.schedule",
                f"{schedule!r} is not a cron expression or alias.",
                "use e.g. '*/15 * * * *' or '@hourly'.",
            )
    if model is None or destination is None or identifier is None or mapping is None:
        return None, problems
    if sync_mode not in SYNC_MODES or service not in SERVICES:
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
        ),
        problems,
    )


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


def _max_deletes(raw: Any, problem: Any) -> MaxDeletes | None:
    key = f"{META}.max_deletes"
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
