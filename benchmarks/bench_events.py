"""Benchmark the custom-events service on a 1,000,000-event dbt-duckdb model (not part of make test).

Steps (each measured program runs in its own subprocess; wall time, CPU time and peak RSS are
taken from the outside):

1. generate a dbt-duckdb project under ``benchmarks/.work/events/`` whose model holds
   1,000,000 deterministic events (``range()``), with two custom-event activations of it:
   ``bench_events`` (event_id, cursor with a 1-day lookback) and ``bench_events_full`` (the same
   without a cursor, ``backfill: false``), and ``dbt build`` it;
2. against the Braze emulator (own process, rate limits off): the first send of all 1,000,000
   events, then a rerun with no new events (cursor window);
3. ``bench_events_full``: its first run records the 1,000,000 rows as sent without sending
   (``backfill: false``), then a rerun with no new events diffs the whole model;
4. the first send again, to an instant sink (an HTTP server answering 201 at once, own process):
   what the tool itself can push, without the emulator's cost;
5. a bare Arrow read of the same model through ``open_warehouse``, for comparison.

Results are printed and written to ``benchmarks/results_events.json``. ``--rows`` shrinks the
model for a quick check.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness as h

PROJECT = h.WORK / "events"
NAME = "dinmo_bench_events"
RESULTS = h.BENCH_DIR / "results_events.json"
SCRIPT = Path(__file__).resolve()
MODEL = "bench_events"
CURSOR_ACTIVATION = "bench_events"
FULL_ACTIVATION = "bench_events_full"
PROPERTIES = {"amount": "amount", "channel": "channel", "first_order": "first_order"}
LABEL = "Braze emulator or instant sink (benchmark)"

MODEL_SELECT = """\
select
    'e' || lpad(cast(i as varchar), 9, '0') as event_id,
    'u' || lpad(cast(i % 200000 as varchar), 7, '0') as user_id,
    timestamp '2024-01-01 00:00:00' + to_seconds(cast(i * 13 as bigint)) as occurred_at,
    cast((i % 50000) / 100.0 as decimal(12, 2)) as amount,
    ['web', 'ios', 'android'][1 + i % 3] as channel,
    i % 7 = 0 as first_order
from range({rows}) as t(i)
"""


def exposures_yml() -> str:
    """The two custom-event activations of the model."""
    props = ", ".join(f"{c}: {p}" for c, p in PROPERTIES.items())
    common = (
        "service: custom_events\nevent_name: order_placed\n"
        "identifier: {column: user_id, type: external_id}\n"
        f"event_time: occurred_at\nevent_id: event_id\nproperties: {{{props}}}\n"
    )
    return h.exposures_file(
        h.exposure_yml(CURSOR_ACTIVATION, MODEL, common + "cursor: occurred_at\nlookback: '1 day'"),
        h.exposure_yml(FULL_ACTIVATION, MODEL, common + "backfill: false"),
    )


# -- the instant sink -----------------------------------------------------------------------------


def serve_sink() -> None:
    """Subprocess body: POST /users/track answers 201 at once (counts what it received)."""
    from aiohttp import web

    body = b'{"message":"success"}'
    received = {"requests": 0}

    async def track(request: web.Request) -> web.Response:
        await request.read()
        received["requests"] += 1
        return web.Response(status=201, body=body, content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(received)

    async def main() -> None:
        app = web.Application(client_max_size=8 * h.MB)
        app.router.add_post("/users/track", track)
        app.router.add_get("/_sink/stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        print(f"http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def emulator_counts(url: str) -> dict[str, int]:
    counters = h.emulator_counters(url)
    requests, non_2xx = h.requests_to(counters, "/users/track")
    return {
        "requests": requests,
        "non_2xx": non_2xx,
        "events": int(counters["events"]),
        "data_points": int(counters["data_points"]["total"]),
    }


def sink_requests(url: str) -> int:
    return int(h.get_json(f"{url}/_sink/stats")["requests"])


# -- the scenarios -----------------------------------------------------------------------------------


@dataclass
class SyncResult:
    """One ``dbt-dinmo run``, measured from outside and read from the receiving end."""

    scenario: str
    sink: str
    wall_s: float  # the whole process: startup, dbt adapter, read, diff, send, fold
    cpu_s: float
    activation_s: float  # the activation's own execution_time (read, diff, send, fold)
    events_sent: int  # as the tool reports them (inserted)
    events_per_s: float  # events_sent / activation_s
    source_rows: int  # rows read from the warehouse
    unchanged: int  # already sent (or recorded as sent)
    requests: int  # /users/track requests the receiver counted
    events_received: int  # events the receiver recorded (emulator only, else -1)
    data_points: int  # emulator only, else -1
    peak_rss_mb: float
    status: str


def run_sync(scenario: str, sink: str, url: str, activation: str, dinmo_file: Path) -> SyncResult:
    """``dbt-dinmo run -s <activation> --output json`` as a subprocess."""
    before = emulator_counts(url) if sink == "emulator" else {"requests": sink_requests(url)}
    run = h.run_dinmo(PROJECT, url, scenario, "-s", activation, "--dinmo-file", str(dinmo_file))
    after = emulator_counts(url) if sink == "emulator" else {"requests": sink_requests(url)}
    if sink == "emulator" and after["non_2xx"] != before["non_2xx"]:
        raise SystemExit(f"{scenario}: the emulator answered non-2xx")
    result = run.results[activation]
    activation_s = run.execution_s()
    sent = int(result["inserted"])
    return SyncResult(
        scenario=scenario,
        sink=sink,
        wall_s=run.measured.wall_s,
        cpu_s=run.measured.cpu_s,
        activation_s=activation_s,
        events_sent=sent,
        events_per_s=sent / activation_s if activation_s else 0.0,
        source_rows=int(result["source_rows"]),
        unchanged=int(result["unchanged"]),
        requests=after["requests"] - before["requests"],
        events_received=after["events"] - before["events"] if sink == "emulator" else -1,
        data_points=after["data_points"] - before["data_points"] if sink == "emulator" else -1,
        peak_rss_mb=run.measured.peak_rss_mb,
        status=str(result["status"]),
    )


@dataclass
class ReadResult:
    """The bare Arrow read of the model."""

    wall_s: float
    cpu_s: float
    stream_s: float
    rows: int
    peak_rss_mb: float


def run_bare_read(rows: int) -> ReadResult:
    columns = ["event_id", "user_id", "occurred_at", *PROPERTIES]
    r = h.run_bare_read(PROJECT, h.relation_name(PROJECT, NAME, MODEL), columns, rows)
    return ReadResult(r.wall_s, r.cpu_s, r.stream_s, r.rows, r.peak_rss_mb)


# -- report ------------------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything written to results_events.json."""

    machine: dict[str, Any]
    rows: int
    dbt_build_s: float
    syncs: list[SyncResult]
    bare_read: ReadResult
    problems: list[str] = field(default_factory=list)


def sanity_checks(syncs: list[SyncResult], rows: int) -> list[str]:
    """What each scenario should have done, compared with what was counted."""
    by = {s.scenario: s for s in syncs}
    first, rerun = by["first send"], by["no new events (cursor)"]
    mark, full = by["backfill false (mark all)"], by["no new events (no cursor)"]
    sink = by["first send (instant sink)"]
    return h.mismatches(
        [
            ("first send: events sent", first.events_sent, rows),
            ("first send: events the emulator recorded", first.events_received, rows),
            ("first send: requests", first.requests, -(-rows // 75)),
            ("first send: data points", first.data_points, rows * (1 + len(PROPERTIES))),
            ("no new events (cursor): requests", rerun.requests, 0),
            ("backfill false: requests", mark.requests, 0),
            ("backfill false: recorded as sent", mark.unchanged, rows),
            ("no new events (no cursor): rows read", full.source_rows, rows),
            ("no new events (no cursor): requests", full.requests, 0),
            ("instant sink: events sent", sink.events_sent, rows),
        ]
    )


COLUMNS = [
    h.Col("scenario", 30), h.Col("wall s", 8, ".2f"), h.Col("cpu s", 8, ".2f"), h.Col("act. s", 8, ".2f"),
    h.Col("sent", 10, ","), h.Col("events/s", 10, ",.0f"), h.Col("read", 10, ","), h.Col("requests", 10, ","),
    h.Col("peak RSS MB", 13, ".0f"),
]  # fmt: skip


def print_report(report: Report) -> None:
    print()
    print(f"{report.rows:,} events; dbt build {report.dbt_build_s:.1f} s; machine {report.machine}")
    rows: list[list[Any]] = [
        [s.scenario, s.wall_s, s.cpu_s, s.activation_s, s.events_sent, s.events_per_s, s.source_rows,
         s.requests, s.peak_rss_mb]
        for s in report.syncs
    ]  # fmt: skip
    r = report.bare_read
    rows.append(["bare Arrow read", r.wall_s, r.cpu_s, r.stream_s, "", "", r.rows, "", ""])
    h.print_table(COLUMNS, rows)
    print(
        "(wall s: the whole process, dbt's imports and adapter included; act. s: the activation's own "
        "execution_time; events/s = sent / act. s)"
    )
    h.print_problems(report.problems, "sanity checks: every count matches what the scenario should do")


def write_project(rows: int) -> tuple[Path, Path]:
    emulator_file = PROJECT / "dinmo.yml"
    sink_file = PROJECT / "dinmo_sink.yml"
    comment = f"{rows} deterministic events from range(): 200,000 users, one event every 13 seconds."
    h.write_project(
        PROJECT,
        NAME,
        {
            f"models/{MODEL}.sql": h.model_sql(comment, MODEL_SELECT.format(rows=rows)),
            "models/exposures.yml": exposures_yml(),
            emulator_file.name: h.dinmo_yml(LABEL, state=".dinmo"),
            sink_file.name: h.dinmo_yml(LABEL, state=".dinmo_sink"),
        },
    )
    return emulator_file, sink_file


def benchmark(rows: int) -> Report:
    start = h.machine()
    emulator_file, sink_file = write_project(rows)
    print(f"== dbt build ({rows:,} events) in {PROJECT.relative_to(h.ROOT)}", flush=True)
    build = h.dbt_build(PROJECT)
    syncs: list[SyncResult] = []
    with h.emulator() as emu:
        print(f"== emulator on {emu.url}: first send", flush=True)
        syncs.append(run_sync("first send", "emulator", emu.url, CURSOR_ACTIVATION, emulator_file))
        print("== no new events, cursor window", flush=True)
        syncs.append(
            run_sync("no new events (cursor)", "emulator", emu.url, CURSOR_ACTIVATION, emulator_file)
        )
        print("== backfill: false first run (records every row as sent)", flush=True)
        syncs.append(
            run_sync("backfill false (mark all)", "emulator", emu.url, FULL_ACTIVATION, emulator_file)
        )
        print("== no new events, whole-model diff", flush=True)
        syncs.append(
            run_sync("no new events (no cursor)", "emulator", emu.url, FULL_ACTIVATION, emulator_file)
        )
    with h.Server(SCRIPT, "_sink") as sink:
        print(f"== instant sink on {sink.url}: first send", flush=True)
        syncs.append(run_sync("first send (instant sink)", "sink", sink.url, CURSOR_ACTIVATION, sink_file))
    print("== bare Arrow read", flush=True)
    read = run_bare_read(rows)
    report = Report(
        machine={**start, "load_average_at_end": h.machine()["load_average"]},
        rows=rows,
        dbt_build_s=build.wall_s,
        syncs=syncs,
        bare_read=read,
    )
    report.problems = sanity_checks(syncs, rows)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--rows", type=int, default=1_000_000, help="events in the model (default 1,000,000)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    sub.add_parser("_sink", help="(internal) serve the instant sink, print its URL")
    args = parser.parse_args(argv)
    if args.command == "_sink":
        serve_sink()
        return 0
    started = time.perf_counter()
    report = benchmark(args.rows)
    print_report(report)
    h.write_report(args.output, report, started)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
