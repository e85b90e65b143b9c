"""End to end: the real CLI, a dbt-duckdb project built by dbt, the emulator on loopback."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.conftest import Cli, dbt, make_mini_project, workspace

pytestmark = pytest.mark.e2e


def track_requests(url: str) -> int:
    per_status = workspace(url)["counters"]["requests"].get("/users/track", {})
    return sum(per_status.values())


def data_points(url: str) -> int:
    return int(workspace(url)["counters"]["data_points"]["total"])


def user(url: str, external_id: str) -> dict:
    users = workspace(url)["users"].values()
    found = [u for u in users if u.get("external_id") == external_id]
    assert found, f"{external_id} not in the emulator"
    return {**found[0]["standard_attributes"], **found[0]["custom_attributes"]}


def sql(project: Path, statement: str, db: str = "jaffle.duckdb") -> None:
    con = duckdb.connect(str(project / db))
    con.execute(statement)
    con.close()


def last_track_bodies(url: str, n: int = 1) -> list[dict]:
    log = httpx.get(f"{url}/_emulator/requests", timeout=10).json()
    entries = log["requests"] if isinstance(log, dict) else log
    bodies = [e["body"] for e in entries if e["endpoint"] == "/users/track"]
    return bodies[-n:]


def test_first_sync_noop_rerun_and_one_changed_value(cli: Cli) -> None:
    first = cli("run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(workspace(cli.url)["users"]) == 40
    c001 = user(cli.url, "C001")
    assert c001["first_name"] and isinstance(c001["lifetime_value"], (int, float))
    assert isinstance(c001["favorite_categories"], list) and isinstance(c001["address"], dict)
    assert c001["first_order_at"].endswith("Z")
    artifact = json.loads((cli.project / "target/dinmo/run_results.json").read_text())
    assert {r["unique_id"] for r in artifact["results"]} >= {
        "exposure.jaffle_dinmo.braze_customer_attributes"
    }
    assert artifact["results"][0]["adapter_response"]["inserted"] == 40

    requests, points = track_requests(cli.url), data_points(cli.url)
    again = cli("run")
    assert again.returncode == 0, again.stdout + again.stderr
    assert track_requests(cli.url) == requests  # the no-op rerun sends nothing

    sql(cli.project, "update customers set first_name = 'Zoé' where customer_id = 'C001'")
    third = cli("run", "--output", "json")
    assert third.returncode == 0, third.stderr
    assert track_requests(cli.url) == requests + 1
    assert data_points(cli.url) == points + 1  # exactly one attribute write
    [body] = last_track_bodies(cli.url)
    assert body == {"attributes": [{"external_id": "C001", "first_name": "Zoé"}]}
    summary = json.loads(third.stdout)
    attrs = next(r for r in summary["results"] if r["activation"] == "braze_customer_attributes")
    assert (attrs["updated"], attrs["attribute_writes"], attrs["unchanged"]) == (1, 1, 39)


def test_new_mapped_column_backfills_only_that_attribute(cli: Cli) -> None:
    assert cli("run").returncode == 0
    exposures = cli.project / "models/exposures.yml"
    exposures.write_text(
        exposures.read_text().replace("address: address", "address: address\n            city: home_city")
    )
    sql(cli.project, "create or replace table customers as select *, address.city as city from customers")
    assert dbt(cli.project, "parse").returncode == 0
    result = cli("run", "-s", "braze_customer_attributes")
    assert result.returncode == 0, result.stdout + result.stderr
    [body] = last_track_bodies(cli.url)
    con = duckdb.connect(str(cli.project / "jaffle.duckdb"))
    with_city = con.execute("select count(*) from customers where city is not null").fetchall()[0][0]
    con.close()
    assert len(body["attributes"]) == with_city  # a never-set null is not sent
    assert all(set(obj) == {"external_id", "home_city"} for obj in body["attributes"])


def test_plan_sends_nothing_and_shows_costs(cli: Cli) -> None:
    result = cli("plan", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert track_requests(cli.url) == 0
    plan = json.loads(result.stdout)
    attrs = next(r for r in plan["results"] if r["activation"] == "braze_customer_attributes")
    assert attrs["inserted"] == 40 and attrs["attribute_writes"] > 40 and attrs["samples"]
    assert cli("run").returncode == 0
    assert data_points(cli.url) == sum(r["attribute_writes"] for r in plan["results"])


def test_mirror_deletes_behind_the_guard(cli: Cli) -> None:
    assert cli("run").returncode == 0
    sql(
        cli.project,
        "delete from newsletter_customers where customer_id in "
        "(select customer_id from newsletter_customers order by customer_id limit 10)",
    )
    blocked = cli("run", "-s", "braze_newsletter_mirror")
    assert blocked.returncode == 1
    assert "max_deletes" in blocked.stdout and "--allow-deletes" in blocked.stdout
    assert workspace(cli.url)["counters"]["deletions"] == 0
    plan = cli("plan", "-s", "braze_newsletter_mirror")
    assert "blocked" in plan.stdout
    allowed = cli("run", "-s", "braze_newsletter_mirror", "--allow-deletes")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert workspace(cli.url)["counters"]["deletions"] == 10
    # within the guard (1 of 7 is under 50%): no flag needed
    sql(
        cli.project,
        "delete from newsletter_customers where customer_id = "
        "(select min(customer_id) from newsletter_customers)",
    )
    assert cli("run", "-s", "braze_newsletter_mirror").returncode == 0
    assert workspace(cli.url)["counters"]["deletions"] == 11


def test_rejected_rows_are_reported_and_retried_once_fixed(cli: Cli) -> None:
    sql(cli.project, "update customers set country = 'France' where customer_id = 'C002'")
    sql(cli.project, "update customers set customer_id = NULL where customer_id = 'C003'")
    bad = cli("run", "-s", "braze_customer_attributes")
    assert bad.returncode == 1
    assert "C002" in bad.stdout and "ISO-3166" in bad.stdout
    assert "identifier column customer_id is null" in bad.stdout
    assert len(workspace(cli.url)["users"]) == 38
    history = cli("history", "--output", "json")
    run_id = json.loads(history.stdout)[0]["run_id"]
    rejected = json.loads(cli("history", "--run", run_id, "--output", "json").stdout)
    assert any(r["identifier"] == "C002" and "ISO-3166" in r["reason"] for r in rejected)

    sql(cli.project, "update customers set country = 'FR' where customer_id = 'C002'")
    fixed = cli("run", "-s", "braze_customer_attributes", "--output", "json")
    summary = json.loads(fixed.stdout)["results"][0]
    assert summary["retried"] == 1 and summary["inserted"] == 1
    assert user(cli.url, "C002")["country"] == "FR"


def test_recovers_from_429_5xx_and_dropped_connections(cli: Cli, emulator: object) -> None:
    emulator.add_faults(
        [  # type: ignore[attr-defined]
            {"kind": "rate_limit", "path": "/users/track", "seconds": 1},
            {"kind": "status", "path": "/users/track", "status": 503, "times": 2},
            {"kind": "drop", "path": "/users/track"},
            {"kind": "lost_ack", "path": "/users/track"},
        ]
    )
    result = cli("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(workspace(cli.url)["users"]) == 40
    statuses = workspace(cli.url)["counters"]["requests"]["/users/track"]
    assert statuses.get("429") == 1 and statuses.get("503") == 2
    assert cli("run").returncode == 0


def test_kill_mid_run_then_rerun_loses_nothing(tmp_path: Path, emulator: object, api_key: str) -> None:
    project = make_mini_project(tmp_path / "mini", rows=3000, in_flight=2)
    cli = Cli(project, emulator.url, api_key)  # type: ignore[attr-defined]
    emulator.add_faults([{"kind": "delay", "path": "/users/track", "seconds": 0.15, "times": 1000}])  # type: ignore[attr-defined]
    proc = cli.popen("run")
    deadline = time.time() + 120
    while (
        time.time() < deadline and workspace(cli.url)["counters"]["objects"]["attributes"]["processed"] < 900
    ):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    processed = workspace(cli.url)["counters"]["objects"]["attributes"]["processed"]
    assert 0 < processed < 3000
    emulator.clear_faults()  # type: ignore[attr-defined]
    rerun = cli("run")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    ws = workspace(cli.url)
    assert len(ws["users"]) == 3000
    assert all(
        u["custom_attributes"]["score"] == int(u["external_id"][1:]) % 97 for u in ws["users"].values()
    )
    total = ws["counters"]["objects"]["attributes"]["processed"]
    assert total <= 3000 + 2 * 75  # at most the in-flight batches were sent twice
    assert track_requests(cli.url) > 0 and cli("run").returncode == 0


def test_two_concurrent_runs_the_second_refuses(tmp_path: Path, emulator: object, api_key: str) -> None:
    project = make_mini_project(tmp_path / "mini", rows=1500, in_flight=1)
    cli = Cli(project, emulator.url, api_key)  # type: ignore[attr-defined]
    emulator.add_faults([{"kind": "delay", "path": "/users/track", "seconds": 0.2, "times": 100}])  # type: ignore[attr-defined]
    first = cli.popen("run")
    deadline = time.time() + 60
    while time.time() < deadline and track_requests(cli.url) < 1:
        time.sleep(0.05)
    second = cli("run")
    assert second.returncode == 2
    assert "another dbt-dinmo run" in second.stderr or "in use by another" in second.stderr
    assert first.wait(timeout=120) == 0


def test_bad_config_lists_every_problem_and_sends_nothing(cli: Cli) -> None:
    exposures = cli.project / "models/exposures.yml"
    text = exposures.read_text().replace("first_name: first_name", "no_such_column: first_name", 1)
    text = text.replace("sync_mode: update", "sync_mode: updat")
    exposures.write_text(text)
    assert dbt(cli.project, "parse").returncode == 0
    env = cli.env()
    del env["BRAZE_API_KEY"]
    result = cli("run", env=env)
    assert result.returncode == 2
    err = result.stderr
    # every problem at once: static ones and the column only the warehouse can check
    assert "exposure braze_vip_flags" in err and "sync_mode" in err
    assert "BRAZE_API_KEY" in err
    assert "no_such_column" in err and "exposure braze_customer_attributes" in err
    assert "problem(s) found; nothing was sent" in err
    validate = cli("validate", env=env)
    assert validate.returncode == 2 and "no_such_column" in validate.stderr
    assert track_requests(cli.url) == 0


def test_missing_permission_stops_the_activation_naming_it(cli: Cli, emulator: object) -> None:
    limited = "limited-" + cli.api_key
    emulator.update_settings(api_keys={cli.api_key: None, limited: frozenset({"users.track"})})  # type: ignore[attr-defined]
    assert cli("run").returncode == 0
    sql(
        cli.project,
        "delete from newsletter_customers where customer_id = "
        "(select min(customer_id) from newsletter_customers)",
    )
    result = cli("run", "-s", "braze_newsletter_mirror", env=cli.env(BRAZE_API_KEY=limited))
    assert result.returncode == 1
    assert "users.delete" in result.stdout
    assert limited not in result.stdout + result.stderr


def test_the_api_key_never_leaks(cli: Cli, emulator: object) -> None:
    outputs = []
    for args in (("run",), ("plan",), ("history",), ("validate",), ("ls",)):
        result = cli(*args)
        outputs.append(result.stdout + result.stderr)
    wrong = "wrong-" + cli.api_key
    bad = cli("run", "--full-refresh", env=cli.env(BRAZE_API_KEY=wrong))
    assert bad.returncode == 1 and "401" in bad.stdout + bad.stderr
    outputs.append(bad.stdout + bad.stderr)
    for text in outputs:
        assert cli.api_key not in text and wrong not in text
    for path in cli.project.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert cli.api_key.encode() not in data, path
            assert wrong.encode() not in data, path


def test_ctrl_c_records_what_was_acknowledged_and_the_rerun_finishes(
    tmp_path: Path, emulator: object, api_key: str
) -> None:
    project = make_mini_project(tmp_path / "mini", rows=2000, in_flight=2)
    cli = Cli(project, emulator.url, api_key)  # type: ignore[attr-defined]
    emulator.add_faults([{"kind": "delay", "path": "/users/track", "seconds": 0.2, "times": 1000}])  # type: ignore[attr-defined]
    proc = cli.popen("run")
    deadline = time.time() + 120
    while time.time() < deadline and workspace(cli.url)["counters"]["objects"]["attributes"]["processed"] < 450:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "Interrupted" in stderr
    history = json.loads(cli("history", "--output", "json").stdout)
    assert history[0]["status"] == "error" and history[0]["message"] == "interrupted"
    assert 0 < history[0]["inserted"] < 2000  # acknowledged batches were recorded
    emulator.clear_faults()  # type: ignore[attr-defined]
    rerun = json.loads(cli("run", "--output", "json").stdout)["results"][0]
    assert rerun["inserted"] == 2000 - history[0]["inserted"]  # only what was not acknowledged
    assert len(workspace(cli.url)["users"]) == 2000
