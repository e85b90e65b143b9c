"""dbt-native behaviour through the real CLI: selection, gating on the last build, schedules, JSON logs."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Cli, dbt, workspace

pytestmark = pytest.mark.e2e


def test_failed_dbt_test_skips_only_the_dependent_activation(cli: Cli) -> None:
    (cli.project / "tests").mkdir(exist_ok=True)
    (cli.project / "tests/no_vip_left.sql").write_text("select * from {{ ref('high_value_customers') }}\n")
    build = dbt(cli.project, "build", check=False)
    assert build.returncode == 1  # the singular test fails
    result = cli("run", "--output", "json")
    assert result.returncode == 1, result.stderr
    by_name = {r["activation"]: r for r in json.loads(result.stdout)["results"]}
    assert by_name["braze_vip_flags"]["status"] == "skipped"
    assert "test.jaffle_dinmo.no_vip_left (fail)" in by_name["braze_vip_flags"]["message"]
    assert by_name["braze_customer_attributes"]["status"] == "success"
    assert by_name["braze_newsletter_mirror"]["status"] == "success"
    history = json.loads(cli("history", "-s", "braze_vip_flags", "--output", "json").stdout)
    assert history[0]["status"] == "skipped"
    artifact = json.loads((cli.project / "target/dinmo/run_results.json").read_text())
    assert {r["status"] for r in artifact["results"]} == {"success", "skipped"}
    forced = cli("run", "-s", "braze_vip_flags", "--ignore-dbt-failures", "--output", "json")
    assert json.loads(forced.stdout)["results"][0]["status"] == "success"


def test_selection_by_tag_and_graph(cli: Cli) -> None:
    def ls(*args: str) -> list[str]:
        result = cli("ls", "--output", "json", *args)
        assert result.returncode == 0, result.stderr
        return [row["name"] for row in json.loads(result.stdout)]

    dbt_results = (cli.project / "target/run_results.json").read_bytes()
    dbt_manifest = (cli.project / "target/manifest.json").read_bytes()
    segments = ["braze_high_value_list", "braze_vip_club_subscription", "braze_vip_flags"]
    assert ls("-s", "tag:segments") == segments
    assert ls("-s", "high_value_customers+") == segments
    assert ls("-s", "customers+", "--exclude", "tag:crm") == sorted(["braze_newsletter_mirror", *segments])
    assert ls("-s", "tag:braze,tag:newsletter") == ["braze_newsletter_mirror"]
    result = cli("run", "-s", "newsletter_customers+", "--output", "json")
    assert [r["activation"] for r in json.loads(result.stdout)["results"]] == ["braze_newsletter_mirror"]
    assert (cli.project / "target/run_results.json").read_bytes() == dbt_results  # dbt's files untouched
    assert (cli.project / "target/manifest.json").read_bytes() == dbt_manifest


def test_schedule_not_due_is_skipped_and_all_overrides(cli: Cli) -> None:
    exposures = cli.project / "models/exposures.yml"
    exposures.write_text(
        exposures.read_text().replace("sync_mode: update", "sync_mode: update\n          schedule: '0 0 1 1 *'")
    )
    assert dbt(cli.project, "parse").returncode == 0
    first = json.loads(cli("run", "--output", "json").stdout)
    assert "braze_vip_flags" in [r["activation"] for r in first["results"]]  # never run: due
    second = json.loads(cli("run", "--output", "json").stdout)
    ran = [r["activation"] for r in second["results"]]
    assert "braze_vip_flags" not in ran
    assert {"braze_customer_attributes", "braze_newsletter_mirror"} <= set(ran)
    assert second["not_due"][0]["activation"] == "braze_vip_flags"
    assert second["not_due"][0]["next_due"].endswith("-01-01T00:00:00Z")
    listing = json.loads(cli("ls", "--output", "json", "-s", "braze_vip_flags").stdout)
    assert listing[0]["next_due"] != "now" and listing[0]["last_status"] == "success"
    forced = json.loads(cli("run", "--all", "--output", "json").stdout)
    assert "braze_vip_flags" in [r["activation"] for r in forced["results"]]


def test_json_logs_use_dbts_envelope(cli: Cli) -> None:
    result = cli("run", "--log-format", "json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert events, "no JSON log lines"
    run_ids = set()
    for event in events:
        info = event["info"]
        assert {"name", "code", "level", "msg", "ts", "invocation_id"} <= set(info)
        assert info["name"].startswith("Dinmo") and isinstance(event["data"], dict)
        run_ids.add(info["invocation_id"])
    assert len(run_ids) == 1
    names = [e["info"]["name"] for e in events]
    assert names[-1] == "DinmoRunResult" and names.count("DinmoActivationResult") == 7
    final = events[-1]["data"]
    assert final["run_id"] in run_ids and final["status"] == "success"
    assert len(workspace(cli.url)["users"]) == 40
    bad = cli("run", "--log-format", "json", env=cli.env(BRAZE_REST_URL="http://example.com"))
    assert bad.returncode == 2
    problem = json.loads(bad.stdout.splitlines()[0])
    assert problem["info"]["name"] == "DinmoProblem" and problem["data"]["key"] == "destinations.braze.rest_url"
