"""Read ``target/manifest.json`` as plain JSON into small, tolerant typed models.

No dbt-core import: orjson plus dataclasses that keep only the fields dbt-dinmo uses, so new
fields in a dbt patch release never break the reader and a 4,000-model manifest loads in well
under a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from dbt_dinmo.errors import ConfigError, Problem

SUPPORTED_SCHEMAS = ("/v12.json", "/v20.json")
META_KEY = "dinmo"


@dataclass(frozen=True)
class ModelNode:
    """A model (or seed/snapshot) an activation can read from."""

    unique_id: str
    name: str
    resource_type: str
    database: str | None
    schema: str
    alias: str
    relation_name: str | None
    materialized: str
    documented_columns: tuple[str, ...]
    column_types: Mapping[str, str]  # documented data_type by lower-cased column name
    checksum: str
    path: str = ""
    tags: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ModelNode:
        """Build from a ``manifest["nodes"]`` entry."""
        columns = raw.get("columns") or {}
        return cls(
            unique_id=raw["unique_id"],
            name=raw.get("name", ""),
            resource_type=raw.get("resource_type", ""),
            database=raw.get("database"),
            schema=raw.get("schema") or "",
            alias=raw.get("alias") or raw.get("name", ""),
            relation_name=raw.get("relation_name"),
            materialized=(raw.get("config") or {}).get("materialized") or "",
            documented_columns=tuple(columns),
            column_types={
                str(k).lower(): str(v.get("data_type"))
                for k, v in columns.items()
                if isinstance(v, dict) and v.get("data_type")
            },
            checksum=(raw.get("checksum") or {}).get("checksum", ""),
            path=raw.get("original_file_path") or "",
            tags=tuple(raw.get("tags") or ()),
        )


@dataclass(frozen=True)
class Exposure:
    """An exposure; an activation when it carries ``config.meta.dinmo``."""

    unique_id: str
    name: str
    type: str
    label: str
    description: str
    owner_name: str
    owner_email: str
    tags: tuple[str, ...]
    dinmo: Mapping[str, Any] | None  # config.meta.dinmo, else meta.dinmo
    depends_on: tuple[str, ...]  # node unique ids
    sources: tuple[str, ...]
    path: str
    enabled: bool = True
    fqn: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, enabled: bool = True) -> Exposure:
        """Build from a ``manifest["exposures"]`` (or ``disabled``) entry."""
        config = raw.get("config") or {}
        meta = config.get("meta") or {}
        dinmo = meta.get(META_KEY)
        if dinmo is None:
            dinmo = (raw.get("meta") or {}).get(META_KEY)
        owner = raw.get("owner") or {}
        email = owner.get("email") or ""
        if isinstance(email, list):
            email = ", ".join(str(e) for e in email)
        depends = raw.get("depends_on") or {}
        return cls(
            unique_id=raw["unique_id"],
            name=raw.get("name", ""),
            type=raw.get("type", ""),
            label=raw.get("label") or "",
            description=raw.get("description") or "",
            owner_name=owner.get("name") or "",
            owner_email=str(email),
            tags=tuple(config.get("tags") or raw.get("tags") or ()),
            dinmo=dinmo if isinstance(dinmo, dict) else ({} if dinmo is not None else None),
            depends_on=tuple(depends.get("nodes") or ()),
            sources=tuple(raw.get("sources") or ()),
            path=raw.get("original_file_path") or raw.get("path") or "",
            enabled=enabled,
            fqn=tuple(raw.get("fqn") or ()),
        )


@dataclass(frozen=True)
class Manifest:
    """The parts of ``manifest.json`` dbt-dinmo needs."""

    path: Path
    schema_version: str
    dbt_version: str
    adapter_type: str
    project_name: str
    invocation_id: str
    generated_at: str
    exposures: dict[str, Exposure]
    disabled_exposures: dict[str, Exposure]
    nodes: dict[str, ModelNode]
    parent_map: Mapping[str, list[str]] = field(default_factory=dict)
    child_map: Mapping[str, list[str]] = field(default_factory=dict)

    def activations(self) -> list[Exposure]:
        """Enabled exposures that carry a ``dinmo`` block, sorted by name."""
        return sorted((e for e in self.exposures.values() if e.dinmo is not None), key=lambda e: e.name)

    def disabled_activations(self) -> list[Exposure]:
        """Disabled exposures that carry a ``dinmo`` block."""
        return sorted(
            (e for e in self.disabled_exposures.values() if e.dinmo is not None),
            key=lambda e: e.name,
        )


def manifest_path(project_dir: Path, target_path: str | None = None) -> Path:
    """``<project>/<target-path>/manifest.json``; honours DBT_TARGET_PATH like dbt."""
    target = Path(target_path or "target")
    return target / "manifest.json" if target.is_absolute() else project_dir / target / "manifest.json"


def load_manifest(path: Path) -> Manifest:
    """Load and check a manifest; ConfigError with a hint when missing or unsupported."""
    if not path.is_file():
        raise ConfigError(
            Problem(
                str(path),
                "-",
                "manifest not found.",
                "run `dbt parse` (or `dbt build`) in the project first, then dbt-dinmo.",
            )
        )
    try:
        raw = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ConfigError(
            Problem(str(path), "-", f"is not valid JSON ({exc}).", "re-run `dbt parse`.")
        ) from None
    meta = raw.get("metadata") or {}
    schema = str(meta.get("dbt_schema_version") or "")
    if not schema.endswith(SUPPORTED_SCHEMAS):
        raise ConfigError(
            Problem(
                str(path),
                "metadata.dbt_schema_version",
                f"unsupported manifest schema {schema or 'unknown'!r}; expected v12 (dbt-core 1.8+).",
                "upgrade dbt-core to 1.8 or newer and re-run `dbt parse`.",
            )
        )
    exposures = {uid: Exposure.from_json(e) for uid, e in (raw.get("exposures") or {}).items()}
    disabled: dict[str, Exposure] = {}
    for uid, entries in (raw.get("disabled") or {}).items():
        if uid.startswith("exposure.") and entries:
            disabled[uid] = Exposure.from_json(entries[0], enabled=False)
    nodes = {
        uid: ModelNode.from_json(n)
        for uid, n in (raw.get("nodes") or {}).items()
        if n.get("resource_type") in ("model", "seed", "snapshot")
    }
    return Manifest(
        path=path,
        schema_version=schema,
        dbt_version=str(meta.get("dbt_version") or ""),
        adapter_type=str(meta.get("adapter_type") or ""),
        project_name=str(meta.get("project_name") or ""),
        invocation_id=str(meta.get("invocation_id") or ""),
        generated_at=str(meta.get("generated_at") or ""),
        exposures=exposures,
        disabled_exposures=disabled,
        nodes=nodes,
        parent_map=raw.get("parent_map") or {},
        child_map=raw.get("child_map") or {},
    )
