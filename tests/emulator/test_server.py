"""The emulator over real HTTP: auth, limits, rate limiting, faults, endpoints, control, persistence."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from dbt_dinmo.emulator import EmulatorServer, EmulatorSettings, Fault

KEY = "key-full-0123456789"
TRACK_ONLY = "key-track-only"
T = "2024-05-01T10:00:00Z"
Start = Callable[..., EmulatorServer]
HTTP = httpx.Client(timeout=5)  # one client: building an SSL context per request is slow


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    HTTP.close()


@pytest.fixture
def start() -> Iterator[Start]:
    """Start emulators with given settings; all are stopped at teardown."""
    servers: list[EmulatorServer] = []

    def _start(**settings: Any) -> EmulatorServer:
        settings.setdefault("api_keys", {KEY: None, TRACK_ONLY: frozenset({"users.track"})})
        server = EmulatorServer(EmulatorSettings(**settings), host="127.0.0.1", port=0).start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


@pytest.fixture
def emu(start: Start) -> EmulatorServer:
    return start()


def post(emu: EmulatorServer, path: str, body: Any, key: str | None = KEY, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers["Content-Type"] = "application/json"
    return HTTP.post(emu.url + path, content=content, headers=headers, timeout=kw.pop("timeout", 5), **kw)


def attrs(*ids: str, **extra: Any) -> dict[str, Any]:
    return {"attributes": [{"external_id": i, **extra} for i in ids]}


def ratelimit(resp: httpx.Response) -> tuple[int, int, int]:
    h = resp.headers
    return int(h["X-RateLimit-Limit"]), int(h["X-RateLimit-Remaining"]), int(h["X-RateLimit-Reset"])


# ---------------------------------------------------------------------------- auth


def test_401_echoes_the_key_and_carries_rate_limit_headers(emu: EmulatorServer) -> None:
    resp = post(emu, "/users/track", attrs("u1"), key="wrong-secret")
    assert resp.status_code == 401
    assert resp.json() == {"message": "Invalid API key: wrong-secret"}
    assert ratelimit(resp)[0] == 3000
    missing = post(emu, "/users/track", attrs("u1"), key=None)
    assert missing.status_code == 401
    assert missing.json() == {"message": "Invalid API key"}
    quoted = post(emu, "/users/track", attrs("u1"), key=f'"{KEY}"')
    assert quoted.status_code == 401
    assert len(emu.workspace) == 0


def test_401_echo_can_be_disabled(start: Start) -> None:
    emu = start(echo_key_on_401=False)
    resp = post(emu, "/users/track", attrs("u1"), key="wrong-secret")
    assert resp.status_code == 401
    assert "wrong-secret" not in resp.text


def test_403_names_the_missing_permission(emu: EmulatorServer) -> None:
    resp = post(emu, "/users/delete", {"external_ids": ["u1"]}, key=TRACK_ONLY)
    assert resp.status_code == 403
    assert resp.json() == {"message": "Access Denied: API key lacks permission users.delete"}
    assert "X-RateLimit-Remaining" in resp.headers
    assert post(emu, "/users/track", attrs("u1"), key=TRACK_ONLY).status_code == 201
    sub = {"subscription_group_id": "g", "subscription_state": "subscribed", "external_id": "u1"}
    assert "subscription.status.set" in post(emu, "/subscription/status/set", sub, key=TRACK_ONLY).text


def test_open_mode_accepts_any_key_but_still_requires_one(start: Start) -> None:
    emu = start(api_keys=None)
    assert post(emu, "/users/track", attrs("u1"), key="anything").status_code == 201
    assert post(emu, "/users/track", attrs("u1"), key=None).status_code == 401


def test_settings_from_env() -> None:
    env = {"DINMO_EMULATOR_API_KEYS": "a;b=users.track", "MY_KEY": "full"}
    settings = EmulatorSettings.from_env(env, full_key_var="MY_KEY", batch_mode="mau50")
    assert settings.api_keys == {"a": None, "b": frozenset({"users.track"}), "full": None}
    assert settings.batch_mode == "mau50"
    assert EmulatorSettings.from_env({}).api_keys is None


# ---------------------------------------------------------------------------- /users/track


def test_track_response_counts_only_sent_arrays_and_lists_minor_errors(emu: EmulatorServer) -> None:
    resp = post(emu, "/users/track", {"attributes": [{"external_id": "u1"}, {"plan": "x"}], "events": []})
    assert resp.status_code == 201
    assert resp.json() == {
        "message": "success",
        "attributes_processed": 1,
        "events_processed": 0,
        "errors": [
            {
                "type": "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required",
                "input_array": "attributes",
                "index": 1,
            }
        ],
    }
    ok = post(
        emu,
        "/users/track",
        {"purchases": [{"external_id": "u1", "product_id": "p", "currency": "USD", "price": 3, "time": T}]},
    )
    assert ok.json() == {"message": "success", "purchases_processed": 1}


def test_track_with_no_valid_object_is_a_400(emu: EmulatorServer) -> None:
    resp = post(emu, "/users/track", {"events": [{"external_id": "u1", "name": "e"}]})
    assert resp.status_code == 400
    body = resp.json()
    assert (
        body["message"] == "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
    )
    assert body["errors"] == [{"type": "'time' is required", "input_array": "events", "index": 0}]
    assert post(emu, "/users/track", {}).status_code == 400
    assert len(emu.workspace) == 0


@pytest.mark.parametrize(
    ("mode", "sizes", "ok"),
    [
        ("legacy", (75, 75, 75), True),
        ("legacy", (76, 0, 0), False),
        ("legacy", (0, 0, 76), False),
        ("combined75", (50, 25, 0), True),
        ("combined75", (50, 25, 1), False),
        ("mau50", (50, 0, 0), True),
        ("mau50", (25, 26, 0), False),
    ],
)
def test_batch_modes(start: Start, mode: str, sizes: tuple[int, int, int], ok: bool) -> None:
    emu = start(batch_mode=mode)
    body = {
        "attributes": [{"external_id": f"a{i}"} for i in range(sizes[0])],
        "events": [{"external_id": f"e{i}", "name": "e", "time": T} for i in range(sizes[1])],
        "purchases": [
            {"external_id": f"p{i}", "product_id": "p", "currency": "USD", "price": 1, "time": T}
            for i in range(sizes[2])
        ],
    }
    resp = post(emu, "/users/track", body)
    if ok:
        assert resp.status_code == 201
    else:
        assert resp.status_code == 400
        assert resp.json() == {"message": "Max Input Length Exceeded"}
        assert len(emu.workspace) == 0


def test_batch_mode_changes_at_runtime(emu: EmulatorServer) -> None:
    body = attrs(*(f"u{i}" for i in range(60)))
    assert post(emu, "/users/track", body).status_code == 201
    resp = HTTP.post(emu.url + "/_emulator/settings", json={"batch_mode": "mau50"})
    assert resp.json()["batch_mode"] == "mau50"
    assert post(emu, "/users/track", body).status_code == 400
    emu.update_settings(batch_mode="legacy")
    assert post(emu, "/users/track", body).status_code == 201


def test_body_over_4_mb_is_a_413_and_not_applied(emu: EmulatorServer) -> None:
    big = orjson.dumps(
        {"attributes": [{"external_id": "u1", "blob": "x" * 200} for _ in range(4 * 1024 * 1024 // 200)]}
    )
    assert len(big) > 4 * 1024 * 1024
    resp = post(emu, "/users/track", big, timeout=30)
    assert resp.status_code == 413
    assert len(emu.workspace) == 0
    assert post(emu, "/users/track", attrs("u1")).status_code == 201


def test_small_body_limit_and_invalid_json(start: Start) -> None:
    emu = start(max_body_bytes=100)
    assert post(emu, "/users/track", attrs(*(f"u{i}" for i in range(10)))).status_code == 413
    resp = post(emu, "/users/track", b"{not json")
    assert resp.status_code == 400
    assert "JSON" in resp.json()["message"]


# ---------------------------------------------------------------------------- rate limits


def _align_to_window() -> None:
    """Sleep until just after a whole second, so a 1 s window is not crossed mid-test."""
    now = time.time()
    time.sleep(math.ceil(now) - now + 0.02)


def test_rate_limit_headers_429_and_recovery(start: Start) -> None:
    emu = start(rate_limits={"users.track": (3, 1.0)})
    _align_to_window()
    remaining = [ratelimit(post(emu, "/users/track", attrs(f"u{i}")))[1] for i in range(3)]
    assert remaining == [2, 1, 0]
    denied = post(emu, "/users/track", attrs("late"))
    assert denied.status_code == 429
    assert denied.json() == {"message": "Too Many Requests"}
    limit, left, reset = ratelimit(denied)
    assert (limit, left) == (3, 0)
    assert reset >= time.time()
    assert emu.workspace.find_user(external_id="late") is None  # not applied
    other = post(emu, "/users/delete", {"external_ids": ["u0"]})  # another bucket
    assert other.status_code == 201
    assert ratelimit(other)[0] == 20000
    time.sleep(max(reset - time.time(), 0) + 0.05)
    again = post(emu, "/users/track", attrs("late"))
    assert again.status_code == 201
    assert ratelimit(again)[1] == 2
    assert emu.workspace.find_user(external_id="late") is not None


def test_shared_buckets(start: Start) -> None:
    emu = start(rate_limits={"users.delete": (2, 1.0), "subscription.status.set": (1, 1.0)})
    _align_to_window()
    assert post(emu, "/users/delete", {"external_ids": ["x"]}).status_code == 201
    assert (
        post(emu, "/users/alias/new", {"user_aliases": [{"alias_name": "n", "alias_label": "l"}]}).status_code
        == 201
    )
    assert (
        post(
            emu,
            "/users/identify",
            {
                "aliases_to_identify": [
                    {"external_id": "e", "user_alias": {"alias_name": "n", "alias_label": "l"}}
                ]
            },
        ).status_code
        == 429
    )
    v1 = {"subscription_group_id": "g", "subscription_state": "subscribed", "external_id": "x"}
    v2 = {
        "subscription_groups": [
            {"subscription_group_id": "g", "subscription_state": "subscribed", "external_ids": ["x"]}
        ]
    }
    assert post(emu, "/subscription/status/set", v1).status_code == 201
    assert post(emu, "/v2/subscription/status/set", v2).status_code == 429


def test_rate_limits_can_be_disabled(start: Start) -> None:
    emu = start(rate_limits=None)
    resp = post(emu, "/users/track", attrs("u1"))
    assert resp.status_code == 201
    assert "X-RateLimit-Limit" not in resp.headers


# ---------------------------------------------------------------------------- faults


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_status_fault_is_not_applied(emu: EmulatorServer, status: int) -> None:
    emu.add_faults(Fault("status", path="/users/track", status=status))
    resp = post(emu, "/users/track", attrs("u1"))
    assert resp.status_code == status
    assert "message" in resp.json()
    assert "X-RateLimit-Reset" in resp.headers
    assert len(emu.workspace) == 0
    assert post(emu, "/users/track", attrs("u1")).status_code == 201  # consumed
    assert len(emu.workspace) == 1


def test_rate_limit_fault(emu: EmulatorServer) -> None:
    emu.add_faults({"kind": "rate_limit", "seconds": 5})
    resp = post(emu, "/users/track", attrs("u1"))
    assert resp.status_code == 429
    limit, left, reset = ratelimit(resp)
    assert left == 0
    assert limit == 3000
    assert time.time() + 3 < reset <= time.time() + 7
    assert len(emu.workspace) == 0


def test_drop_is_not_applied(emu: EmulatorServer) -> None:
    emu.add_faults([{"kind": "drop", "path": "/users/track"}])
    with pytest.raises(httpx.RemoteProtocolError):
        post(emu, "/users/track", attrs("u1"))
    assert len(emu.workspace) == 0
    assert emu.workspace.counters()["requests"]["/users/track"] == {"dropped": 1}


def test_lost_ack_is_applied(emu: EmulatorServer) -> None:
    emu.add_faults([{"kind": "lost_ack"}])
    with pytest.raises(httpx.RemoteProtocolError):
        post(emu, "/users/track", attrs("u1", plan="pro"))
    user = emu.workspace.find_user(external_id="u1")
    assert user is not None
    assert user["custom_attributes"] == {"plan": "pro"}
    assert emu.requests()[-1]["status"] == "lost_ack"


def test_delay_then_normal_handling_and_client_timeouts(emu: EmulatorServer) -> None:
    emu.add_faults([{"kind": "delay", "seconds": 0.3, "times": 2}])
    started = time.monotonic()
    assert post(emu, "/users/track", attrs("u1")).status_code == 201
    assert time.monotonic() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        post(emu, "/users/track", attrs("u2"), timeout=0.1)
    deadline = time.monotonic() + 5
    while emu.workspace.find_user(external_id="u2") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emu.workspace.find_user(external_id="u2") is not None  # applied after the client gave up


def test_after_times_and_paths(emu: EmulatorServer) -> None:
    emu.add_faults([{"kind": "status", "status": 503, "path": "/users/track", "after": 1, "times": 2}])
    HTTP.post(emu.url + "/_emulator/faults", json={"kind": "status", "status": 502, "path": "users/delete"})
    codes = [post(emu, "/users/track", attrs(f"u{i}")).status_code for i in range(4)]
    assert codes == [201, 503, 503, 201]
    assert post(emu, "/users/delete", {"external_ids": ["u0"]}).status_code == 502
    assert post(emu, "/users/delete", {"external_ids": ["u0"]}).json() == {"deleted": 1, "message": "success"}
    assert HTTP.get(emu.url + "/_emulator/faults").json() == {"faults": []}
    with pytest.raises(ValueError, match="fault kind"):
        emu.add_faults({"kind": "explode"})
    assert HTTP.post(emu.url + "/_emulator/faults", json={"kind": "explode"}).status_code == 400


# ---------------------------------------------------------------------------- other endpoints


def test_delete(emu: EmulatorServer) -> None:
    post(emu, "/users/track", attrs("u1", "u2", "u3"))
    too_many = post(
        emu,
        "/users/delete",
        {"external_ids": [f"x{i}" for i in range(40)], "braze_ids": [f"b{i}" for i in range(11)]},
    )
    assert too_many.status_code == 400
    assert too_many.json() == {
        "message": "The max number of external_ids and aliases per request was exceeded"
    }
    resp = post(emu, "/users/delete", {"external_ids": ["u1", "u2", "ghost"]})
    assert resp.status_code == 201
    assert resp.json() == {"deleted": 2, "message": "success"}
    assert [d["external_id"] for d in emu.workspace.deletions()] == ["u1", "u2"]
    assert [u["external_id"] for u in emu.workspace.users()] == ["u3"]
    assert emu.workspace.data_points == 0  # deletes are free (and the tracked users had no attributes)


def test_delete_one_identifier_type_switch(start: Start) -> None:
    emu = start(delete_one_identifier_type=True)
    body = {"external_ids": ["a"], "user_aliases": [{"alias_name": "n", "alias_label": "l"}]}
    assert post(emu, "/users/delete", body).status_code == 400
    assert post(emu, "/users/delete", {"external_ids": ["a"]}).status_code == 201


def test_export(start: Start) -> None:
    emu = start()
    post(emu, "/users/track", attrs("u1", first_name="Ada", plan="pro"))
    missing = post(emu, "/users/export/ids", {"external_ids": ["u1"]})
    assert missing.status_code == 400
    assert "fields_to_export" in missing.json()["message"]
    body = {
        "external_ids": ["u1", "nope"],
        "fields_to_export": ["external_id", "first_name", "custom_attributes"],
    }
    resp = post(emu, "/users/export/ids", body)
    assert resp.json() == {
        "message": "success",
        "users": [{"external_id": "u1", "first_name": "Ada", "custom_attributes": {"plan": "pro"}}],
        "invalid_user_ids": ["nope"],
    }
    over = post(
        emu,
        "/users/export/ids",
        {"external_ids": [str(i) for i in range(51)], "fields_to_export": ["braze_id"]},
    )
    assert over.status_code == 400
    assert over.json()["message"] == "The max number of ids per request was exceeded"
    emu.update_settings(export_requires_fields=False)
    assert "braze_id" in post(emu, "/users/export/ids", {"external_ids": ["u1"]}).json()["users"][0]


def test_subscriptions_never_create_users(start: Start) -> None:
    emu = start()
    post(emu, "/users/track", attrs("u1", email="a@x.io"))
    v1 = {"subscription_group_id": "g1", "subscription_state": "subscribed", "external_id": ["u1", "ghost"]}
    assert post(emu, "/subscription/status/set", v1).json() == {"message": "success"}
    v2 = {
        "subscription_groups": [
            {
                "subscription_group_id": "g2",
                "subscription_state": "unsubscribed",
                "emails": ["a@x.io", "b@x.io"],
            }
        ]
    }
    assert post(emu, "/v2/subscription/status/set", v2).status_code == 201
    assert len(emu.workspace) == 1
    user = emu.workspace.find_user(external_id="u1")
    assert user is not None
    assert user["subscription_groups"] == {"g1": "subscribed", "g2": "unsubscribed"}
    both = {**v1, "email": "a@x.io", "phone": "+331"}
    resp = post(emu, "/subscription/status/set", both)
    assert resp.status_code == 400
    assert (
        resp.json()["message"]
        == "Either an email address or a phone number should be provided, but not both."
    )
    over = {**v1, "external_id": [str(i) for i in range(51)]}
    assert post(emu, "/subscription/status/set", over).status_code == 400
    emu.update_settings(unknown_subscription_ids="error")
    strict = post(emu, "/subscription/status/set", {**v1, "subscription_group_id": "g3"})
    assert strict.status_code == 400
    assert strict.json()["invalid_user_ids"] == ["ghost"]
    assert "g3" not in emu.workspace.find_user(external_id="u1")["subscription_groups"]  # type: ignore[index]


def test_alias_new_and_identify(emu: EmulatorServer) -> None:
    body = {
        "user_aliases": [
            {"alias_name": "lead-1", "alias_label": "crm"},
            {"alias_name": 3, "alias_label": "crm"},
        ]
    }
    resp = post(emu, "/users/alias/new", body)
    assert resp.status_code == 201
    assert resp.json() == {
        "aliases_processed": 1,
        "message": "success",
        "errors": [
            {
                "type": "'alias_name' and 'alias_label' must be Strings",
                "input_array": "user_aliases",
                "index": 1,
            }
        ],
    }
    ident = {
        "aliases_to_identify": [
            {"external_id": "u1", "user_alias": {"alias_name": "lead-1", "alias_label": "crm"}}
        ]
    }
    assert post(emu, "/users/identify", ident).json() == {"aliases_processed": 1, "message": "success"}
    user = emu.workspace.find_user(external_id="u1")
    assert user is not None
    assert user["user_aliases"] == [{"alias_name": "lead-1", "alias_label": "crm"}]


def test_unknown_path_is_a_json_404(emu: EmulatorServer) -> None:
    resp = post(emu, "/users/nope", {})
    assert resp.status_code == 404
    assert resp.json() == {"message": "Not Found"}


# ---------------------------------------------------------------------------- control API


def test_control_api(emu: EmulatorServer) -> None:
    created = HTTP.post(
        emu.url + "/_emulator/users", json=[{"external_id": "seed", "attributes": {"plan": "x"}}]
    )
    assert created.status_code == 201
    assert len(created.json()["braze_ids"]) == 1
    post(emu, "/users/track", attrs("u1", first_name="Ada"))
    post(emu, "/users/track", attrs("u2"), key="bad-key")
    ws = HTTP.get(emu.url + "/_emulator/workspace").json()
    assert {u["external_id"] for u in ws["users"].values()} == {"seed", "u1"}
    assert ws["counters"]["requests"]["/users/track"] == {"201": 1, "401": 1}
    assert ws["counters"]["objects"]["attributes"]["processed"] == 1
    one = HTTP.get(emu.url + "/_emulator/workspace", params={"external_id": "u1"}).json()
    assert next(iter(one["users"].values()))["standard_attributes"] == {"first_name": "Ada"}
    assert "users" not in HTTP.get(emu.url + "/_emulator/workspace", params={"users": "0"}).json()
    log = HTTP.get(emu.url + "/_emulator/requests").json()["requests"]
    assert [(r["endpoint"], r["status"]) for r in log] == [("/users/track", 201), ("/users/track", 401)]
    assert log[0]["body"] == attrs("u1", first_name="Ada")
    assert KEY not in orjson.dumps(log).decode()
    assert "Authorization" not in orjson.dumps(log).decode()
    settings = HTTP.get(emu.url + "/_emulator/settings").json()
    assert settings["batch_mode"] == "legacy"
    assert KEY not in orjson.dumps(settings).decode()
    assert HTTP.post(emu.url + "/_emulator/settings", json={"batch_mode": "nope"}).status_code == 400
    assert HTTP.post(emu.url + "/_emulator/settings", json={"no_such": 1}).status_code == 400
    changed = HTTP.post(emu.url + "/_emulator/settings", json={"rate_limits": {"users.track": [7, 60]}})
    assert changed.json()["rate_limits"]["users.track"] == [7, 60.0]
    assert ratelimit(post(emu, "/users/track", attrs("u1")))[:2] == (7, 6)
    assert HTTP.post(emu.url + "/_emulator/reset").status_code == 200
    after = HTTP.get(emu.url + "/_emulator/workspace").json()
    assert after["users"] == {}
    assert after["counters"]["requests"] == {}
    assert HTTP.get(emu.url + "/_emulator/requests").json() == {"requests": []}


def test_request_log_is_bounded_and_can_be_disabled(start: Start) -> None:
    emu = start(request_log_size=2)
    for i in range(4):
        post(emu, "/users/track", attrs(f"u{i}"))
    assert [r["body"]["attributes"][0]["external_id"] for r in emu.requests()] == ["u2", "u3"]
    emu.update_settings(request_log_size=0)
    post(emu, "/users/track", attrs("u9"))
    assert emu.requests() == []
    assert emu.workspace.counters()["requests"]["/users/track"] == {"201": 5}


# ---------------------------------------------------------------------------- persistence


def test_persistence_round_trip(start: Start, tmp_path: Path) -> None:
    data = tmp_path / "state" / "emulator.json"
    first = start(data_file=str(data), save_interval=0.05)
    post(first, "/users/track", attrs("u1", plan="pro"))
    deadline = time.monotonic() + 3
    while not data.exists() and time.monotonic() < deadline:  # the autosave task
        time.sleep(0.05)
    assert data.exists()
    post(first, "/users/track", attrs("u2"))
    first.stop()  # saves on shutdown
    assert not list(data.parent.glob("*.tmp"))
    second = start(data_file=str(data))
    assert {u["external_id"] for u in second.workspace.users()} == {"u1", "u2"}
    post(second, "/users/track", attrs("u3"))
    second.stop()
    third = start(data_file=str(data))
    assert len(third.workspace) == 3  # accumulates across runs
    assert third.workspace.find_user(external_id="u1")["custom_attributes"] == {"plan": "pro"}  # type: ignore[index]


def test_serve_forever_stops_on_sigterm_and_saves(tmp_path: Path) -> None:
    data = tmp_path / "emulator.json"
    script = (
        "import sys\n"
        "from dbt_dinmo.emulator import EmulatorSettings, serve_forever\n"
        f"settings = EmulatorSettings(api_keys={{{KEY!r}: None}}, data_file={str(data)!r}, save_interval=60)\n"
        "serve_forever(settings, '127.0.0.1', 0, on_started=lambda url: print(url, flush=True))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        resp = HTTP.post(url + "/users/track", json=attrs("u1"), headers={"Authorization": f"Bearer {KEY}"})
        assert resp.status_code == 201
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    state = orjson.loads(data.read_bytes())
    assert [u["external_id"] for u in state["users"]] == ["u1"]
