"""End to end: subscription statuses and user lists from a dbt segment, and users not yet in Braze.

The real CLI, the sample project built by dbt-duckdb, the emulator on loopback. The segment is
``high_value_customers`` (13 of the 40 customers); ``braze_vip_club_subscription`` subscribes its
members to a subscription group and ``braze_high_value_list`` flags them ``High_Value_Customers``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import Cli, dbt, workspace

pytestmark = pytest.mark.e2e

GROUP = "5d3b7b24-9c1e-4f7a-8b2d-3e6f1a0c9d42"
LIST = "High_Value_Customers"
SUBSCRIPTION = "braze_vip_club_subscription"
USER_LIST = "braze_high_value_list"
SEGMENTS = (SUBSCRIPTION, USER_LIST)
SUB_ENDPOINT = "/v2/subscription/status/set"
EXPORT_ENDPOINT = "/users/export/ids"


def query(project: Path, statement: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(project / "jaffle.duckdb"))
    try:
        return con.execute(statement).fetchall()
    finally:
        con.close()


def members(project: Path) -> list[str]:
    return sorted(r[0] for r in query(project, "select customer_id from high_value_customers"))


def customers(project: Path) -> list[str]:
    return sorted(r[0] for r in query(project, "select customer_id from customers"))


def count(url: str, endpoint: str) -> int:
    return sum(workspace(url)["counters"]["requests"].get(endpoint, {}).values())


def bodies(emulator: Any, endpoint: str) -> list[dict[str, Any]]:
    return [r["body"] for r in emulator.requests(endpoint=endpoint)]


def users_by_id(url: str) -> dict[str, dict[str, Any]]:
    return {u["external_id"]: u for u in workspace(url)["users"].values() if u.get("external_id")}


def run_json(cli: Cli, *args: str, code: int = 0) -> dict[str, dict[str, Any]]:
    result = cli("run", "--output", "json", *args)
    assert result.returncode == code, result.stdout + result.stderr
    return {r["activation"]: r for r in json.loads(result.stdout)["results"]}


def select(*names: str) -> tuple[str, ...]:
    return ("-s", " ".join(names))


def create_in_braze(emulator: Any, ids: list[str]) -> None:
    """Profiles created outside dbt-dinmo (an SDK, another tool)."""
    emulator.workspace.create_users([{"external_id": i} for i in ids])


def test_entries_subscribe_exits_unsubscribe_and_reruns_send_nothing(cli: Cli, emulator: Any) -> None:
    first = run_json(cli)
    assert all(r["status"] == "success" for r in first.values())
    segment = members(cli.project)
    assert len(segment) == 13
    users = users_by_id(cli.url)
    assert len(users) == 40  # only the upsert activation created users
    for external_id, user in users.items():
        if external_id in segment:
            assert user["subscription_groups"].get(GROUP) == "subscribed"
            assert user["custom_attributes"][LIST] is True
        else:  # never members: never touched
            assert GROUP not in user["subscription_groups"]
            assert LIST not in user["custom_attributes"]
    assert first[SUBSCRIPTION]["entered"] == 13 and first[USER_LIST]["entered"] == 13
    assert first[USER_LIST]["attribute_writes"] == 13 and first[SUBSCRIPTION]["attribute_writes"] == 0
    [request] = bodies(emulator, SUB_ENDPOINT)
    assert request == {
        "subscription_groups": [
            {"subscription_group_id": GROUP, "subscription_state": "subscribed", "external_ids": segment}
        ]
    }
    # Users our upsert created during this very run are confirmed once with /users/export/ids
    # (Braze applies /users/track asynchronously); the three update-only activations share it.
    assert count(cli.url, EXPORT_ENDPOINT) == 1
    list_objects = [o for b in bodies(emulator, "/users/track") for o in b.get("attributes", []) if LIST in o]
    assert sorted(o["external_id"] for o in list_objects) == segment
    assert all(
        o["_update_existing_only"] is True and set(o) == {"external_id", LIST, "_update_existing_only"}
        for o in list_objects
    )

    before = {e: count(cli.url, e) for e in ("/users/track", SUB_ENDPOINT, EXPORT_ENDPOINT)}
    rerun = run_json(cli)
    assert {e: count(cli.url, e) for e in before} == before  # the same segment: nothing sent at all
    assert rerun[SUBSCRIPTION]["unchanged"] == 13 and rerun[SUBSCRIPTION]["entered"] == 0

    leaving = segment[0]
    joining = next(c for c in customers(cli.project) if c not in segment)
    query(cli.project, f"delete from high_value_customers where customer_id = '{leaving}'")
    query(
        cli.project,
        f"insert into high_value_customers select customer_id, lifetime_value from customers where customer_id = '{joining}'",
    )
    changed = run_json(cli, *select(*SEGMENTS))
    assert (changed[SUBSCRIPTION]["entered"], changed[SUBSCRIPTION]["exited"]) == (1, 1)
    assert (changed[USER_LIST]["entered"], changed[USER_LIST]["exited"]) == (1, 1)
    sub_requests = bodies(emulator, SUB_ENDPOINT)[1:]
    assert sorted(
        (
            r["subscription_groups"][0]["subscription_state"],
            tuple(r["subscription_groups"][0]["external_ids"]),
        )
        for r in sub_requests
    ) == [
        ("subscribed", (joining,)),
        ("unsubscribed", (leaving,)),
    ]
    [track] = bodies(emulator, "/users/track")[before["/users/track"] :]
    assert sorted(track["attributes"], key=lambda o: o["external_id"]) == sorted(
        [
            {"external_id": joining, LIST: True, "_update_existing_only": True},
            {"external_id": leaving, LIST: False, "_update_existing_only": True},
        ],
        key=lambda o: o["external_id"],
    )
    users = users_by_id(cli.url)
    assert users[leaving]["subscription_groups"][GROUP] == "unsubscribed"
    assert users[leaving]["custom_attributes"][LIST] is False
    assert users[joining]["subscription_groups"][GROUP] == "subscribed"
    assert users[joining]["custom_attributes"][LIST] is True
    history = json.loads(cli("history", "-s", SUBSCRIPTION, "--output", "json").stdout)
    assert (history[0]["entered"], history[0]["exited"], history[0]["waiting"]) == (1, 1, 0)
    assert history[-1]["entered"] == 13
    list_history = json.loads(cli("history", "-s", USER_LIST, "--output", "json").stdout)
    assert list_history[-1]["export_calls"] == 1  # the first update-only activation checked them


def test_segments_never_create_users_and_wait_for_profiles(cli: Cli, emulator: Any) -> None:
    segment = members(cli.project)
    first = run_json(cli, *select(*SEGMENTS, "braze_vip_flags"))
    assert workspace(cli.url)["users"] == {}
    assert workspace(cli.url)["counters"].get("users_created", 0) == 0
    for name in (*SEGMENTS, "braze_vip_flags"):
        assert first[name]["status"] == "success"  # waiting is not a failure
        assert first[name]["waiting"] == 13 and first[name]["entered"] + first[name]["updated"] == 0
        assert "waiting for a Braze profile" in first[name]["message"]
    assert sum(r["export_calls"] for r in first.values()) == 1  # checked once for all three
    assert count(cli.url, SUB_ENDPOINT) == 0 and count(cli.url, "/users/track") == 0
    rejected = json.loads(cli("history", "--run", _last_run(cli), "--output", "json").stdout)
    waiting = [r for r in rejected if r["origin"] == "waiting" and r["activation"] == SUBSCRIPTION]
    assert sorted(r["identifier"] for r in waiting) == segment

    plan = cli("plan", *select(*SEGMENTS), "--output", "json")
    planned = {r["activation"]: r for r in json.loads(plan.stdout)["results"]}
    assert planned[SUBSCRIPTION]["waiting"] == planned[USER_LIST]["waiting"] == 13  # at the last check
    # the plan counts each user to check once: the first activation checks, the second reuses it
    assert planned[USER_LIST]["profiles_checked"] + planned[SUBSCRIPTION]["profiles_checked"] == 13
    assert planned[SUBSCRIPTION]["export_calls"] + planned[USER_LIST]["export_calls"] == 1
    text = cli("plan", *select(SUBSCRIPTION)).stdout
    assert "/users/export/ids" in text and "not found at their last check" in text

    create_in_braze(emulator, segment[:2])  # two profiles appear outside dbt-dinmo
    second = run_json(cli, *select(*SEGMENTS))
    assert second[SUBSCRIPTION]["entered"] == 2 and second[SUBSCRIPTION]["waiting"] == 11
    assert second[USER_LIST]["entered"] == 2 and second[USER_LIST]["waiting"] == 11
    users = users_by_id(cli.url)
    assert set(users) == set(segment[:2])
    assert all(u["subscription_groups"] == {GROUP: "subscribed"} for u in users.values())

    upsert = run_json(cli, *select("braze_customer_attributes"))  # our upsert creates everyone
    assert upsert["braze_customer_attributes"]["inserted"] == 40
    exports = count(cli.url, EXPORT_ENDPOINT)
    third = run_json(cli, *select(*SEGMENTS))
    assert third[SUBSCRIPTION]["entered"] == 11 and third[SUBSCRIPTION]["waiting"] == 0
    assert third[USER_LIST]["entered"] == 11
    assert count(cli.url, EXPORT_ENDPOINT) == exports  # known from our upsert's last run: no check
    assert all(users_by_id(cli.url)[m]["subscription_groups"][GROUP] == "subscribed" for m in segment)
    assert third[SUBSCRIPTION]["retried"] == 11  # waiting last run, sent now


def _last_run(cli: Cli) -> str:
    return str(json.loads(cli("history", "--output", "json").stdout)[0]["run_id"])


def test_update_mode_reaches_a_profile_created_later(cli: Cli, emulator: Any) -> None:
    segment = members(cli.project)
    first = run_json(cli, *select("braze_vip_flags"))["braze_vip_flags"]
    assert (first["updated"], first["waiting"]) == (0, 13)
    assert count(cli.url, "/users/track") == 0  # nothing sent to users Braze does not have
    create_in_braze(emulator, [segment[3]])
    second = run_json(cli, *select("braze_vip_flags"))["braze_vip_flags"]
    assert (second["updated"], second["waiting"], second["profiles_checked"]) == (1, 12, 13)
    ltv = query(
        cli.project, f"select lifetime_value from high_value_customers where customer_id = '{segment[3]}'"
    )[0][0]
    assert users_by_id(cli.url)[segment[3]]["custom_attributes"]["high_value_ltv"] == float(ltv)
    third = run_json(cli, *select("braze_vip_flags"))["braze_vip_flags"]
    assert (third["updated"], third["unchanged"], third["waiting"]) == (0, 1, 12)


def test_missing_permission_stops_only_that_activation(cli: Cli, emulator: Any) -> None:
    no_subscriptions = "limited-" + cli.api_key
    track_only = "track-" + cli.api_key
    emulator.update_settings(
        api_keys={
            cli.api_key: None,
            no_subscriptions: frozenset({"users.track", "users.export.ids"}),
            track_only: frozenset({"users.track"}),
        }
    )
    result = cli("run", "--output", "json", env=cli.env(BRAZE_API_KEY=no_subscriptions))
    assert result.returncode == 1
    runs = {r["activation"]: r for r in json.loads(result.stdout)["results"]}
    assert runs[SUBSCRIPTION]["status"] == "error"
    assert "subscription.status.set" in runs[SUBSCRIPTION]["message"]
    assert all(r["status"] == "success" for n, r in runs.items() if n != SUBSCRIPTION)
    assert no_subscriptions not in result.stdout + result.stderr
    assert count(cli.url, SUB_ENDPOINT) == 1  # the one refused request, then it stopped
    validate = cli("validate", env=cli.env(BRAZE_API_KEY=no_subscriptions))
    assert validate.returncode == 1
    assert "MISSING braze: subscription.status.set" in validate.stdout
    assert "OK braze: users.export.ids" in validate.stdout
    again = run_json(cli, *select(SUBSCRIPTION))  # the full key: nothing was recorded, all sent
    assert again[SUBSCRIPTION]["entered"] == 13

    # Users known from our upsert need no check, so a key without users.export.ids still works...
    joining = next(c for c in customers(cli.project) if c not in members(cli.project))
    query(
        cli.project,
        f"insert into high_value_customers select customer_id, lifetime_value from customers where customer_id = '{joining}'",
    )
    ok = cli("run", *select(USER_LIST), env=cli.env(BRAZE_API_KEY=track_only))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # ...until a user must be checked: a new profile outside dbt-dinmo
    create_in_braze(emulator, ["OUTSIDE-1"])
    query(cli.project, "insert into high_value_customers values ('OUTSIDE-1', 999)")
    denied = cli("run", "--output", "json", *select(USER_LIST), env=cli.env(BRAZE_API_KEY=track_only))
    assert denied.returncode == 1
    [res] = json.loads(denied.stdout)["results"]
    assert res["status"] == "error" and "users.export.ids" in res["message"]
    assert LIST not in users_by_id(cli.url)["OUTSIDE-1"]["custom_attributes"]


def test_exit_guard_refuses_an_empty_segment(cli: Cli, emulator: Any) -> None:
    assert run_json(cli)[SUBSCRIPTION]["entered"] == 13
    query(cli.project, "delete from high_value_customers")
    blocked = cli("run", *select(*SEGMENTS))
    assert blocked.returncode == 1
    assert "no members" in blocked.stdout and "--allow-deletes" in blocked.stdout
    assert count(cli.url, SUB_ENDPOINT) == 1  # no unsubscription was sent
    assert all(u["custom_attributes"].get(LIST) is not False for u in users_by_id(cli.url).values())
    passed = run_json(cli, *select(*SEGMENTS), "--allow-deletes")
    assert passed[SUBSCRIPTION]["exited"] == 13 and passed[USER_LIST]["exited"] == 13
    states = [u["subscription_groups"].get(GROUP) for u in users_by_id(cli.url).values()]
    assert states.count("unsubscribed") == 13 and "subscribed" not in states


SEGMENT_PROJECT = {
    "dbt_project.yml": "name: seg\nversion: '1.0.0'\nconfig-version: 2\nprofile: seg\nmodels:\n  seg:\n    +materialized: table\n",
    "profiles.yml": "seg:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: seg.duckdb\n      threads: 1\n",
    "models/members.sql": "select 'm' || lpad(cast(i as varchar), 4, '0') as member_id from range(260) t(i)\n",
    "models/exposures.yml": (
        "version: 2\nexposures:\n  - name: club\n    type: application\n    owner: {name: t, email: t@example.com}\n"
        "    depends_on: [ref('members')]\n    config:\n      meta:\n        dinmo:\n          destination: braze\n"
        f"          service: subscription_status\n          subscription_group_id: '{GROUP}'\n"
        "          identifier: {column: member_id}\n"
    ),
    "dinmo.yml": (
        "destinations:\n  braze:\n    type: braze\n    rest_url: \"{{ env_var('BRAZE_REST_URL') }}\"\n"
        "    api_key: \"{{ env_var('BRAZE_API_KEY') }}\"\n    max_in_flight: 1\n"
    ),
}


def test_a_failed_send_resends_only_what_braze_did_not_acknowledge(
    tmp_path: Path, emulator: Any, api_key: str
) -> None:
    project = tmp_path / "seg"
    for name, text in SEGMENT_PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    assert dbt(project, "build").returncode == 0
    ids = [f"m{i:04d}" for i in range(260)]
    create_in_braze(emulator, ids)
    cli = Cli(project, emulator.url, api_key)
    # Two requests succeed, then Braze keeps failing: retries are exhausted and the run stops.
    emulator.add_faults([{"kind": "status", "status": 503, "path": SUB_ENDPOINT, "after": 2, "times": 50}])
    failed = cli("run", "--output", "json")
    assert failed.returncode == 1
    [res] = json.loads(failed.stdout)["results"]
    assert res["status"] == "error" and res["entered"] == 100
    emulator.clear_faults()
    rerun = json.loads(cli("run", "--output", "json").stdout)["results"][0]
    assert (rerun["entered"], rerun["unchanged"], rerun["requests"]) == (160, 100, 4)
    sent = [i for b in bodies(emulator, SUB_ENDPOINT) for i in b["subscription_groups"][0]["external_ids"]]
    accepted = sent[:100] + sent[-160:]
    assert sorted(accepted) == ids  # everyone subscribed, the acknowledged ones only once
    assert all(u["subscription_groups"] == {GROUP: "subscribed"} for u in users_by_id(emulator.url).values())


def test_kill_mid_send_then_rerun_loses_nothing(tmp_path: Path, emulator: Any, api_key: str) -> None:
    import os
    import signal
    import time

    project = tmp_path / "seg"
    for name, text in SEGMENT_PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text.replace("range(260)", "range(1500)"))
    assert dbt(project, "build").returncode == 0
    ids = [f"m{i:04d}" for i in range(1500)]
    create_in_braze(emulator, ids)
    cli = Cli(project, emulator.url, api_key)
    emulator.add_faults([{"kind": "delay", "path": SUB_ENDPOINT, "seconds": 0.15, "times": 1000}])
    proc = cli.popen("run")
    deadline = time.time() + 120
    while time.time() < deadline and count(emulator.url, SUB_ENDPOINT) < 8:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    emulator.clear_faults()
    sent_before = count(emulator.url, SUB_ENDPOINT)
    assert 8 <= sent_before < 30
    rerun = json.loads(cli("run", "--output", "json").stdout)["results"][0]
    assert rerun["status"] == "success"
    users = users_by_id(emulator.url)
    assert all(users[i]["subscription_groups"] == {GROUP: "subscribed"} for i in ids)  # nothing lost
    # only the request in flight at the kill (max_in_flight 1) may have been sent twice
    assert rerun["entered"] + (sent_before - 1) * 50 <= 1500 <= rerun["entered"] + sent_before * 50
