from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dbt_dinmo.activation import parse_activations
from dbt_dinmo.config import load_config
from dbt_dinmo.errors import ConfigError
from dbt_dinmo.manifest import load_manifest

DINMO_YML = """
destinations:
  braze:
    rest_url: https://rest.fra-01.braze.eu
    dashboard_url: https://dashboard-01.braze.eu
    api_key: "{{ env_var('KEY') }}"
"""


def model(name: str, materialized: str = "table") -> dict[str, Any]:
    relation = None if materialized == "ephemeral" else f'"db"."main"."{name}"'
    return {
        "unique_id": f"model.p.{name}",
        "name": name,
        "resource_type": "model",
        "database": "db",
        "schema": "main",
        "alias": name,
        "relation_name": relation,
        "config": {"materialized": materialized},
        "columns": {},
        "checksum": {"checksum": "x"},
    }


def exposure(
    name: str,
    dinmo: dict[str, Any] | None,
    depends: list[str],
    *,
    where: str = "config",
    type_: str = "application",
) -> dict[str, Any]:
    meta = {"dinmo": dinmo} if dinmo is not None else {}
    raw: dict[str, Any] = {
        "unique_id": f"exposure.p.{name}",
        "name": name,
        "type": type_,
        "owner": {"name": "o", "email": ["a@x.com", "b@x.com"]},
        "depends_on": {"nodes": depends},
        "config": {"meta": meta if where == "config" else {}},
    }
    if where == "top":
        raw["meta"] = meta
    return raw


GOOD = {
    "destination": "braze",
    "service": "user_attributes",
    "sync_mode": "upsert",
    "identifier": {"column": "id", "type": "external_id"},
    "mapping": {"first_name": "first_name"},
}


def write_project(
    tmp_path: Path, exposures: list[dict[str, Any]], models: list[dict[str, Any]] | None = None
) -> Path:
    models = models or [model("customers"), model("eph", "ephemeral")]
    manifest = {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            "adapter_type": "duckdb",
            "dbt_version": "1.11.0",
        },
        "nodes": {m["unique_id"]: m for m in models},
        "exposures": {e["unique_id"]: e for e in exposures},
        "disabled": {},
    }
    (tmp_path / "target").mkdir(exist_ok=True)
    (tmp_path / "target/manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "dinmo.yml").write_text(DINMO_YML)
    return tmp_path


def parse(tmp_path: Path, env: dict[str, str] | None = None) -> tuple[list[Any], list[Any]]:
    manifest = load_manifest(tmp_path / "target/manifest.json")
    config = load_config(tmp_path, env={"KEY": "k"} if env is None else env)
    return parse_activations(manifest, config)


def test_valid_activation_from_config_meta_and_top_level_meta(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [
            exposure("a", GOOD, ["model.p.customers"]),
            exposure("b", GOOD, ["model.p.customers"], where="top"),
            exposure("not_an_activation", None, ["model.p.customers"]),
        ],
    )
    activations, problems = parse(tmp_path)
    assert problems == []
    assert [a.name for a in activations] == ["a", "b"]
    a = activations[0]
    assert a.mapping == (("first_name", "first_name"),)
    assert a.max_deletes.limit(200) == 20  # default 10 %
    assert a.exposure.owner_email == "a@x.com, b@x.com"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    bad = dict(GOOD, service="user_atributes", identifier=None, destination="nowhere", mapping={})
    braze_id = dict(GOOD, identifier={"column": "id", "type": "braze_id"}, sync_mode="mirror")
    alias = dict(
        GOOD,
        identifier={"column": "id", "type": "user_alias"},
        max_deletes="110%",
        sync_mode="mirror",
        schedule="every day",
    )
    write_project(
        tmp_path,
        [
            exposure("bad", bad, ["model.p.customers"]),
            exposure("braze_id_upsert", braze_id, ["model.p.customers"]),
            exposure("alias_no_label", alias, ["model.p.customers"]),
            exposure("ephemeral", GOOD, ["model.p.eph"]),
            exposure("two_models", GOOD, ["model.p.customers", "model.p.eph"]),
            exposure("wrong-name", GOOD, ["model.p.customers"], type_="dashboard"),
        ],
    )
    activations, problems = parse(tmp_path)
    assert activations == []
    found = {(p.where, p.key.split(".")[-1]) for p in problems}
    assert ("exposure bad", "service") in found
    assert ("exposure bad", "identifier") in found
    assert ("exposure bad", "destination") in found
    assert ("exposure bad", "mapping") in found
    assert ("exposure braze_id_upsert", "sync_mode") in found
    assert ("exposure alias_no_label", "alias_label") in found
    assert ("exposure alias_no_label", "max_deletes") in found
    assert ("exposure alias_no_label", "schedule") in found
    assert ("exposure ephemeral", "depends_on") in found
    assert ("exposure two_models", "depends_on") in found
    assert ("exposure wrong-name", "name") in found and ("exposure wrong-name", "type") in found
    assert all(p.fix for p in problems if p.key != "config.meta.dinmo.destination")


def test_unset_api_key_variable_is_reported_for_the_activation_using_it(tmp_path: Path) -> None:
    write_project(tmp_path, [exposure("a", GOOD, ["model.p.customers"])])
    activations, problems = parse(tmp_path, env={})
    assert activations == []
    assert any("KEY" in p.message and p.key == "destinations.braze.api_key" for p in problems)


def test_reserved_and_duplicate_attribute_names(tmp_path: Path) -> None:
    mapping = {"a": "external_id", "b": "x", "c": "x", "d": "$bad"}
    write_project(tmp_path, [exposure("a", dict(GOOD, mapping=mapping), ["model.p.customers"])])
    _, problems = parse(tmp_path)
    messages = " ".join(p.message for p in problems)
    assert "identifier or flag" in messages and "already mapped" in messages and "not a valid" in messages


def test_missing_or_old_manifest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dbt parse"):
        load_manifest(tmp_path / "target/manifest.json")
    (tmp_path / "m.json").write_text(
        json.dumps({"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v9.json"}})
    )
    with pytest.raises(ConfigError, match="unsupported manifest schema"):
        load_manifest(tmp_path / "m.json")
