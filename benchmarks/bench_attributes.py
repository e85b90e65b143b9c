"""Benchmark the user-attributes sync on a 1,000,000-row dbt-duckdb model (``make bench``).

Steps (every measured program runs in its own subprocess, whose wall time and peak RSS are
taken from the outside):

1. generate a dbt-duckdb project under ``benchmarks/.work/`` whose model is built with
   DuckDB's ``range()`` (deterministic), with one upsert activation of 10 attributes, and
   ``dbt build`` it;
2. ``dbt-dinmo run`` against a local Braze emulator (rate limits off): first sync, no-op rerun,
   and a rerun after 1% of the rows changed in one column;
3. a bare Arrow read of the same model through ``open_warehouse`` (the tool's read path);
4. ``BrazeClient.send_track_batches`` pushing 1,000,000 prepared objects to an in-process sink
   (``httpx.MockTransport``: client overhead alone) and to the emulator over loopback.

Results are printed as a table and written to ``benchmarks/results.json``.
``--rows``/``--objects`` shrink the run for a quick check; ``--profile`` also writes a cProfile
of the first sync to ``benchmarks/.work/first_sync.prof``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness as h

PROJECT = h.WORK / "project"
NAME = "dinmo_bench"
RESULTS = h.BENCH_DIR / "results.json"
MODEL = "bench_users"
ACTIVATION = "braze_bench_attributes"

# Targets the README states for this benchmark.
TARGET_NOOP_RATIO = 1.5  # no-op rerun wall time / bare Arrow read wall time
TARGET_PEAK_RSS_MB = 300.0
TARGET_SINK_OBJECTS_PER_S = 75_000.0

# model column -> Braze attribute (10 attributes: two standard fields, eight custom ones)
MAPPING: dict[str, str] = {
    "user_id": "account_id",
    "first_name": "first_name",
    "email": "email",
    "order_count": "order_count",
    "score": "score",
    "lifetime_value": "lifetime_value",
    "is_vip": "is_vip",
    "signup_date": "signup_date",
    "last_seen_at": "last_seen_at",
    "tags": "tags",
}
UPDATED_COLUMN = "order_count"

MODEL_SELECT = """\
select
    'u' || lpad(cast(i as varchar), 8, '0') as user_id,
    ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken'][1 + i % 8]
        || ' ' || cast(i % 977 as varchar) as first_name,
    'user' || cast(i as varchar) || '@example.com' as email,
    cast(i % 97 as integer) as order_count,
    cast((i * 7919) % 100003 as double) / 100.0 as score,
    cast((i % 250000) / 100.0 as decimal(12, 2)) as lifetime_value,
    i % 3 = 0 as is_vip,
    date '2020-01-01' + cast(i % 1800 as integer) as signup_date,
    timestamp '2024-01-01 00:00:00' + to_seconds(cast(i * 31 as bigint)) as last_seen_at,
    ['plan_' || cast(i % 4 as varchar), 'region_' || cast(i % 11 as varchar)] as tags
from range({rows}) as t(i)
"""


def write_project(rows: int) -> None:
    """A fresh dbt project (model, exposure, profile, dinmo.yml) under ``.work/project/``."""
    mapping = "\n".join(f"  {column}: {attribute}" for column, attribute in MAPPING.items())
    exposure = h.exposure_yml(
        ACTIVATION,
        MODEL,
        "service: user_attributes\nsync_mode: upsert\n"
        f"identifier: {{column: user_id, type: external_id}}\nmapping:\n{mapping}",
        label="Benchmark users to Braze",
    )
    comment = f"{rows} deterministic users built from range(): one row per user, ten columns of mixed types."
    h.write_project(
        PROJECT,
        NAME,
        {
            f"models/{MODEL}.sql": h.model_sql(comment, MODEL_SELECT.format(rows=rows)),
            "models/exposures.yml": h.exposures_file(exposure),
            "dinmo.yml": h.dinmo_yml("Braze emulator (benchmark)"),
        },
    )


def update_one_percent() -> int:
    """Change ``UPDATED_COLUMN`` on 1% of the rows, straight in the DuckDB file; return the count."""
    [rows] = h.duckdb_execute(
        PROJECT,
        f"UPDATE main.{MODEL} SET {UPDATED_COLUMN} = {UPDATED_COLUMN} + 1000 "
        "WHERE cast(substr(user_id, 2) AS BIGINT) % 100 = 7",
    )
    return rows


@dataclass
class Counts:
    """The emulator counters the benchmark reads."""

    track_requests: int
    track_non_2xx: int
    data_points: int


def emulator_counts(url: str) -> Counts:
    """Read /users/track requests and data points from the emulator (without its users)."""
    counters = h.emulator_counters(url)
    requests, non_2xx = h.requests_to(counters, "/users/track")
    return Counts(requests, non_2xx, int(counters["data_points"]["total"]))


# -- the scenarios -----------------------------------------------------------------------------------


@dataclass
class SyncResult:
    """One ``dbt-dinmo run``, measured from outside and read from the emulator."""

    scenario: str
    wall_s: float
    cpu_s: float
    rows_per_s: float
    track_requests: int
    attribute_writes: int
    peak_rss_mb: float
    maxrss_mb: float
    objects_sent: int  # inserted + updated, as the tool reports them
    tool_requests: int
    unchanged: int
    status: str
    run_elapsed_s: float  # the runner's own elapsed_time (target/dinmo/run_results.json)
    activation_s: float  # the activation's execution_time: read, diff, send, fold


def run_sync(scenario: str, url: str, rows: int, profile: Path | None = None) -> SyncResult:
    """``dbt-dinmo run --output json`` as a subprocess; emulator counter deltas around it."""
    before = emulator_counts(url)
    run = h.run_dinmo(PROJECT, url, scenario, profile=profile)
    after = emulator_counts(url)
    if after.track_non_2xx != before.track_non_2xx:
        raise SystemExit(f"{scenario}: the emulator answered non-2xx to /users/track")
    result = run.results.get(ACTIVATION, {})
    return SyncResult(
        scenario=scenario,
        wall_s=run.measured.wall_s,
        cpu_s=run.measured.cpu_s,
        rows_per_s=rows / run.measured.wall_s,
        track_requests=after.track_requests - before.track_requests,
        attribute_writes=after.data_points - before.data_points,
        peak_rss_mb=run.measured.peak_rss_mb,
        maxrss_mb=run.measured.maxrss_mb,
        objects_sent=int(result.get("inserted", 0)) + int(result.get("updated", 0)),
        tool_requests=int(result.get("requests", 0)),
        unchanged=int(result.get("unchanged", 0)),
        status=str(result.get("status", "?")),
        run_elapsed_s=run.elapsed_s,
        activation_s=run.execution_s(),
    )


def run_bare_read(rows: int) -> h.ReadResult:
    """The bare read of the mapped columns, in a subprocess."""
    columns = list(dict.fromkeys(["user_id", *MAPPING]))
    return h.run_bare_read(PROJECT, h.relation_name(PROJECT, NAME, MODEL), columns, rows)


@dataclass
class ClientResult:
    """``send_track_batches`` throughput against one sink."""

    sink: str
    objects: int
    max_in_flight: int
    wall_s: float  # packing and sending, as timed inside the client process
    objects_per_s: float
    requests: int
    accepted: int
    build_s: float  # encoding the prepared objects (not part of wall_s)
    peak_rss_mb: float
    maxrss_mb: float


def run_client(sink: str, url: str, objects: int, max_in_flight: int) -> ClientResult:
    """Time the ``_client`` subcommand in a subprocess."""
    cmd = [
        sys.executable, __file__, "_client", "--sink", sink, "--url", url,
        "--objects", str(objects), "--max-in-flight", str(max_in_flight),
    ]  # fmt: skip
    run = h.check(h.measure(cmd, cwd=h.BENCH_DIR, env=h.tool_env(url)), f"client throughput ({sink})")
    doc = json.loads(run.stdout)
    if doc["accepted"] != objects:
        raise SystemExit(f"client ({sink}): {doc['accepted']} of {objects} objects accepted")
    return ClientResult(
        sink=sink,
        objects=objects,
        max_in_flight=max_in_flight,
        wall_s=float(doc["send_s"]),
        objects_per_s=objects / float(doc["send_s"]),
        requests=int(doc["requests"]),
        accepted=int(doc["accepted"]),
        build_s=float(doc["build_s"]),
        peak_rss_mb=run.peak_rss_mb,
        maxrss_mb=run.maxrss_mb,
    )


_SINK_BODY = b'{"message":"success","attributes_processed":75}'


async def _push(sink: str, url: str, objects: list[Any], max_in_flight: int) -> tuple[int, int]:
    """Pack and send ``objects``; return (requests, accepted objects)."""
    import httpx

    from dbt_dinmo.braze import BatchResult, BatchRule, BrazeClient, RateLimits, pack

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"Content-Type": "application/json"}, content=_SINK_BODY)

    transport = httpx.MockTransport(answer) if sink == "mock" else None
    accepted = 0

    def on_result(result: BatchResult) -> None:
        nonlocal accepted
        accepted += len(result.accepted)

    async with BrazeClient(
        url,
        h.API_KEY,
        transport=transport,
        rate_limits=RateLimits.off(),
        max_connections=max(2 * max_in_flight, 4),
    ) as client:
        summary = await client.send_track_batches(
            pack(objects, BatchRule.parse("75_per_array")), on_result, max_in_flight=max_in_flight
        )
    return summary.requests, accepted


def client_throughput(sink: str, url: str, count: int, max_in_flight: int) -> dict[str, Any]:
    """Subprocess body: encode ``count`` attribute objects, then time packing and sending them."""
    import orjson

    from dbt_dinmo.braze import PreparedObject

    def encode(i: int) -> bytes:
        data = orjson.dumps(
            {
                "external_id": f"c{i:08d}",
                "account_id": f"c{i:08d}",
                "first_name": f"Ada {i % 977}",
                "email": f"client{i}@example.com",
                "order_count": i % 97,
                "score": (i * 7919 % 100003) / 100.0,
                "lifetime_value": (i % 250000) / 100.0,
                "is_vip": i % 3 == 0,
                "signup_date": "2021-06-01",
                "last_seen_at": "2024-03-01T12:00:00Z",
                "tags": [f"plan_{i % 4}", f"region_{i % 11}"],
            }
        )
        # A compact copy: each orjson result kept alive pins a ~4 KB heap block (1M of them
        # would take 4 GB); the tool streams its objects, so it never holds many at once.
        return bytes(memoryview(data))

    started = time.perf_counter()
    objects = [PreparedObject("attributes", encode(i), i) for i in range(count)]
    built = time.perf_counter()
    requests, accepted = asyncio.run(_push(sink, url, objects, max_in_flight))
    sent = time.perf_counter()
    return {"build_s": built - started, "send_s": sent - built, "requests": requests, "accepted": accepted}


# -- report ------------------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything written to results.json."""

    machine: dict[str, Any]
    rows: int
    columns: int
    attributes: int
    dbt_build_s: float
    syncs: list[SyncResult]
    bare_read: h.ReadResult
    noop_over_bare_read: float  # wall time ratio (the target)
    noop_over_bare_read_cpu: float  # the same ratio in CPU time, less sensitive to a busy host
    clients: list[ClientResult]
    targets: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # sanity checks that failed


def sanity_checks(syncs: Sequence[SyncResult], rows: int, changed: int) -> list[str]:
    """What the three syncs should have sent, compared with what the emulator counted."""
    first, noop, rerun = syncs
    per_request = 75
    return h.mismatches(
        [
            ("first sync: objects", first.objects_sent, rows),
            ("first sync: /users/track requests", first.track_requests, -(-rows // per_request)),
            ("first sync: attribute writes", first.attribute_writes, rows * len(MAPPING)),
            ("no-op rerun: /users/track requests", noop.track_requests, 0),
            ("1% changed rerun: objects", rerun.objects_sent, changed),
            ("1% changed rerun: attribute writes", rerun.attribute_writes, changed),
        ]
    )


SYNC_COLUMNS = [
    h.Col("scenario", 22), h.Col("wall s", 9, ".2f"), h.Col("cpu s", 8, ".2f"), h.Col("run s", 8, ".2f"),
    h.Col("rows/s", 11, ",.0f"), h.Col("/users/track", 14, ","), h.Col("attr writes", 13, ","),
    h.Col("peak RSS MB", 13, ".0f"), h.Col("maxrss MB", 11, ".0f"),
]  # fmt: skip
CLIENT_COLUMNS = [
    h.Col("client sink", 22), h.Col("in flight", 10), h.Col("objects", 11, ","), h.Col("requests", 10, ","),
    h.Col("send s", 9, ".2f"), h.Col("objects/s", 12, ",.0f"),
]  # fmt: skip


def print_report(report: Report) -> None:
    """A plain-text table of the results."""
    print()
    print(f"{report.rows:,} rows x {report.columns} columns, {report.attributes} attributes mapped")
    print(f"dbt build: {report.dbt_build_s:.1f} s")
    r = report.bare_read
    rows: list[list[Any]] = [
        [s.scenario, s.wall_s, s.cpu_s, s.run_elapsed_s, s.rows_per_s, s.track_requests, s.attribute_writes,
         s.peak_rss_mb, s.maxrss_mb]
        for s in report.syncs
    ]  # fmt: skip
    rows.append(
        ["bare Arrow read", r.wall_s, r.cpu_s, r.stream_s, r.rows_per_s, "-", "-", r.peak_rss_mb, r.maxrss_mb]
    )
    h.print_table(SYNC_COLUMNS, rows)
    print(
        "  (wall s: the whole process, startup and imports included; cpu s: its user + system "
        "CPU time; run s: the runner's own elapsed_time, and for the bare read the stream alone; "
        f"open_warehouse took {r.open_s:.2f} s)"
    )
    print(
        f"no-op rerun / bare read: {report.noop_over_bare_read:.2f}x wall time (target <= "
        f"{TARGET_NOOP_RATIO}x), {report.noop_over_bare_read_cpu:.2f}x CPU time; "
        f"max peak RSS of the syncs: {max(s.peak_rss_mb for s in report.syncs):.0f} MB "
        f"(target < {TARGET_PEAK_RSS_MB:.0f} MB)"
    )
    print()
    clients = [
        [c.sink, c.max_in_flight, c.objects, c.requests, c.wall_s, c.objects_per_s] for c in report.clients
    ]
    h.print_table(CLIENT_COLUMNS, clients)
    print(f"(target for the in-process sink: >= {TARGET_SINK_OBJECTS_PER_S:,.0f} objects/s)")
    print()
    for name, t in report.targets.items():
        print(f"target {name}: {t['measured']:,} ({t['target']}): {'met' if t['met'] else 'NOT met'}")
    h.print_problems(report.problems, "sanity checks: every count matches what the scenario should send")


def targets(report: Report) -> dict[str, Any]:
    """Each target with the measured value and whether it was met."""
    peak = max(s.peak_rss_mb for s in report.syncs)
    sink = [c.objects_per_s for c in report.clients if c.sink == "mock"]
    slowest = min(sink) if sink else 0.0
    return {
        "noop_over_bare_read": {
            "target": f"<= {TARGET_NOOP_RATIO}",
            "measured": round(report.noop_over_bare_read, 2),
            "met": report.noop_over_bare_read <= TARGET_NOOP_RATIO,
        },
        "peak_rss_mb": {
            "target": f"< {TARGET_PEAK_RSS_MB:.0f}",
            "measured": round(peak),
            "met": peak < TARGET_PEAK_RSS_MB,
        },
        "sink_objects_per_s": {  # the slowest of the in-process sink runs
            "target": f">= {TARGET_SINK_OBJECTS_PER_S:.0f}",
            "measured": round(slowest),
            "met": slowest >= TARGET_SINK_OBJECTS_PER_S,
        },
    }


# -- main ----------------------------------------------------------------------------------------------


def benchmark(
    rows: int, objects: int, in_flight: Sequence[int], emulator_in_flight: Sequence[int], profile: bool
) -> Report:
    """Run every step and return the report."""
    start = h.machine()
    write_project(rows)
    print(f"== dbt build ({rows:,} rows) in {PROJECT.relative_to(h.ROOT)}", flush=True)
    build = h.dbt_build(PROJECT)
    syncs: list[SyncResult] = []
    clients: list[ClientResult] = []
    with h.emulator() as emu:
        url = emu.url
        print(f"== Braze emulator on {url} (rate limits off)", flush=True)
        print("== first sync", flush=True)
        prof = h.WORK / "first_sync.prof" if profile else None
        syncs.append(run_sync("first sync", url, rows, prof))
        print("== no-op rerun", flush=True)
        syncs.append(run_sync("no-op rerun", url, rows))
        changed = update_one_percent()
        print(f"== 1% changed rerun ({changed:,} rows of {UPDATED_COLUMN} updated)", flush=True)
        syncs.append(run_sync("1% changed rerun", url, rows))
        print("== bare Arrow read", flush=True)
        read = run_bare_read(rows)
        h.emulator_reset(url)  # frees the synced users before the client runs
        for n in in_flight:
            print(f"== client throughput: in-process sink, max_in_flight {n}", flush=True)
            clients.append(run_client("mock", url, objects, n))
        for n in emulator_in_flight:
            print(f"== client throughput: emulator over loopback, max_in_flight {n}", flush=True)
            clients.append(run_client("emulator", url, objects, n))
            h.emulator_reset(url)
    noop = next(s for s in syncs if s.scenario == "no-op rerun")
    report = Report(
        machine={**start, "load_average_at_end": h.machine()["load_average"]},
        rows=rows,
        columns=len(dict.fromkeys(["user_id", *MAPPING])),
        attributes=len(MAPPING),
        dbt_build_s=build.wall_s,
        syncs=syncs,
        bare_read=read,
        noop_over_bare_read=noop.wall_s / read.wall_s,
        noop_over_bare_read_cpu=noop.cpu_s / read.cpu_s,
        clients=clients,
    )
    report.targets = targets(report)
    report.problems = sanity_checks(syncs, rows, changed)
    if prof is not None:
        print(f"cProfile of the first sync: {prof} (python -m pstats {prof})")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: the full benchmark, or the client-throughput subprocess body."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--rows", type=int, default=1_000_000, help="model rows (default 1,000,000)")
    parser.add_argument("--objects", type=int, default=1_000_000, help="objects for the client runs")
    parser.add_argument(
        "--max-in-flight", type=int, nargs="+", default=[8, 16], dest="in_flight", help="for the sink runs"
    )
    parser.add_argument(
        "--emulator-max-in-flight", type=int, nargs="+", default=[8], help="for the emulator runs"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the first sync")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    client = sub.add_parser("_client", help="(internal) one client-throughput run")
    client.add_argument("--sink", choices=["mock", "emulator"], required=True)
    client.add_argument("--url", required=True)
    client.add_argument("--objects", type=int, required=True)
    client.add_argument("--max-in-flight", type=int, required=True)
    args = parser.parse_args(argv)

    if args.command == "_client":
        url = "http://127.0.0.1:9" if args.sink == "mock" else args.url
        print(json.dumps(client_throughput(args.sink, url, args.objects, args.max_in_flight)))
        return 0
    started = time.perf_counter()
    report = benchmark(args.rows, args.objects, args.in_flight, args.emulator_max_in_flight, args.profile)
    print_report(report)
    h.write_report(args.output, report, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
