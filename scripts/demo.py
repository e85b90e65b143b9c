"""`make demo`: build the sample project, sync it to the local Braze emulator, show the result.

Run it twice: the second run finds nothing changed and sends zero /users/track requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "sample_project"
BIN = Path(sys.executable).parent
DEMO_KEY = "demo-local-key"  # a key for the local emulator only
ENDPOINTS = ("/users/track", "/v2/subscription/status/set", "/users/export/ids")


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the emulator binds: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def main() -> int:
    env = dict(os.environ)
    env.setdefault("BRAZE_API_KEY", DEMO_KEY)
    port = free_port(int(env.get("DINMO_DEMO_PORT", "4010")))
    url = f"http://127.0.0.1:{port}"
    env["BRAZE_REST_URL"] = url
    if (PROJECT / "packages.yml").exists():  # the dinmo dbt package, from this repository
        print("== dbt deps (sample_project) ==", flush=True)
        subprocess.run([str(BIN / "dbt"), "deps", "--quiet"], cwd=PROJECT, env=env, check=True)
    print("== dbt build (sample_project) ==", flush=True)
    subprocess.run(
        [str(BIN / "dbt"), "build", "--profiles-dir", ".", "--quiet"], cwd=PROJECT, env=env, check=True
    )

    data_file = PROJECT / ".dinmo" / "emulator-workspace.json"
    data_file.parent.mkdir(parents=True, exist_ok=True)
    print(f"== local Braze emulator on {url} ==", flush=True)
    emulator = subprocess.Popen(
        [str(BIN / "dbt-dinmo"), "emulator", "--port", str(port), "--data-file", str(data_file)],
        env=env,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                before = get_json(f"{url}/_emulator/workspace")
                break
            time.sleep(0.1)
        else:
            print("the emulator did not start", file=sys.stderr)
            return 1
        print("== dbt-dinmo run ==", flush=True)
        # Like dbt, run from the project: the DuckDB path in profiles.yml is relative to it.
        run = subprocess.run([str(BIN / "dbt-dinmo"), "run", "--profiles-dir", "."], cwd=PROJECT, env=env)
        after = get_json(f"{url}/_emulator/workspace")
        show_workspace(before, after)
        return run.returncode
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def _requests(workspace: dict, endpoint: str = "/users/track") -> int:
    per_status = workspace.get("counters", {}).get("requests", {}).get(endpoint, {})
    return sum(int(n) for n in per_status.values())


def _data_points(workspace: dict) -> int:
    return int(workspace.get("counters", {}).get("data_points", {}).get("total", 0))


def show_workspace(before: dict, after: dict) -> None:
    users = after.get("users", {})
    users = list(users.values()) if isinstance(users, dict) else list(users)
    counters = after.get("counters", {})
    sent = {e: _requests(after, e) - _requests(before, e) for e in ENDPOINTS}
    points = _data_points(after) - _data_points(before)
    print("== what the emulator now holds ==")
    print(
        f"users: {len(users)}; events: {counters.get('events', 0)}; purchases: {counters.get('purchases', 0)}; "
        f"deleted so far: {counters.get('deletions', 0)}"
    )
    groups: dict[str, dict[str, int]] = {}
    for user in users:
        for group, state in (user.get("subscription_groups") or {}).items():
            groups.setdefault(group, {}).setdefault(state, 0)
            groups[group][state] += 1
    for group, states in sorted(groups.items()):
        print(f"subscription group {group}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    listed = [u for u in users if "High_Value_Customers" in u.get("custom_attributes", {})]
    members = sum(1 for u in listed if u["custom_attributes"]["High_Value_Customers"] is True)
    if listed:
        print(f"user list High_Value_Customers: true on {members} users, false on {len(listed) - members}")
    print(
        f"this run: {sent['/users/track']} /users/track, {sent['/v2/subscription/status/set']} "
        f"subscription and {sent['/users/export/ids']} /users/export/ids request(s); {points} data point(s)"
    )
    for user in users[:3]:
        attrs = {**user.get("standard_attributes", {}), **user.get("custom_attributes", {})}
        print(f"  {user.get('external_id')}: " + json.dumps(attrs, default=str)[:300])
    if not any(sent.values()):
        print("Nothing changed since the last sync, so nothing was sent.")


if __name__ == "__main__":
    sys.exit(main())
