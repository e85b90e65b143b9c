"""A dbt project seen by dbt-dinmo: its manifest, ``dinmo.yml``, activations and warehouse.

Everything that can be checked before a request is sent is checked here, and every problem is
reported at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from dbt_dinmo.activation import Activation, conflicts, parse_activation
from dbt_dinmo.config import DinmoConfig, load_config
from dbt_dinmo.errors import ConfigError, Problem
from dbt_dinmo.manifest import Manifest, load_manifest, manifest_path
from dbt_dinmo.selection import select_activations

if TYPE_CHECKING:
    from dbt_dinmo.warehouse import Warehouse


@dataclass(frozen=True)
class ProjectOptions:
    """Where the project is and how to reach its warehouse (dbt's own flags)."""

    project_dir: Path = Path(".")
    profiles_dir: Path | None = None
    profile: str | None = None
    target: str | None = None
    vars: str | None = None
    target_path: str | None = None
    dinmo_file: Path | None = None


@dataclass(frozen=True)
class ResolvedColumns:
    """The real (warehouse) names of an activation's identifier and mapped columns."""

    identifier: str
    mapped: list[str]  # mapping (attributes) or properties (events), in contract order
    declared_types: dict[str, str] = field(default_factory=dict)  # lower-cased name -> type
    roles: dict[str, str] = field(default_factory=dict)  # events: event_time, event_id, cursor, ...


class Project:
    """Lazily loads config and manifest; selects and validates activations."""

    def __init__(self, options: ProjectOptions) -> None:
        self.options = options
        self.dir = options.project_dir.resolve()

    @cached_property
    def config(self) -> DinmoConfig:
        """The parsed ``dinmo.yml``."""
        return load_config(self.dir, self.options.dinmo_file)

    @cached_property
    def manifest(self) -> Manifest:
        """The parsed ``target/manifest.json``."""
        target = self.options.target_path or os.environ.get("DBT_TARGET_PATH")
        return load_manifest(manifest_path(self.dir, target))

    @property
    def target_dir(self) -> Path:
        """dbt's target directory (dbt-dinmo writes only under ``target/dinmo/``)."""
        target = Path(self.options.target_path or os.environ.get("DBT_TARGET_PATH") or "target")
        return target if target.is_absolute() else self.dir / target

    @property
    def state_dir(self) -> Path:
        """The state directory from ``dinmo.yml``."""
        return self.config.state_path

    def select(self, select: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[Activation]:
        """Parse the selected activations; ConfigError listing every problem if any."""
        activations, problems = self.parse(select, exclude)
        if problems:
            raise ConfigError(problems)
        return activations

    def prepare(
        self, warehouse: Warehouse, select: Sequence[str] = (), exclude: Sequence[str] = ()
    ) -> tuple[list[Activation], dict[str, ResolvedColumns]]:
        """Parse the selected activations and check their columns; every problem in one ConfigError."""
        activations, problems = self.parse(select, exclude)
        try:
            resolved = self.resolve_columns(warehouse, activations)
        except ConfigError as exc:
            problems.extend(exc.problems)
            resolved = {}
        if problems:
            raise ConfigError(problems)
        return activations, resolved

    def parse(
        self, select: Sequence[str] = (), exclude: Sequence[str] = ()
    ) -> tuple[list[Activation], list[Problem]]:
        """Parse the selected activations; return them and every problem found."""
        chosen, problems = select_activations(self.manifest, select, exclude)
        activations: list[Activation] = []
        for exposure in chosen:
            activation, found = parse_activation(exposure, self.manifest, self.config)
            problems.extend(found)
            if activation is not None:
                activations.append(activation)
        if any(a.is_segment for a in activations):  # segments must not fight any activation
            every = [
                a
                for a, _ in (
                    parse_activation(e, self.manifest, self.config) for e in self.manifest.activations()
                )
                if a is not None
            ]
            problems.extend(conflicts(activations, every))
        return activations, problems

    def open_warehouse(self) -> Warehouse:
        """Open the user's dbt profile/target adapter."""
        from dbt_dinmo.warehouse import open_warehouse

        o = self.options
        return open_warehouse(
            self.dir, profiles_dir=o.profiles_dir, profile=o.profile, target=o.target, vars=o.vars
        )

    def resolve_columns(
        self, warehouse: Warehouse, activations: Sequence[Activation]
    ) -> dict[str, ResolvedColumns]:
        """Check every activation against the model's real columns; ConfigError if any problem."""
        problems: list[Problem] = []
        resolved: dict[str, ResolvedColumns] = {}
        manifest_adapter = self.manifest.adapter_type
        if manifest_adapter and manifest_adapter != warehouse.adapter_type:
            problems.append(
                Problem(
                    "manifest",
                    "metadata.adapter_type",
                    f"the manifest was built for {manifest_adapter}, but the profile's target uses "
                    f"{warehouse.adapter_type}.",
                    "re-run `dbt build` with the same --target as dbt-dinmo.",
                )
            )
        for activation in activations:
            model = activation.model
            where = f"exposure {activation.name}"
            if model.database and warehouse.database and model.database.lower() != warehouse.database.lower():
                problems.append(
                    Problem(
                        where,
                        "depends_on",
                        f"the manifest has {model.name} in database {model.database!r}, but target "
                        f"{warehouse.target_name!r} uses {warehouse.database!r}: the manifest was built for "
                        "another target.",
                        f"run `dbt build --target {warehouse.target_name}` (or pass the --target dbt used).",
                    )
                )
                continue
            columns = warehouse.columns(model.database, model.schema, model.alias)
            if columns is None:
                problems.append(
                    Problem(
                        where,
                        "depends_on",
                        f"model {model.name} ({model.relation_name}) has not been built in target "
                        f"{warehouse.target_name!r}.",
                        f"run `dbt build -s +exposure:{activation.name}`.",
                    )
                )
                continue
            by_lower = {c.name.lower(): c for c in columns}
            available = ", ".join(c.name for c in columns)

            def real(column: str, key: str) -> str | None:
                found = by_lower.get(column.lower())  # noqa: B023
                if found is None:
                    problems.append(
                        Problem(
                            where,  # noqa: B023
                            key,
                            f"column {column!r} is not in model {model.name}.",  # noqa: B023
                            f"use one of: {available}.",  # noqa: B023
                        )
                    )
                    return None
                return found.name

            ident = real(activation.identifier.column, "config.meta.dinmo.identifier.column")
            key = activation.mapping_key
            mapped = [real(col, f"config.meta.dinmo.{key}.{col}") for col, _ in activation.mapping]
            roles = {role: real(col, k) for role, col, k in activation.role_columns()}
            if ident is None or any(m is None for m in mapped) or any(r is None for r in roles.values()):
                continue
            declared = {c.name.lower(): c.data_type for c in columns}
            resolved[activation.name] = ResolvedColumns(
                ident,
                [m for m in mapped if m is not None],
                declared,
                {role: r for role, r in roles.items() if r is not None},
            )
        if problems:
            raise ConfigError(problems)
        return resolved
