"""Benchmark the segment services on a 1,000,000-member dbt-duckdb model (not part of make test).

Steps (each measured program runs in its own subprocess; wall time, CPU time and peak RSS are
taken from the outside):

1. generate a dbt-duckdb project under ``benchmarks/.work/segments/`` whose model lists
   1,000,000 deterministic members (``range()``), with two activations of it:
   ``bench_subscription`` (``subscription_status``) and ``bench_user_list`` (``user_lists``,
   audience "Bench Members"), and ``dbt build`` it;
2. start the Braze emulator (own process, rate limits off) and create every member's profile in
   it directly (``POST /_emulator/users``: users made outside dbt-dinmo), plus the 1% of
   non-members who join in step 5;
3. (a) the first sync: nobody is known to exist, so the profile gate checks all members with
   ``/users/export/ids`` (50 a call, shared by the two activations), then subscribes them
   (50 a request) and flags them (``/users/track``, 75 a request);
4. (b) a no-op rerun, and a bare Arrow read of the model's identifier column for comparison;
5. (c) a rerun after 1% churn, made in the DuckDB file: 1% of the members leave and as many
   non-members (who exist in Braze) join; only the joiners are checked;
6. (d) unless ``--no-half``: the first sync again, with a fresh state and emulator in which only
   every other member has a profile: half the members wait for a Braze profile.

Results are printed and written to ``benchmarks/results_segments.json``. ``--rows`` shrinks the
model for a quick check; ``--profile a`` (or b, c, d) writes a cProfile of that run to
``benchmarks/.work/segments_<scenario>.prof``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness as h

PROJECT = h.WORK / "segments"
NAME = "dinmo_bench_segments"
RESULTS = h.BENCH_DIR / "results_segments.json"
MODEL = "bench_members"
SUBSCRIPTION = "bench_subscription"
USER_LIST = "bench_user_list"
ACTIVATIONS = (SUBSCRIPTION, USER_LIST)
GROUP_ID = "5d3b7b24-9c1e-4f7a-8b2d-3e6f1a0c9d42"
AUDIENCE = "Bench Members"  # the Braze attribute Bench_Members
TRACK, SUB_ENDPOINT, EXPORT = "/users/track", "/v2/subscription/status/set", "/users/export/ids"
IDS_PER_REQUEST = 50  # /users/export/ids and /v2/subscription/status/set
OBJECTS_PER_REQUEST = 75  # batch_rule 75_per_array
HALF_DINMO_FILE = "dinmo_half.yml"  # scenario (d): its own state

# Members i in [start, stop) of range(); the model is [0, rows), joiners come from [rows, ...).
MEMBERS_SQL = """\
select
    'u' || lpad(cast(i as varchar), 8, '0') as user_id,
    cast(i % 97 as integer) as order_count
from range({start}, {stop}) as t(i){where}
"""
LEAVING = "i % 100 = 7"  # the 1% of the members who leave in scenario (c)


def external_id(i: int) -> str:
    """The identifier of member ``i``, as the model builds it."""
    return f"u{i:08d}"


def write_project(rows: int) -> None:
    """The dbt project: the model, the two segment activations, two dinmo files."""
    identifier = "identifier: {column: user_id, type: external_id}"
    exposures = h.exposures_file(
        h.exposure_yml(
            SUBSCRIPTION,
            MODEL,
            f'service: subscription_status\nsubscription_group_id: "{GROUP_ID}"\n{identifier}',
            label="Benchmark members subscribed",
        ),
        h.exposure_yml(
            USER_LIST,
            MODEL,
            f'service: user_lists\naudience_name: "{AUDIENCE}"\n{identifier}',
            label="Benchmark members flagged",
        ),
    )
    select = MEMBERS_SQL.format(start=0, stop=rows, where="")
    h.write_project(
        PROJECT,
        NAME,
        {
            f"models/{MODEL}.sql": h.model_sql(f"{rows} deterministic segment members from range()", select),
            "models/exposures.yml": exposures,
            "dinmo.yml": h.dinmo_yml("Braze emulator (benchmark)"),
            HALF_DINMO_FILE: h.dinmo_yml("Braze emulator (benchmark)", state=".dinmo_half"),
        },
    )


def churn(rows: int) -> tuple[int, int]:
    """1% of the members leave, as many non-members join; return (left, joined)."""
    left, joined = h.duckdb_execute(
        PROJECT,
        f"DELETE FROM main.{MODEL} WHERE cast(substr(user_id, 2) AS BIGINT) % 100 = 7",
        f"INSERT INTO main.{MODEL} " + MEMBERS_SQL.format(start=rows, stop=rows + leavers(rows), where=""),
    )
    return left, joined


def undo_churn(rows: int) -> None:
    """The model as dbt built it again: the joiners out, the leavers back."""
    h.duckdb_execute(
        PROJECT,
        f"DELETE FROM main.{MODEL} WHERE user_id >= '{external_id(rows)}'",
        f"INSERT INTO main.{MODEL} " + MEMBERS_SQL.format(start=0, stop=rows, where=f" where {LEAVING}"),
    )


def leavers(rows: int) -> int:
    """How many members leave in scenario (c)."""
    return len(range(7, rows, 100))


# -- the scenarios -------------------------------------------------------------------------------


@dataclass
class ActivationFigures:
    """One activation's entry of ``dbt-dinmo run --output json`` results[]."""

    activation: str
    status: str
    source_rows: int
    entered: int
    exited: int
    unchanged: int
    waiting: int
    profiles_checked: int
    export_calls: int
    requests: int
    attribute_writes: int
    execution_s: float  # its execution_time in run_results.json (read, diff, check, send, fold)


@dataclass
class SyncResult:
    """One ``dbt-dinmo run`` of both activations, measured from outside and by the emulator."""

    scenario: str
    wall_s: float  # the whole process: startup, dbt adapter, read, diff, checks, sends, fold
    cpu_s: float
    run_elapsed_s: float  # the runner's own elapsed_time (target/dinmo/run_results.json)
    peak_rss_mb: float
    maxrss_mb: float
    emulator_cpu_s: float  # CPU time the emulator spent meanwhile (its own process)
    export_calls: int  # /users/export/ids requests the emulator counted
    subscription_requests: int  # /v2/subscription/status/set requests
    track_requests: int  # /users/track requests
    subscription_changes: int  # users whose subscription state the emulator set
    data_points: int
    users_created: int  # must stay 0: segments never create users
    activations: dict[str, ActivationFigures]


FIGURES = (
    "source_rows", "entered", "exited", "unchanged", "waiting", "profiles_checked", "export_calls",
    "requests", "attribute_writes",
)  # fmt: skip
COUNTED = {"export": EXPORT, "subscription": SUB_ENDPOINT, "track": TRACK}


def _counts(url: str) -> dict[str, int]:
    counters = h.emulator_counters(url)
    out: dict[str, int] = {}
    for key, endpoint in COUNTED.items():
        out[key], out[f"{key}_non_2xx"] = h.requests_to(counters, endpoint)
    out["subscription_changes"] = int(counters.get("subscription_changes", 0))
    out["users_created"] = int(counters.get("users_created", 0))
    out["data_points"] = int(counters["data_points"]["total"])
    return out


def run_sync(scenario: str, emu: h.Server, *args: str, profile: Path | None = None) -> SyncResult:
    """``dbt-dinmo run --output json`` as a subprocess; emulator counter deltas around it."""
    url = emu.url
    before, cpu_before = _counts(url), emu.cpu_s()
    run = h.run_dinmo(PROJECT, url, scenario, *args, profile=profile)
    after, emulator_cpu = _counts(url), emu.cpu_s() - cpu_before
    delta = {k: after[k] - before[k] for k in after}
    for key, endpoint in COUNTED.items():
        if delta[f"{key}_non_2xx"]:
            raise SystemExit(f"{scenario}: the emulator answered non-2xx to {endpoint}")
    figures = {}
    for name in ACTIVATIONS:
        r = run.results.get(name)
        if r is None:
            raise SystemExit(f"{scenario}: no result for {name} in the run's JSON output")
        figures[name] = ActivationFigures(
            activation=name,
            status=str(r["status"]),
            execution_s=run.execution_s(name),
            **{k: int(r[k]) for k in FIGURES},
        )
    m = run.measured
    return SyncResult(
        scenario=scenario,
        wall_s=m.wall_s,
        cpu_s=m.cpu_s,
        run_elapsed_s=run.elapsed_s,
        peak_rss_mb=m.peak_rss_mb,
        maxrss_mb=m.maxrss_mb,
        emulator_cpu_s=emulator_cpu,
        export_calls=delta["export"],
        subscription_requests=delta["subscription"],
        track_requests=delta["track"],
        subscription_changes=delta["subscription_changes"],
        data_points=delta["data_points"],
        users_created=delta["users_created"],
        activations=figures,
    )


# -- sanity checks --------------------------------------------------------------------------------


def _up(n: int, per: int) -> int:
    return -(-n // per)


@dataclass(frozen=True)
class Expected:
    """What one scenario must do: per activation, and in the emulator."""

    source_rows: int
    entered: int
    exited: int
    unchanged: int
    waiting: int
    checked: int  # identifiers checked with /users/export/ids (both activations together)
    track_objects: int  # user_lists objects sent

    @property
    def export_calls(self) -> int:
        return _up(self.checked, IDS_PER_REQUEST)

    @property
    def subscription_requests(self) -> int:
        return _up(self.entered, IDS_PER_REQUEST) + _up(self.exited, IDS_PER_REQUEST)


def expected(rows: int, left: int) -> dict[str, Expected]:
    """Each scenario's expected figures for a model of ``rows`` members and ``left`` leavers."""
    half = len(range(0, rows, 2))  # every other member has a profile in scenario (d)
    return {
        "a": Expected(rows, rows, 0, 0, 0, rows, rows),
        "b": Expected(rows, 0, 0, rows, 0, 0, 0),
        "c": Expected(rows, left, left, rows - left, 0, left, 2 * left),
        "d": Expected(rows, half, 0, 0, rows - half, rows, half),
    }


def sanity_checks(sync: SyncResult, want: Expected) -> list[str]:
    """What ``sync`` should have done, compared with what was counted."""
    s = sync.scenario
    sub, lst = sync.activations[SUBSCRIPTION], sync.activations[USER_LIST]
    checks: list[tuple[str, int, int]] = []
    for a in (sub, lst):
        checks += [
            (f"{s}: {a.activation} source_rows", a.source_rows, want.source_rows),
            (f"{s}: {a.activation} entered", a.entered, want.entered),
            (f"{s}: {a.activation} exited", a.exited, want.exited),
            (f"{s}: {a.activation} unchanged", a.unchanged, want.unchanged),
            (f"{s}: {a.activation} waiting", a.waiting, want.waiting),
            (f"{s}: {a.activation} status is success", int(a.status == "success"), 1),
        ]
    checks += [
        (f"{s}: /users/export/ids requests", sync.export_calls, want.export_calls),
        (
            f"{s}: export_calls reported (both activations)",
            sub.export_calls + lst.export_calls,
            want.export_calls,
        ),
        (
            f"{s}: profiles_checked (both activations)",
            sub.profiles_checked + lst.profiles_checked,
            want.checked,
        ),
        (f"{s}: subscription requests", sync.subscription_requests, want.subscription_requests),
        (f"{s}: {SUBSCRIPTION} requests reported", sub.requests, want.subscription_requests),
        (f"{s}: subscription changes", sync.subscription_changes, want.entered + want.exited),
        (f"{s}: /users/track requests", sync.track_requests, _up(want.track_objects, OBJECTS_PER_REQUEST)),
        (f"{s}: {USER_LIST} attribute_writes", lst.attribute_writes, want.track_objects),
        (f"{s}: {SUBSCRIPTION} attribute_writes", sub.attribute_writes, 0),
        (f"{s}: data points", sync.data_points, want.track_objects),
        (f"{s}: users created", sync.users_created, 0),
    ]
    return h.mismatches(checks)


# -- report ---------------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything written to results_segments.json."""

    machine: dict[str, Any]
    rows: int
    dbt_build_s: float
    profiles_created: int  # users created in the emulator before the first sync
    create_profiles_s: float
    emulator_rss_mb: dict[str, float]  # after creating the profiles, and at the end
    syncs: list[SyncResult]
    bare_read: h.ReadResult
    noop_over_bare_read: float  # wall time
    noop_over_bare_read_cpu: float
    problems: list[str] = field(default_factory=list)


SCENARIOS = {
    "a": "first sync (all exist)",
    "b": "no-op rerun",
    "c": "1% churn rerun",
    "d": "first sync (50% exist)",
}


SYNC_COLUMNS = [
    h.Col("scenario", 24), h.Col("wall s", 8, ".2f"), h.Col("cpu s", 8, ".2f"), h.Col("run s", 8, ".2f"),
    h.Col("emu cpu s", 11, ".2f"), h.Col("export", 8, ","), h.Col("sub. req", 10, ","),
    h.Col("track req", 11, ","), h.Col("sub. changes", 14, ","), h.Col("points", 10, ","),
    h.Col("peak RSS MB", 13, ".0f"), h.Col("maxrss MB", 11, ".0f"),
]  # fmt: skip
ACTIVATION_COLUMNS = [
    h.Col("scenario", 24), h.Col("activation", 20), h.Col("entered", 10, ","), h.Col("exited", 8, ","),
    h.Col("unchanged", 11, ","), h.Col("waiting", 9, ","), h.Col("checked", 11, ","), h.Col("export", 8, ","),
    h.Col("requests", 10, ","), h.Col("writes", 10, ","), h.Col("exec s", 8, ".2f"), h.Col("status", 10),
]  # fmt: skip


def print_report(report: Report) -> None:
    """The results as two plain-text tables."""
    print()
    print(
        f"{report.rows:,} members; dbt build {report.dbt_build_s:.1f} s; {report.profiles_created:,} "
        f"profiles created in the emulator in {report.create_profiles_s:.1f} s"
    )
    r = report.bare_read
    rows: list[list[Any]] = [
        [s.scenario, s.wall_s, s.cpu_s, s.run_elapsed_s, s.emulator_cpu_s, s.export_calls,
         s.subscription_requests, s.track_requests, s.subscription_changes, s.data_points, s.peak_rss_mb,
         s.maxrss_mb]
        for s in report.syncs
    ]  # fmt: skip
    rows.append(["bare Arrow read", r.wall_s, r.cpu_s, r.stream_s, *["-"] * 6, r.peak_rss_mb, r.maxrss_mb])
    h.print_table(SYNC_COLUMNS, rows)
    print(
        "  (run s: the runner's own elapsed_time, and for the bare read the stream alone; emu cpu s: the "
        "emulator's CPU time during the run; export: /users/export/ids requests; "
        f"open_warehouse took {r.open_s:.2f} s)"
    )
    print(
        f"no-op rerun / bare read of the identifier column: {report.noop_over_bare_read:.2f}x wall time, "
        f"{report.noop_over_bare_read_cpu:.2f}x CPU time"
    )
    print()
    per_activation = [
        [s.scenario, a.activation, a.entered, a.exited, a.unchanged, a.waiting, a.profiles_checked,
         a.export_calls, a.requests, a.attribute_writes, a.execution_s, a.status]
        for s in report.syncs
        for a in s.activations.values()
    ]  # fmt: skip
    h.print_table(ACTIVATION_COLUMNS, per_activation)
    rss = report.emulator_rss_mb
    print(
        "  (exec s: the activation's execution_time; the two overlap: both read and diff before either "
        f"sends. Emulator RSS: {rss.get('after_profiles', 0):.0f} MB with the profiles, "
        f"{rss.get('end', 0):.0f} MB at the end)"
    )
    print()
    h.print_problems(report.problems, "sanity checks: every count matches what the scenario should do")


# -- main -----------------------------------------------------------------------------------------


def benchmark(rows: int, half: bool, profile: Sequence[str]) -> Report:
    """Run every step and return the report."""
    start = h.machine()
    left = leavers(rows)
    write_project(rows)
    print(f"== dbt build ({rows:,} members) in {PROJECT.relative_to(h.ROOT)}", flush=True)
    build = h.dbt_build(PROJECT)
    want = expected(rows, left)

    def prof(key: str) -> Path | None:
        return h.WORK / f"segments_{key}.prof" if key in profile else None

    syncs: list[SyncResult] = []
    problems: list[str] = []
    rss: dict[str, float] = {}

    def sync(key: str, emu: h.Server, *args: str) -> None:
        print(f"== ({key}) {SCENARIOS[key]}", flush=True)
        result = run_sync(SCENARIOS[key], emu, *args, profile=prof(key))
        syncs.append(result)
        problems.extend(sanity_checks(result, want[key]))

    with h.emulator() as emu:
        url = emu.url
        print(f"== emulator on {url}: creating {rows + left:,} profiles", flush=True)
        began = time.perf_counter()
        # The members and the future joiners, generated lazily: the driver stays small.
        created = h.emulator_create_users(url, (external_id(i) for i in range(rows + left)))
        create_s = time.perf_counter() - began
        rss["after_profiles"] = emu.rss_mb()
        sync("a", emu)
        sync("b", emu)
        print("== bare Arrow read of the identifier column", flush=True)
        read = h.run_bare_read(PROJECT, h.relation_name(PROJECT, NAME, MODEL), ["user_id"], rows)
        gone, joined = churn(rows)
        if (gone, joined) != (left, left):
            problems.append(f"churn: {gone:,} left and {joined:,} joined, expected {left:,} each")
        sync("c", emu)
        if half:
            undo_churn(rows)
            h.emulator_reset(url)
            h.emulator_create_users(url, (external_id(i) for i in range(0, rows, 2)))
            sync("d", emu, "--dinmo-file", HALF_DINMO_FILE)
        rss["end"] = emu.rss_mb()
    noop = next(s for s in syncs if s.scenario == SCENARIOS["b"])
    return Report(
        machine={**start, "load_average_at_end": h.machine()["load_average"]},
        rows=rows,
        dbt_build_s=build.wall_s,
        profiles_created=created,
        create_profiles_s=create_s,
        emulator_rss_mb=rss,
        syncs=syncs,
        bare_read=read,
        noop_over_bare_read=noop.wall_s / read.wall_s,
        noop_over_bare_read_cpu=noop.cpu_s / read.cpu_s,
        problems=problems,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: the whole benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="segment members (default 1,000,000)")
    parser.add_argument("--no-half", dest="half", action="store_false", help="skip (d), 50%% of profiles")
    parser.add_argument(
        "--profile", nargs="+", default=[], choices=sorted(SCENARIOS), help="cProfile these scenarios' runs"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = benchmark(args.rows, args.half, args.profile)
    print_report(report)
    h.write_report(args.output, report, started)
    for key in args.profile:
        print(f"cProfile of ({key}): {h.WORK / f'segments_{key}.prof'}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
