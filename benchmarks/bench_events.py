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
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
PROJECT = BENCH_DIR / ".work" / "events"
RESULTS = BENCH_DIR / "results_events.json"
BIN = Path(sys.executable).parent
API_KEY = "bench-local-key"  # for the local emulator and sink only
MODEL = "bench_events"
CURSOR_ACTIVATION = "bench_events"
FULL_ACTIVATION = "bench_events_full"
PROPERTIES = {"amount": "amount", "channel": "channel", "first_order": "first_order"}
POLL_SECONDS = 0.05
MB = 1024 * 1024

MODEL_SQL = """\
-- {rows} deterministic events from range(): 200,000 users, one event every 13 seconds.
{{{{ config(materialized='table') }}}}

select
    'e' || lpad(cast(i as varchar), 9, '0') as event_id,
    'u' || lpad(cast(i % 200000 as varchar), 7, '0') as user_id,
    timestamp '2024-01-01 00:00:00' + to_seconds(cast(i * 13 as bigint)) as occurred_at,
    cast((i % 50000) / 100.0 as decimal(12, 2)) as amount,
    ['web', 'ios', 'android'][1 + i % 3] as channel,
    i % 7 = 0 as first_order
from range({rows}) as t(i)
"""

DBT_PROJECT_YML = """\
name: dinmo_bench_events
version: "1.0.0"
config-version: 2
profile: dinmo_bench_events
model-paths: ["models"]
target-path: target
flags:
  send_anonymous_usage_stats: false
"""

PROFILES_YML = """\
dinmo_bench_events:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: bench.duckdb
      threads: 1
"""

DINMO_YML = """\
destinations:
  braze:
    type: braze
    label: Braze emulator or instant sink (benchmark)
    rest_url: "{{{{ env_var('BENCH_BRAZE_URL') }}}}"
    dashboard_url: https://dashboard-01.braze.eu
    api_key: "{{{{ env_var('BRAZE_API_KEY') }}}}"
    rate_limits: off
    max_in_flight: 8
    batch_rule: 75_per_array
state:
  path: {state}
"""


def exposures_yml() -> str:
    """The two custom-event activations of the model."""
    props = ", ".join(f"{c}: {p}" for c, p in PROPERTIES.items())
    common = f"""\
    type: application
    owner: {{name: Benchmarks, email: bench@example.com}}
    depends_on: [ref('{MODEL}')]
    config:
      meta:
        dinmo:
          destination: braze
          service: custom_events
          event_name: order_placed
          identifier: {{column: user_id, type: external_id}}
          event_time: occurred_at
          event_id: event_id
          properties: {{{props}}}
"""
    return (
        "version: 2\nexposures:\n"
        f"  - name: {CURSOR_ACTIVATION}\n{common}          cursor: occurred_at\n          lookback: '1 day'\n"
        f"  - name: {FULL_ACTIVATION}\n{common}          backfill: false\n"
    )


# -- measuring a subprocess ---------------------------------------------------------------------


@dataclass
class Measured:
    """Wall time, CPU time, memory and output of one finished subprocess."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float  # largest RSS of the process tree, sampled every 50 ms
    returncode: int
    stdout: str
    stderr: str


def measure(cmd: Sequence[str], *, cwd: Path, env: dict[str, str]) -> Measured:
    """Run ``cmd``; sample its process tree's RSS every 50 ms until it exits."""
    import psutil

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=out, stderr=err)
        ps = psutil.Process(proc.pid)
        stop = threading.Event()
        peak = [0]

        def sample() -> None:
            while not stop.is_set():
                total = 0
                with contextlib.suppress(psutil.Error):
                    total = ps.memory_info().rss + sum(
                        c.memory_info().rss for c in ps.children(recursive=True)
                    )
                peak[0] = max(peak[0], total)
                stop.wait(POLL_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=peak[0] / MB,
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def check(run: Measured, what: str) -> Measured:
    """Stop with the process output when ``run`` failed."""
    if run.returncode != 0:
        sys.stderr.write(run.stdout[-4000:] + run.stderr[-4000:])
        raise SystemExit(f"{what} failed with exit code {run.returncode}")
    return run


def tool_env(url: str = "") -> dict[str, str]:
    """Environment for dbt and dbt-dinmo: the target URL and key, no telemetry."""
    env = dict(os.environ)
    env.update(
        BRAZE_API_KEY=API_KEY,
        BENCH_BRAZE_URL=url,
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
    )
    return env


# -- servers --------------------------------------------------------------------------------------


class Server:
    """A subcommand of this script serving HTTP in its own process; prints its URL first."""

    def __init__(self, command: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, command],
            cwd=BENCH_DIR,
            env=tool_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.close()
            raise SystemExit(f"{command} did not start (it printed {line!r})")
        self.url = line

    def close(self) -> None:
        """Stop it (SIGTERM), then kill it if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_emulator() -> None:
    """Subprocess body: the emulator with rate limits and the request log off."""
    from dbt_dinmo.emulator import EmulatorSettings, serve_forever

    settings = EmulatorSettings(api_keys={API_KEY: None}, rate_limits=None, request_log_size=0)
    serve_forever(settings, host="127.0.0.1", port=0, on_started=lambda url: print(url, flush=True))


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
        app = web.Application(client_max_size=8 * MB)
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


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=120) as resp:
        return json.loads(resp.read())


def emulator_counts(url: str) -> dict[str, int]:
    counters = get_json(f"{url}/_emulator/workspace?users=0")["counters"]
    per_status = counters["requests"].get("/users/track", {})
    return {
        "requests": sum(int(n) for n in per_status.values()),
        "non_2xx": sum(int(n) for s, n in per_status.items() if not str(s).startswith("2")),
        "events": int(counters["events"]),
        "data_points": int(counters["data_points"]["total"]),
    }


def sink_requests(url: str) -> int:
    return int(get_json(f"{url}/_sink/stats")["requests"])


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
    cmd = [
        str(BIN / "dbt-dinmo"), "run", "-s", activation, "--profiles-dir", ".",
        "--dinmo-file", str(dinmo_file), "--output", "json",
    ]  # fmt: skip
    run = check(measure(cmd, cwd=PROJECT, env=tool_env(url)), f"dbt-dinmo run ({scenario})")
    after = emulator_counts(url) if sink == "emulator" else {"requests": sink_requests(url)}
    if sink == "emulator" and after["non_2xx"] != before["non_2xx"]:
        raise SystemExit(f"{scenario}: the emulator answered non-2xx")
    doc = json.loads(run.stdout[run.stdout.index("{") :])
    result = next(r for r in doc["results"] if r["activation"] == activation)
    artifact = json.loads((PROJECT / "target" / "dinmo" / "run_results.json").read_text())
    activation_s = sum(float(r["execution_time"]) for r in artifact["results"])
    sent = int(result["inserted"])
    return SyncResult(
        scenario=scenario,
        sink=sink,
        wall_s=run.wall_s,
        cpu_s=run.cpu_s,
        activation_s=activation_s,
        events_sent=sent,
        events_per_s=sent / activation_s if activation_s else 0.0,
        source_rows=int(result["source_rows"]),
        unchanged=int(result["unchanged"]),
        requests=after["requests"] - before["requests"],
        events_received=after["events"] - before["events"] if sink == "emulator" else -1,
        data_points=after["data_points"] - before["data_points"] if sink == "emulator" else -1,
        peak_rss_mb=run.peak_rss_mb,
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


def bare_read(relation: str, columns: list[str]) -> dict[str, Any]:
    """Subprocess body: stream the model through ``open_warehouse`` and count the rows."""
    from dbt_dinmo.warehouse import open_warehouse

    rows = 0
    with open_warehouse(Path.cwd(), profiles_dir=Path.cwd()) as wh:
        started = time.perf_counter()
        for batch in wh.stream_relation(relation, columns):
            rows += batch.num_rows
        streamed = time.perf_counter()
    return {"rows": rows, "stream_s": streamed - started}


def run_bare_read() -> ReadResult:
    manifest = json.loads((PROJECT / "target" / "manifest.json").read_text())
    relation = manifest["nodes"][f"model.dinmo_bench_events.{MODEL}"]["relation_name"]
    columns = ",".join(["event_id", "user_id", "occurred_at", *PROPERTIES])
    cmd = [sys.executable, __file__, "_bare-read", "--relation", relation, "--columns", columns]
    run = check(measure(cmd, cwd=PROJECT, env=tool_env()), "bare read")
    doc = json.loads(run.stdout)
    return ReadResult(run.wall_s, run.cpu_s, float(doc["stream_s"]), int(doc["rows"]), run.peak_rss_mb)


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
    expected = [
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
    return [f"{what}: {got:,}, expected {want:,}" for what, got, want in expected if got != want]


def machine() -> dict[str, Any]:
    import duckdb
    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "duckdb": duckdb.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def print_report(report: Report) -> None:
    print()
    print(f"{report.rows:,} events; dbt build {report.dbt_build_s:.1f} s; machine {report.machine}")
    head = (
        f"{'scenario':<30}{'wall s':>8}{'cpu s':>8}{'act. s':>8}{'sent':>10}{'events/s':>10}"
        f"{'read':>10}{'requests':>10}{'peak RSS MB':>13}"
    )
    print(head)
    print("-" * len(head))
    for s in report.syncs:
        print(
            f"{s.scenario:<30}{s.wall_s:>8.2f}{s.cpu_s:>8.2f}{s.activation_s:>8.2f}{s.events_sent:>10,}"
            f"{s.events_per_s:>10,.0f}{s.source_rows:>10,}{s.requests:>10,}{s.peak_rss_mb:>13.0f}"
        )
    r = report.bare_read
    print(f"{'bare Arrow read':<30}{r.wall_s:>8.2f}{r.cpu_s:>8.2f}{r.stream_s:>8.2f}{'':>20}{r.rows:>10,}")
    print(
        "(wall s: the whole process, dbt's imports and adapter included; act. s: the activation's own "
        "execution_time; events/s = sent / act. s)"
    )
    for problem in report.problems:
        print(f"SANITY CHECK FAILED: {problem}")
    if not report.problems:
        print("sanity checks: every count matches what the scenario should do")


def write_project(rows: int) -> tuple[Path, Path]:
    if PROJECT.exists():
        shutil.rmtree(PROJECT)
    (PROJECT / "models").mkdir(parents=True)
    (PROJECT / "dbt_project.yml").write_text(DBT_PROJECT_YML)
    (PROJECT / "profiles.yml").write_text(PROFILES_YML)
    emulator_file = PROJECT / "dinmo.yml"
    sink_file = PROJECT / "dinmo_sink.yml"
    emulator_file.write_text(DINMO_YML.format(state=".dinmo"))
    sink_file.write_text(DINMO_YML.format(state=".dinmo_sink"))
    (PROJECT / "models" / f"{MODEL}.sql").write_text(MODEL_SQL.format(rows=rows))
    (PROJECT / "models" / "exposures.yml").write_text(exposures_yml())
    return emulator_file, sink_file


def benchmark(rows: int) -> Report:
    start = machine()
    emulator_file, sink_file = write_project(rows)
    print(f"== dbt build ({rows:,} events) in {PROJECT.relative_to(ROOT)}", flush=True)
    build = check(
        measure([str(BIN / "dbt"), "build", "--profiles-dir", ".", "--quiet"], cwd=PROJECT, env=tool_env()),
        "dbt build",
    )
    syncs: list[SyncResult] = []
    with Server("_emulator") as emu:
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
    with Server("_sink") as sink:
        print(f"== instant sink on {sink.url}: first send", flush=True)
        syncs.append(run_sync("first send (instant sink)", "sink", sink.url, CURSOR_ACTIVATION, sink_file))
    print("== bare Arrow read", flush=True)
    read = run_bare_read()
    report = Report(
        machine={**start, "load_average_at_end": machine()["load_average"]},
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
    read = sub.add_parser("_bare-read", help="(internal) the bare Arrow read")
    read.add_argument("--relation", required=True)
    read.add_argument("--columns", required=True)
    sub.add_parser("_emulator", help="(internal) serve the emulator, print its URL")
    sub.add_parser("_sink", help="(internal) serve the instant sink, print its URL")
    args = parser.parse_args(argv)
    if args.command == "_emulator":
        serve_emulator()
        return 0
    if args.command == "_sink":
        serve_sink()
        return 0
    if args.command == "_bare-read":
        print(json.dumps(bare_read(args.relation, args.columns.split(","))))
        return 0
    started = time.perf_counter()
    report = benchmark(args.rows)
    print_report(report)
    args.output.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"\nwrote {args.output} ({time.perf_counter() - started:.0f} s in all)")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
