"""The segment services' contract, the segment diff, and the profile gate (against the emulator)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dbt_dinmo._aio import run_bounded
from dbt_dinmo.activation import Identifier
from dbt_dinmo.braze import BrazeClient, RateLimits
from dbt_dinmo.profiles import ProfileGate, export_seconds, namespace
from dbt_dinmo.segment_diff import ENTRIES, EXITS, SegmentDiff
from dbt_dinmo.state import ActivationState, KnownKey, StateStore
from tests.test_activation import GOOD, exposure, parse, write_project

GROUP = "0c2d9c3e-7f2a-4c1e-9b8d-5a6f3e2d1c0b"
SUB = {
    "destination": "braze",
    "service": "subscription_status",
    "subscription_group_id": GROUP,
    "identifier": {"column": "id", "type": "external_id"},
}
LIST = {
    "destination": "braze",
    "service": "user_lists",
    "audience_name": "High Value Customers",
    "identifier": {"column": "id", "type": "external_id"},
}
CUSTOMERS = ["model.p.customers"]


# -- the contract ------------------------------------------------------------------------------
def test_valid_segment_activations(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [
            exposure("sub", dict(SUB, subscription_group_id=GROUP.upper(), max_exits="5%"), CUSTOMERS),
            exposure("lst", LIST, CUSTOMERS),
        ],
    )
    activations, problems = parse(tmp_path)
    assert problems == []
    lst, sub = activations
    assert sub.segment is not None and sub.segment.subscription_group_id == GROUP  # normalized
    assert sub.segment.max_exits is not None and sub.segment.max_exits.limit(200) == 10
    assert lst.segment is not None and lst.segment.attribute == "High_Value_Customers"
    assert lst.mapped_attributes == ("High_Value_Customers",)
    for a in (sub, lst):
        assert a.is_segment and a.updates_existing_only and not a.creates_users
        assert a.sync_mode == "segment" and a.mapping == ()
    # the identity names the group, not the identifier column: renaming the column keeps the state
    write_project(tmp_path, [exposure("sub", dict(SUB, identifier={"column": "other"}), CUSTOMERS)])
    assert parse(tmp_path)[0][0].identity == sub.identity


@pytest.mark.parametrize(
    ("dinmo", "key", "words"),
    [
        (dict(SUB, subscription_group_id=None), "subscription_group_id", "is missing"),
        (
            dict(SUB, subscription_group_id="VIP club"),
            "subscription_group_id",
            "not a Braze subscription group ID",
        ),
        (
            dict(SUB, identifier={"column": "id", "type": "user_alias", "alias_label": "x"}),
            "type",
            "external_id only",
        ),
        (dict(SUB, sync_mode="mirror"), "sync_mode", "the model is the segment"),
        (dict(SUB, mapping={"a": "b"}), "mapping", "membership only"),
        (dict(SUB, max_exits="lots"), "max_exits", "neither a count nor a percentage"),
        (dict(LIST, audience_name=""), "audience_name", "non-empty string"),
        (dict(LIST, audience_name="email"), "audience_name", "standard profile field"),
        (dict(LIST, audience_name="$vip list"), "audience_name", "not a valid Braze attribute name"),
        (dict(LIST, audience_name="external id"), "audience_name", "identifier or flag"),
        (dict(LIST, subscription_group_id=GROUP), "subscription_group_id", "does not apply"),
    ],
)
def test_segment_contract_errors_name_the_key_and_the_fix(
    tmp_path: Path, dinmo: dict[str, Any], key: str, words: str
) -> None:
    write_project(tmp_path, [exposure("seg", dinmo, CUSTOMERS)])
    activations, problems = parse(tmp_path)
    assert activations == []
    [problem] = [p for p in problems if p.key.endswith(key)]
    assert problem.where == "exposure seg" and problem.fix
    assert words in f"{problem.message} {problem.fix}"


def test_segments_that_would_fight_another_activation(tmp_path: Path) -> None:
    mapped = dict(GOOD, mapping={"ltv": "High_Value_Customers"})
    write_project(
        tmp_path,
        [
            exposure("sub_a", SUB, CUSTOMERS),
            exposure("sub_b", dict(SUB, subscription_group_id=GROUP.upper()), CUSTOMERS),
            exposure("attrs", mapped, CUSTOMERS),
            exposure("list_a", LIST, CUSTOMERS),
            exposure("list_b", dict(LIST, audience_name="High_Value_Customers"), CUSTOMERS),
        ],
    )
    _, problems = parse(tmp_path)
    found = {(p.where, p.key.split(".")[-1]) for p in problems}
    assert found == {
        ("exposure sub_a", "subscription_group_id"),
        ("exposure sub_b", "subscription_group_id"),
        ("exposure list_a", "audience_name"),
        ("exposure list_b", "audience_name"),
    }
    assert any(
        "attrs" in p.message and "mapping" in p.message for p in problems if p.where == "exposure list_a"
    )
    assert all(p.fix for p in problems)


# -- the segment diff --------------------------------------------------------------------------
def _members(ids: list[str | None]) -> pa.RecordBatch:
    counts: dict[str | None, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    return pa.RecordBatch.from_pydict({"dinmo_member_id": list(counts), "dinmo_rows": list(counts.values())})


def _segment_state(store: StateStore, synced: list[str]) -> ActivationState:
    state = store.activation_state("seg", "dest|x", ())
    store.con.register("__s", pa.table({"id": synced}))
    store.con.execute(f"INSERT INTO {state.table} SELECT id, now() FROM __s")
    store.con.unregister("__s")
    return state


def test_segment_diff_entries_exits_nulls_and_duplicates(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        state = _segment_state(store, ["a", "b", "c"])
        con = store.cursor()
        diff = SegmentDiff(con, state, state_exists=True)
        diff.load([_members(["b", "c", "c", "d", None, None]), _members(["e"])])
        counts = diff.compute()
        assert (counts.source_rows, counts.members, counts.null_rows) == (7, 4, 2)
        assert (counts.entries, counts.exits, counts.synced) == (2, 1, 3)
        assert [i for chunk in diff.ids(ENTRIES, 1) for i in chunk] == ["d", "e"]
        assert diff.sample(EXITS, 5) == ["a"]
        refresh = SegmentDiff(con, state, state_exists=True, full_refresh=True)
        refresh.load([_members(["b", "x"])])
        assert (refresh.compute().entries, refresh.count(EXITS)) == (2, 2)  # re-sends every member
        refresh.close()
        con.close()


# -- the profile gate ------------------------------------------------------------------------
def test_namespaces_and_export_time() -> None:
    assert namespace(Identifier("id")) == "external_id"
    assert namespace(Identifier("id", "user_alias", "crm")) == "alias:crm"
    assert namespace(Identifier("id", "braze_id")) is None  # issued by Braze: always exists
    limits = RateLimits.documented()  # users.export.ids: 250 a minute
    assert export_seconds(0, limits) == 0 and export_seconds(250, limits) == 0
    assert export_seconds(251, limits) == 60 and export_seconds(1000, limits) == 180


def _candidates(con: Any, ids: list[str]) -> str:
    con.register("__cand", pa.table({"__id": pa.array(ids, type=pa.string())}))
    return "SELECT __id FROM __cand"


def test_gate_trusts_earlier_upserts_and_exports_the_rest(
    tmp_path: Path, emulator: Any, api_key: str
) -> None:
    """Known users need no request; users our upsert acknowledged in this run, and users never
    seen, are checked with /users/export/ids (50 a request); those missing wait, and are not
    checked twice in one run."""
    emulator.workspace.create_users([{"external_id": f"ext{i}"} for i in range(60)])
    key = KnownKey("braze|url", "external_id")
    started = dt.datetime.now(dt.timezone.utc)
    with StateStore(tmp_path) as store:
        earlier = started - dt.timedelta(hours=1)
        store.con.execute(
            "INSERT INTO known_users VALUES (?, ?, 'old', 'track', ?), (?, ?, 'new', 'track', ?)",
            [
                key.destination,
                key.namespace,
                earlier,
                key.destination,
                key.namespace,
                started + dt.timedelta(seconds=1),
            ],
        )
        candidates = ["old", "new", *(f"ext{i}" for i in range(60)), "ghost1", "ghost2"]
        con = store.cursor()
        gate = ProfileGate(con, key, Identifier("id"), started)
        counts = gate.split(_candidates(con, candidates))
        assert (counts.unknown, counts.waiting_before, counts.to_check, counts.export_calls) == (63, 0, 63, 2)

        async def check() -> int:
            async with BrazeClient(emulator.url, api_key) as client:
                return await gate.check(client, max_in_flight=2)

        assert asyncio.run(check()) == 3  # 'new' (not applied yet in Braze) and the two ghosts
        assert gate.waiting_sample(10) == ["ghost1", "ghost2", "new"]
        assert (gate.checked, gate.calls, gate.found) == (63, 2, 60)
        exports = emulator.requests(endpoint="/users/export/ids")
        assert [len(r["body"]["external_ids"]) for r in exports] == [50, 13]
        assert all(r["body"]["fields_to_export"] == ["external_id"] for r in exports)
        # A second activation in the same run: the found are known, the missing are not re-checked.
        again = ProfileGate(con, key, Identifier("id"), started)
        assert again.split(_candidates(con, candidates)) == type(counts)(3, 3, 0)
        # The next run checks the missing ones again.
        later = ProfileGate(con, key, Identifier("id"), started + dt.timedelta(seconds=2))
        assert later.split(_candidates(con, candidates)).to_check == 2  # 'new' is now trusted
        checks = dict(con.execute("SELECT identifier, checks FROM missing_profiles").fetchall())
        assert checks == {"ghost1": 1, "ghost2": 1, "new": 1}
        con.close()


def test_gate_on_aliases_and_braze_ids(tmp_path: Path, emulator: Any, api_key: str) -> None:
    emulator.workspace.create_users([{"user_alias": {"alias_name": "a1", "alias_label": "crm"}}])
    started = dt.datetime.now(dt.timezone.utc)
    with StateStore(tmp_path) as store:
        con = store.cursor()
        alias = Identifier("id", "user_alias", "crm")
        gate = ProfileGate(con, KnownKey("d", "alias:crm"), alias, started)
        gate.split(_candidates(con, ["a1", "a2"]))

        async def check() -> int:
            async with BrazeClient(emulator.url, api_key) as client:
                return await gate.check(client, max_in_flight=1)

        assert asyncio.run(check()) == 1 and gate.waiting_sample(5) == ["a2"]
        [request] = emulator.requests(endpoint="/users/export/ids")
        assert request["body"]["user_aliases"][0] == {"alias_name": "a1", "alias_label": "crm"}
        braze_ids = ProfileGate(con, None, Identifier("id", "braze_id"), started)
        assert not braze_ids.active and braze_ids.split(_candidates(con, ["b"])).unknown == 0
        con.close()


def test_upserts_and_deletions_fold_into_known_users(tmp_path: Path) -> None:
    key = KnownKey("braze|url", "external_id")
    with StateStore(tmp_path) as store:
        state = store.activation_state("up", "braze|url|x", ("a",), creates=key)
        now = dt.datetime.now(dt.timezone.utc)
        rows = pa.table(
            {"__id": ["u1", "u2"], "__op": ["upsert", "upsert"], "__seq": [1, 1], "__at": [now, now]}
        )
        store.journal_acks(state, rows)
        store.fold(state)

        def known() -> list[str]:
            return sorted(r[0] for r in store.con.execute("SELECT identifier FROM known_users").fetchall())

        assert known() == ["u1", "u2"]
        store.journal_acks(state, pa.table({"__id": ["u1"], "__op": ["delete"], "__seq": [2], "__at": [now]}))
        store.fold(state)
        assert known() == ["u2"]  # a user our mirror deleted is gone from Braze
    # A state written before known users existed is seeded once from its synced users.
    with StateStore(tmp_path) as store:
        store.con.execute("DELETE FROM known_users")
        store.con.execute("DELETE FROM meta WHERE key LIKE 'known_seeded:%'")
        store.activation_state("up", "braze|url|x", ("a",), creates=key)
        assert sorted(r[0] for r in store.con.execute("SELECT identifier FROM known_users").fetchall()) == [
            "u2"
        ]


def test_run_bounded_stops_starting_work_after_the_first_error() -> None:
    started: list[int] = []

    async def work(i: int) -> None:
        started.append(i)
        await asyncio.sleep(0.01)
        if i == 2:
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(run_bounded(range(100), work, 2))
    assert started == [0, 1, 2, 3]  # 3 was already in flight when 2 failed; nothing after


def test_member_log_folds_entries_and_exits_and_survives_a_torn_line(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        state = _segment_state(store, ["a", "b"])
        store.journal_members(state, ["c", "d"], ["a"])
        store.journal_members(state, [], ["b"])
        assert state.member_log is not None
        with state.member_log.open("ab") as f:
            f.write(b'{"in": ["torn')  # the process died mid-write: that batch is simply re-sent
        assert store.fold(state) == 4
        members = sorted(r[0] for r in store.con.execute(f"SELECT __id FROM {state.table}").fetchall())
        assert members == ["c", "d"] and not state.member_log.exists()
        assert store.fold(state) == 0
