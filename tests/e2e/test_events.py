"""End to end: custom events and purchases through the real CLI, dbt-duckdb and the emulator.

The sample project's ``braze_order_placed`` (custom events from ``orders``, cursor ``ordered_at``
with a 3-day lookback) and ``braze_order_purchases`` (purchases from ``order_items``, no cursor).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import Cli, dbt, workspace

pytestmark = pytest.mark.e2e

EVENTS = "braze_order_placed"
PURCHASES = "braze_order_purchases"


def events(emulator: Any) -> list[dict[str, Any]]:
    return list(emulator.workspace.events())


def purchases(emulator: Any) -> list[dict[str, Any]]:
    return list(emulator.workspace.purchases())


def track_requests(url: str) -> int:
    return sum(workspace(url)["counters"]["requests"].get("/users/track", {}).values())


def query(project: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(project / "jaffle.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def execute(project: Path, sql: str) -> None:
    con = duckdb.connect(str(project / "jaffle.duckdb"))
    try:
        con.execute(sql)
    finally:
        con.close()


def summary(result: Any, name: str) -> dict[str, Any]:
    assert result.stdout.strip(), result.stderr
    doc = json.loads(result.stdout)
    return next(r for r in doc["results"] if r["activation"] == name)


def append_orders(project: Path, *rows: str) -> None:
    """Append rows to the raw_orders seed and rebuild it and the orders model with dbt."""
    seed = project / "seeds/raw_orders.csv"
    seed.write_text(seed.read_text().rstrip("\n") + "\n" + "\n".join(rows) + "\n")
    build = dbt(project, "build", "-s", "raw_orders", "orders", check=False)
    assert build.returncode == 0, build.stdout + build.stderr


def set_backfill(project: Path, value: str) -> None:
    exposures = project / "models/exposures.yml"
    text = exposures.read_text()
    assert "backfill: true " in text
    exposures.write_text(text.replace("backfill: true ", f"backfill: {value} ", 1))
    assert dbt(project, "parse").returncode == 0


def test_first_run_sends_every_event_once_then_reruns_send_none(cli: Cli, emulator: Any) -> None:
    plan = cli("plan", "-s", f"{EVENTS} {PURCHASES}", "--output", "json")
    assert plan.returncode == 0, plan.stderr
    planned = summary(plan, EVENTS)
    assert (planned["inserted"], planned["attribute_writes"]) == (120, 120 * 4)  # 1 + 3 properties
    assert planned["samples"][0]["name"] == "order_placed"
    assert track_requests(cli.url) == 0  # a plan sends nothing

    first = cli("run", "--output", "json")
    assert first.returncode == 0, first.stdout + first.stderr
    got = events(emulator)
    model = query(cli.project, "select order_id, customer_id, ordered_at, amount, status from orders")
    assert len(got) == len(model) == 120
    expected = Counter((c, t.strftime("%Y-%m-%dT%H:%M:%SZ"), float(a), s) for _, c, t, a, s in model)
    sent = Counter(
        (e["external_id"], e["time"], e["properties"]["order_total"], e["properties"]["status"]) for e in got
    )
    assert sent == expected and {e["name"] for e in got} == {"order_placed"}
    items = query(cli.project, "select count(*), sum(quantity) from order_items")[0]
    assert len(purchases(emulator)) == items[0] == 236
    assert {p["currency"] for p in purchases(emulator)} == {"EUR"}
    assert sum(p["quantity"] for p in purchases(emulator)) == items[1]
    ws = workspace(cli.url)
    assert len(ws["users"]) == 40  # events went to the existing customers
    points = ws["counters"]["data_points"]
    assert points["events"] == summary(first, EVENTS)["attribute_writes"] == 480
    assert points["purchases"] == summary(first, PURCHASES)["attribute_writes"]
    # attributes, events and purchases shared requests: fewer than one activation at a time needs
    requests = track_requests(cli.url)
    results = json.loads(first.stdout)["results"]
    per_activation = sum(-(-(r["inserted"] + r["updated"]) // 75) for r in results)
    assert requests < per_activation
    bodies = [e["body"] for e in emulator.requests(endpoint="/users/track")]
    assert any({"attributes", "events", "purchases"} <= set(b) for b in bodies)

    again = cli("run", "--output", "json")
    assert again.returncode == 0, again.stderr
    assert track_requests(cli.url) == requests  # nothing new: no request at all
    rerun = summary(again, EVENTS)
    assert rerun["inserted"] == 0 and rerun["unchanged"] == rerun["source_rows"] == 1  # the window only
    assert summary(again, PURCHASES)["unchanged"] == 236
    history = json.loads(cli("history", "-s", EVENTS, "--output", "json").stdout)
    assert [h["inserted"] for h in history[:2]] == [0, 120]


def test_appended_late_and_old_rows_with_the_cursor_window(cli: Cli, emulator: Any) -> None:
    assert cli("run", "-s", EVENTS).returncode == 0  # watermark: 2025-03-14 18:53:03
    assert len(events(emulator)) == 120

    append_orders(cli.project, "O0121,C001,2025-03-20 10:00:00,12.50,placed,coffee")
    new = cli("run", "-s", EVENTS, "--output", "json")
    assert new.returncode == 0, new.stderr
    got = events(emulator)
    assert len(got) == 121 and got[-1]["time"] == "2025-03-20T10:00:00Z"
    # only the window was read: rows from 2025-03-11 18:53:03 (watermark minus 3 days)
    assert summary(new, EVENTS)["source_rows"] == 2

    append_orders(
        cli.project,
        "O0122,C002,2025-03-18 08:00:00,20.00,placed,tea",  # late, inside the 3-day lookback
        "O0123,C003,2025-03-01 09:00:00,30.00,placed,tea",  # older than the window
    )
    late = cli("run", "-s", EVENTS, "--output", "json", "--log-level", "debug")
    assert late.returncode == 0, late.stderr
    times = [e["time"] for e in events(emulator)]
    assert len(times) == 122 and "2025-03-18T08:00:00Z" in times and "2025-03-01T09:00:00Z" not in times
    assert summary(late, EVENTS)["source_rows"] == 2  # O0121 and O0122: O0123 was never read
    assert "'2025-03-17 10:00:00.000000'" in late.stderr  # the filter is in the warehouse SQL
    assert "reading rows with ordered_at >= 2025-03-17 10:00:00" in late.stderr

    full = cli("run", "-s", EVENTS, "--full-refresh", "--output", "json")
    assert full.returncode == 0, full.stderr
    assert summary(full, EVENTS)["source_rows"] == 123 and summary(full, EVENTS)["inserted"] == 1
    times = [e["time"] for e in events(emulator)]
    assert len(times) == 123 and times.count("2025-03-01T09:00:00Z") == 1  # nothing sent twice


def test_backfill_false_sends_nothing_first_then_only_later_rows(cli: Cli, emulator: Any) -> None:
    set_backfill(cli.project, "false")
    first = cli("run", "-s", EVENTS, "--output", "json")
    assert first.returncode == 0, first.stderr
    result = summary(first, EVENTS)
    assert result["inserted"] == 0 and result["unchanged"] == 120 and "backfill: false" in result["message"]
    assert events(emulator) == [] and track_requests(cli.url) == 0
    append_orders(cli.project, "O0121,C004,2025-03-15 10:00:00,12.50,placed,coffee")
    later = cli("run", "-s", EVENTS, "--output", "json")
    assert later.returncode == 0, later.stderr
    assert [e["external_id"] for e in events(emulator)] == ["C004"]
    assert summary(later, EVENTS)["inserted"] == 1


def test_rejected_rows_carry_reasons_and_go_once_fixed(cli: Cli, emulator: Any) -> None:
    execute(cli.project, "update order_items set quantity = 150 where order_item_id = 'O0005-1'")
    execute(cli.project, "update order_items set product_sku = null where order_item_id = 'O0007-1'")
    execute(cli.project, "update orders set customer_id = null where order_id = 'O0119'")
    bad = cli("run", "-s", f"{EVENTS} {PURCHASES}")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "O0005-1: quantity '150' is not a whole number from 1 to 100" in bad.stdout
    assert "O0007-1: product_id column product_sku is null" in bad.stdout
    assert "O0119: identifier column customer_id is null" in bad.stdout
    assert len(purchases(emulator)) == 234 and len(events(emulator)) == 119
    run_id = json.loads(cli("history", "--output", "json").stdout)[0]["run_id"]
    rejected = json.loads(cli("history", "--run", run_id, "--output", "json").stdout)
    assert {(r["activation"], r["identifier"]) for r in rejected} == {
        (PURCHASES, "O0005-1"),
        (PURCHASES, "O0007-1"),
        (EVENTS, "O0119"),
    }
    assert all(r["reason"] and r["origin"] == "dinmo" for r in rejected)

    same = cli("run", "-s", f"{EVENTS} {PURCHASES}", "--output", "json")
    assert summary(same, PURCHASES)["rejected"] == 2 and summary(same, EVENTS)["rejected"] == 1

    execute(cli.project, "update order_items set quantity = 3 where order_item_id = 'O0005-1'")
    execute(cli.project, "update order_items set product_sku = 'COF-ESP-250' where order_item_id = 'O0007-1'")
    execute(cli.project, "update orders set customer_id = 'C010' where order_id = 'O0119'")
    fixed = cli("run", "-s", f"{EVENTS} {PURCHASES}", "--output", "json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (summary(fixed, PURCHASES)["inserted"], summary(fixed, PURCHASES)["retried"]) == (2, 2)
    assert (summary(fixed, EVENTS)["inserted"], summary(fixed, EVENTS)["retried"]) == (1, 1)
    assert len(purchases(emulator)) == 236 and len(events(emulator)) == 120
    assert Counter(p["quantity"] for p in purchases(emulator) if p["product_id"] == "COF-ESP-250")[3] >= 1


EVENT_PROJECT = {
    "dbt_project.yml": (
        "name: mini_events\nversion: '1.0.0'\nconfig-version: 2\nprofile: mini\n"
        "models:\n  mini_events:\n    +materialized: table\n"
    ),
    "profiles.yml": "mini:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: mini.duckdb\n",
    "models/clicks.sql": (
        "select 'e' || lpad(cast(i as varchar), 6, '0') as event_id, 'u' || cast(i % 300 as varchar) as user_id, "
        "timestamp '2025-01-01' + to_seconds(cast(i * 60 as bigint)) as clicked_at, i % 7 as position "
        "from range({rows}) t(i)\n"
    ),
    "models/exposures.yml": (
        "version: 2\nexposures:\n  - name: clicks\n    type: application\n    owner: {{name: t, email: t@example.com}}\n"
        "    depends_on: [ref('clicks')]\n    config:\n      meta:\n        dinmo:\n          destination: braze\n"
        "          service: custom_events\n          event_name: clicked\n          identifier: {{column: user_id}}\n"
        "          event_time: clicked_at\n          event_id: event_id\n"
        "          properties: {{event_id: click_id, position: position}}\n"
        "          cursor: clicked_at\n          lookback: '1 hour'\n"
    ),
    "dinmo.yml": (
        "destinations:\n  braze:\n    type: braze\n    rest_url: \"{{{{ env_var('BRAZE_REST_URL') }}}}\"\n"
        "    dashboard_url: https://dashboard-01.braze.eu\n    api_key: \"{{{{ env_var('BRAZE_API_KEY') }}}}\"\n"
        "    max_in_flight: {in_flight}\n"
    ),
}


def test_kill_mid_send_then_rerun_sends_every_event_at_least_once(
    tmp_path: Path, emulator: Any, api_key: str
) -> None:
    rows, in_flight = 3000, 2
    project = tmp_path / "mini_events"
    for name, text in EVENT_PROJECT.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(rows=rows, in_flight=in_flight))
    build = dbt(project, "build", check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    cli = Cli(project, emulator.url, api_key)
    emulator.add_faults([{"kind": "delay", "path": "/users/track", "seconds": 0.15, "times": 1000}])
    proc = cli.popen("run")
    deadline = time.time() + 120
    while time.time() < deadline and workspace(cli.url)["counters"]["objects"]["events"]["processed"] < 900:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = len(events(emulator))
    assert 0 < before < rows
    emulator.clear_faults()
    rerun = cli("run")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    counts = Counter(e["properties"]["click_id"] for e in events(emulator))
    assert len(counts) == rows  # every event arrived at least once
    twice = sum(n - 1 for n in counts.values())
    assert all(n <= 2 for n in counts.values())
    assert twice <= in_flight * 75  # at most the batches in flight at the kill were sent again
    again = cli("run")
    assert again.returncode == 0 and len(events(emulator)) == rows + twice  # nothing more
