"""The dinmo dbt macros package (repo-root dbt_project.yml + macros/), run by real dbt.

A fixture dbt project (fixture_project/) installs the package with ``dbt deps`` (``local:`` the repository
root), then ``dbt build`` runs every generic test on seeds holding valid and invalid values, and builds models
calling ``dinmo.fingerprint``. Each case runs on DuckDB, and on PostgreSQL when DINMO_TEST_POSTGRES_HOST (and
_PORT, _USER, _PASSWORD, _DB) are set: ``eval "$(bash scripts/ci_postgres.sh)"`` starts a server and prints
them. Without them the PostgreSQL cases are skipped, or fail when DINMO_TEST_POSTGRES_REQUIRED=1 (CI).

dbt runs three times per adapter (deps, build, a rerun of the fingerprint models in another session time zone).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parent / "fixture_project"
BIN = Path(sys.executable).parent
PG_VARS = ("HOST", "PORT", "USER", "PASSWORD", "DB")

# Expected number of failing rows of each generic test of fixture_project/models/schema.yml (0 = passes).
EXPECTED_FAILURES = {
    "braze_identifier__valid": 0,
    "braze_identifier__integer": 0,
    "braze_identifier__invalid": 5,  # 2 nulls, 2 copies of a duplicate, 1 value of 256 characters
    "braze_identifier__invalid_where": 2,  # config.where keeps the duplicates and one valid row
    "braze_identifier__invalid_max_length_300": 4,  # the 256-character value is fine then
    "braze_string__valid": 0,  # 255 x 'x', 255 x 'é' (characters, not bytes), null
    "braze_string__invalid": 2,  # 256 x 'x', 256 x 'é'
    "braze_string__invalid_max_length_5": 2,
    "braze_string__integer": 0,
    "iso_currency__valid": 0,
    "iso_currency__valid_strict": 0,
    "iso_currency__valid_values": 2,  # values: [EUR]; USD and JPY fail
    "iso_currency__format_only": 0,  # ABC, QQQ look like codes
    "iso_currency__format_only_strict": 2,  # ... but are not ISO 4217
    "iso_currency__invalid": 7,  # eur, EU, EURO, E1R, ÉUR, Eur, 'E R'
    "iso_currency__invalid_strict": 7,
    "iso_country__valid": 0,
    "iso_country__valid_values": 2,  # values: [NL, US]; GB and FR fail
    "iso_country__invalid": 5,  # nl, UK, XX, Netherlands, USA
    "braze_email_subscribe__valid": 0,
    "braze_email_subscribe__invalid": 4,  # OPTED_IN, opted-in, yes, true
    "braze_date__text": 0,  # includes 2024-02-29, 2000-02-29, 0001-01-01, 9999-12-31
    "braze_date__invalid": 13,
    "braze_date__invalid_allow_time": 12,  # 2024-01-01T10:00:00 passes
    "braze_date__date": 0,
    "braze_date__timestamp": 3,  # a time part is not a date
    "braze_date__timestamp_allow_time": 0,
    "braze_date__text_with_time": 3,
    "braze_date__text_with_time_allow_time": 0,
    "quantity_1_100__ids": 0,
    "quantity_1_100__integer": 0,
    "quantity_1_100__integer_invalid": 3,  # 0, 101, -5
    "quantity_1_100__decimal": 0,  # 1.00, 2.00, 100.00
    "quantity_1_100__decimal_invalid": 3,  # 2.50, 0.50, 100.01
    "quantity_1_100__float": 0,
}

# fingerprint_cases.sql, as Python values.
TEXT_CASES: dict[str, tuple[str | None, str | None]] = {
    "sep_1": ("a|", "b"),
    "sep_2": ("a", "|b"),
    "shift_1": ("ab", "c"),
    "shift_2": ("a", "bc"),
    "null_a": (None, "x"),
    "N_a": ("N", "x"),
    "empty_a": ("", "x"),
    "NULL_text_a": ("NULL", "x"),
    "both_null": (None, None),
    "both_empty": ("", ""),
    "encoded_1": ("V1:a", "b"),
    "encoded_2": ("V1:aV1:b", None),
    "unicode": ("é", "ü👍🏽"),
}


def encode(value: str | None) -> str:
    """The package's per-value encoding (dbt-integration.md 13.2); lengths in characters (code points)."""
    return "N" if value is None else f"V{len(value)}:{value}"


def md5(*values: str | None) -> str:
    return hashlib.md5("".join(encode(v) for v in values).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------------------
# The package itself (no dbt run)


def test_package_project_file() -> None:
    project = yaml.safe_load((ROOT / "dbt_project.yml").read_text())
    assert project["name"] == "dinmo"
    assert project["config-version"] == 2
    assert project["macro-paths"] == ["macros"]
    assert project["require-dbt-version"] == [">=1.8.0", "<3.0.0"]
    assert "profile" not in project
    # released in lock-step with the Python package
    pyproject = re.search(r'(?m)^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pyproject and project["version"] == pyproject.group(1)
    # the repository's other folders (tests/, ...) must not be read as dbt resources
    for key in ("model-paths", "seed-paths", "test-paths", "analysis-paths", "snapshot-paths"):
        assert all(not (ROOT / path).exists() for path in project[key]), key


def test_sample_project_uses_the_package() -> None:
    packages = yaml.safe_load((ROOT / "sample_project" / "packages.yml").read_text())
    assert {"local": ".."} in packages["packages"]
    schema = (ROOT / "sample_project" / "models" / "schema.yml").read_text()
    for test in ("braze_identifier", "braze_string", "iso_country", "braze_email_subscribe", "braze_date"):
        assert f"dinmo.{test}" in schema


def _macro_list(name: str) -> list[str]:
    text = (ROOT / "macros" / "utils" / "iso_codes.sql").read_text()
    body = re.search(r"macro default__" + name + r"\(\).*?return\(\[(.*?)\]\)", text, re.S)
    assert body, name
    return re.findall(r'"([^"]*)"', body.group(1))


def test_shipped_iso_lists() -> None:
    countries = _macro_list("iso_3166_alpha2_codes")
    assert len(countries) == len(set(countries)) == 249
    assert all(re.fullmatch(r"[A-Z]{2}", c) for c in countries)
    assert {"NL", "US", "GB", "FR", "DE"} <= set(countries) and "UK" not in countries
    currencies = _macro_list("iso_4217_currency_codes")
    assert len(currencies) == len(set(currencies))
    assert all(re.fullmatch(r"[A-Z]{3}", c) for c in currencies)
    assert {"EUR", "USD", "JPY", "GBP", "CHF", "ZWG", "XCG"} <= set(currencies)
    # Debian's iso-codes, when installed, is where the lists come from
    iso = Path("/usr/share/iso-codes/json")
    if (iso / "iso_3166-1.json").is_file():
        ref = {c["alpha_2"] for c in json.loads((iso / "iso_3166-1.json").read_text())["3166-1"]}
        assert set(countries) == ref
    if (iso / "iso_4217.json").is_file():
        ref = {c["alpha_3"] for c in json.loads((iso / "iso_4217.json").read_text())["4217"]}
        assert ref <= set(currencies)


# ------------------------------------------------------------------------------------------------------------
# The fixture project, built once per adapter


def _postgres_env() -> dict[str, str] | None:
    env = {v: os.environ.get(f"DINMO_TEST_POSTGRES_{v}", "") for v in PG_VARS}
    return env if env["HOST"] else None


@dataclass
class Built:
    adapter: str
    project: Path
    env: dict[str, str]
    schema: str
    build: subprocess.CompletedProcess[str]
    results: dict[str, dict[str, Any]]  # test name -> run_results entry
    fingerprints: list[dict[str, dict[str, Any]]] = field(default_factory=list)  # one per run

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.adapter == "duckdb":
            import duckdb

            with duckdb.connect(str(self.project / "macros.duckdb"), read_only=True) as con:
                return con.execute(sql).fetchall()
        con = _pg_connect()
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            con.close()

    def table(self, name: str) -> str:
        return f"{self.schema}.{name}" if self.adapter == "postgres" else f"main.{name}"


def _profiles(adapter: str) -> str:
    if adapter == "duckdb":
        return (
            "dinmo_macros_fixture:\n  target: ci\n  outputs:\n    ci:\n      type: duckdb\n"
            "      path: macros.duckdb\n      threads: 4\n"
            "      settings:\n        TimeZone: \"{{ env_var('DINMO_TEST_TZ', 'UTC') }}\"\n"
        )
    return (
        "dinmo_macros_fixture:\n  target: ci\n  outputs:\n    ci:\n      type: postgres\n"
        "      host: \"{{ env_var('DINMO_TEST_POSTGRES_HOST') }}\"\n"
        "      port: \"{{ env_var('DINMO_TEST_POSTGRES_PORT') | as_number }}\"\n"
        "      user: \"{{ env_var('DINMO_TEST_POSTGRES_USER') }}\"\n"
        "      password: \"{{ env_var('DINMO_TEST_POSTGRES_PASSWORD') }}\"\n"
        "      dbname: \"{{ env_var('DINMO_TEST_POSTGRES_DB') }}\"\n"
        "      schema: \"{{ env_var('DINMO_TEST_SCHEMA') }}\"\n"
        "      threads: 4\n"
    )


def _dbt(
    base_env: dict[str, str], project: Path, *args: str, tz: str = "UTC"
) -> subprocess.CompletedProcess[str]:
    env = dict(base_env, DINMO_TEST_TZ=tz, PGTZ=tz)
    return subprocess.run(
        [str(BIN / "dbt"), *args, "--profiles-dir", ".", "--no-use-colors"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _read_fingerprints(built: Built) -> dict[str, dict[str, Any]]:
    text = {
        row[0]: {"fp": row[1], "fp_a": row[2]}
        for row in built.query(f"select case_id, fp, fp_a from {built.table('fingerprints')}")
    }
    typed = {
        str(row[0]): {"relation": row[1], "columns": row[2], "mapping": row[3], "untyped": row[4]}
        for row in built.query(
            f"select id, fp_relation, fp_columns, fp_mapping, fp_untyped from {built.table('typed_fingerprints')}"
        )
    }
    return {"text": text, "typed": typed}


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    adapter: str = request.param
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    env.update(DBT_SEND_ANONYMOUS_USAGE_STATS="false", NO_COLOR="1")
    schema = "main"
    if adapter == "postgres":
        if _postgres_env() is None:
            reason = (
                "PostgreSQL not configured: set DINMO_TEST_POSTGRES_HOST/PORT/USER/PASSWORD/DB "
                '(eval "$(bash scripts/ci_postgres.sh)" starts a local server and prints them)'
            )
            if os.environ.get("DINMO_TEST_POSTGRES_REQUIRED") == "1":
                pytest.fail(reason + "; DINMO_TEST_POSTGRES_REQUIRED=1")
            pytest.skip(reason)
        try:
            import dbt.adapters.postgres  # noqa: F401
        except ImportError:
            pytest.fail(
                "DINMO_TEST_POSTGRES_* is set but dbt-postgres is not installed: pip install '.[postgres]'"
            )
        schema = f"dinmo_macros_{secrets.token_hex(4)}"
        env["DINMO_TEST_SCHEMA"] = schema

    project = tmp_path_factory.mktemp(f"macros_{adapter}") / "fixture_project"
    shutil.copytree(
        FIXTURE, project, ignore=shutil.ignore_patterns("target", "dbt_packages", "logs", "*.duckdb")
    )
    (project / "packages.yml").write_text(f"packages:\n  - local: {json.dumps(str(ROOT))}\n")
    (project / "profiles.yml").write_text(_profiles(adapter))

    try:
        deps = _dbt(env, project, "deps")
        assert deps.returncode == 0, deps.stdout + deps.stderr
        assert (project / "dbt_packages" / "dinmo" / "dbt_project.yml").is_file()

        build = _dbt(env, project, "build")
        run_results = project / "target" / "run_results.json"
        assert run_results.is_file(), build.stdout + build.stderr
        manifest = json.loads((project / "target" / "manifest.json").read_text())
        results = {}
        for result in json.loads(run_results.read_text())["results"]:
            node = manifest["nodes"].get(result["unique_id"], {})
            results[node.get("name", result["unique_id"])] = result
        out = Built(adapter, project, env, schema, build, results)
        out.fingerprints.append(_read_fingerprints(out))
        # Rebuild the fingerprint models in another session time zone: fingerprints are stable across runs.
        rerun = _dbt(env, project, "run", "--select", "fingerprints", "typed_fingerprints", tz="Asia/Tokyo")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        out.fingerprints.append(_read_fingerprints(out))
        yield out
    finally:
        if adapter == "postgres":
            _drop_schema(schema)


def _pg_connect() -> Any:
    import psycopg2  # installed with dbt-postgres

    pg = _postgres_env()
    assert pg
    return psycopg2.connect(
        host=pg["HOST"], port=pg["PORT"], user=pg["USER"], password=pg["PASSWORD"], dbname=pg["DB"]
    )


def _drop_schema(schema: str) -> None:
    con = _pg_connect()
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'drop schema if exists "{schema}" cascade')
    finally:
        con.close()


# ------------------------------------------------------------------------------------------------------------
# Generic tests


def test_build_ran_every_expected_test(built: Built) -> None:
    tests = {name for name, r in built.results.items() if r["unique_id"].startswith("test.")}
    assert tests == set(EXPECTED_FAILURES), built.build.stdout[-3000:]
    # everything else (seeds, models) built
    others = [r for r in built.results.values() if not r["unique_id"].startswith("test.")]
    assert others and all(r["status"] == "success" for r in others), built.build.stdout[-3000:]
    # failing tests make `dbt build` fail, as they should
    assert built.build.returncode == 1


@pytest.mark.parametrize("name", sorted(EXPECTED_FAILURES))
def test_generic_test(built: Built, name: str) -> None:
    result = built.results.get(name)
    assert result is not None, f"{name} did not run:\n{built.build.stdout[-3000:]}"
    expected = EXPECTED_FAILURES[name]
    assert result["status"] == ("pass" if expected == 0 else "fail"), result.get("message")
    assert result["failures"] == expected, result.get("message")


def test_braze_identifier_reports_reasons(built: Built) -> None:
    """The failing rows of braze_identifier say why (as `dbt test --store-failures` would show them)."""
    sql = (ROOT / "macros" / "tests" / "braze_identifier.sql").read_text()
    assert "dinmo_failure" in sql
    compiled = next(
        (built.project / "target" / "compiled").rglob("braze_identifier__invalid.sql")
    ).read_text()
    rows = built.query(
        f"select dinmo_failure, count(*) from ({compiled}) as t group by dinmo_failure order by 1"
    )
    assert rows == [("duplicate", 2), ("longer than 255 characters", 1), ("null", 2)]


# ------------------------------------------------------------------------------------------------------------
# Fingerprint


def test_fingerprint_matches_the_documented_encoding(built: Built) -> None:
    text = built.fingerprints[0]["text"]
    assert set(text) == set(TEXT_CASES)
    for case, (a, b) in TEXT_CASES.items():
        assert text[case]["fp"] == md5(a, b), case
        assert text[case]["fp_a"] == md5(a), case


def test_fingerprint_is_collision_safe(built: Built) -> None:
    fp = {case: row["fp"] for case, row in built.fingerprints[0]["text"].items()}
    assert len(set(fp.values())) == len(fp)  # all cases distinct
    assert fp["sep_1"] != fp["sep_2"]  # ('a|', 'b') vs ('a', '|b')
    assert (
        len({fp["null_a"], fp["N_a"], fp["empty_a"], fp["NULL_text_a"]}) == 4
    )  # NULL vs 'N' vs '' vs 'NULL'
    assert fp["both_null"] != fp["both_empty"]
    assert all(re.fullmatch(r"[0-9a-f]{32}", v) for v in fp.values())


def test_fingerprint_is_stable_across_runs(built: Built) -> None:
    first, second = built.fingerprints
    assert first["text"] == second["text"]
    for row in first["typed"]:
        for way in ("relation", "columns", "mapping"):
            assert first["typed"][row][way] == second["typed"][row][way], (row, way)


def test_fingerprint_normalises_types(built: Built) -> None:
    typed = built.fingerprints[0]["typed"]
    assert set(typed) == {"1", "2", "3", "4", "5", "6"}
    for row, fps in typed.items():
        # column types from the relation, from Column objects and from mappings agree
        assert fps["relation"] == fps["columns"] == fps["mapping"], row
    # floats to 9 decimals, timestamptz in UTC with 'Z', timestamps ISO with 'T'; the rest as text
    assert typed["1"]["relation"] == md5(
        "0.333333333", "2024-01-01T10:00:00Z", "2024-01-01T10:00:00.5", "2024-02-29", "12.50", "true", "x"
    )
    # 0.1 + 0.2 (0.30000000000000004) and 0.3 fingerprint alike
    assert typed["2"]["relation"] == typed["3"]["relation"] == md5("0.300000000", *[None] * 6)
    assert typed["4"]["relation"] == md5(*[None] * 7)
    # huge floats and NaN keep their text form instead of failing the cast
    assert len({typed["5"]["relation"], typed["6"]["relation"], typed["4"]["relation"]}) == 3


def test_fingerprint_without_types_depends_on_the_session(built: Built) -> None:
    """Why the types matter: a timestamptz hashed as plain text changes with the session time zone."""
    first, second = (run["typed"]["1"] for run in built.fingerprints)
    assert first["untyped"] != second["untyped"]
    assert first["relation"] == second["relation"]
