"""What the benchmarks share: the generated dbt-duckdb project, the Braze emulator in its own
process, subprocess measurement (wall, CPU and peak RSS), the bare Arrow read and result tables.

The benchmark scripts import it as ``_harness`` (their own folder is on ``sys.path`` when they
run). Run as a script, it serves the subprocess bodies the benchmarks spawn:

- ``python benchmarks/_harness.py _emulator``: the emulator (rate limits and request log off);
  prints its URL, then serves until SIGTERM;
- ``python benchmarks/_harness.py _bare-read --relation R --columns a,b``: streams ``R`` through
  ``open_warehouse`` (cwd: the dbt project) and prints ``{"rows", "open_s", "stream_s"}``.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
WORK = BENCH_DIR / ".work"
HARNESS = Path(__file__).resolve()
BIN = Path(sys.executable).parent
API_KEY = "bench-local-key"  # for the local emulator and sinks only
POLL_SECONDS = 0.05
MB = 1024 * 1024


# -- measuring a subprocess ---------------------------------------------------------------------


@dataclass
class Measured:
    """Wall time, CPU time, memory and output of one finished subprocess."""

    wall_s: float  # from spawn to exit
    cpu_s: float  # user + system CPU time of the process (wait4): steadier than wall time on a busy host
    peak_rss_mb: float  # largest sum of RSS over the process and its children, sampled every 50 ms
    maxrss_mb: float  # the kernel's RSS high-water mark of the process itself (wait4)
    returncode: int
    stdout: str
    stderr: str


def tree_rss(proc: Any) -> int:
    """RSS of a psutil process plus all its descendants, in bytes (0 once it is gone)."""
    import psutil

    total = 0
    try:
        total += proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
    except psutil.Error:
        pass
    return int(total)


def measure(cmd: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> Measured:
    """Run ``cmd``; sample its process tree's RSS every 50 ms until it exits."""
    import psutil

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env), stdout=out, stderr=err)
        stop = threading.Event()
        peak = [0]

        def sample() -> None:
            try:
                ps = psutil.Process(proc.pid)
            except psutil.Error:
                return  # already gone
            while not stop.is_set():
                peak[0] = max(peak[0], tree_rss(ps))
                stop.wait(POLL_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: do not leave the child running
            proc.kill()
            proc.wait()
            raise
        finally:
            stop.set()
        wall = time.perf_counter() - started
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Measured(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=peak[0] / MB,
            maxrss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def check(run: Measured, what: str) -> Measured:
    """Stop the benchmark with the process output when ``run`` failed."""
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


# -- the generated project ------------------------------------------------------------------------

DBT_PROJECT_YML = """\
name: {name}
version: "1.0.0"
config-version: 2
profile: {name}
model-paths: ["models"]
target-path: target
flags:
  send_anonymous_usage_stats: false
"""

PROFILES_YML = """\
{name}:
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
    label: {label}
    rest_url: "{{{{ env_var('BENCH_BRAZE_URL') }}}}"
    dashboard_url: https://dashboard-01.braze.eu
    api_key: "{{{{ env_var('BRAZE_API_KEY') }}}}"
    rate_limits: off
    max_in_flight: 8
    batch_rule: 75_per_array
state:
  path: {state}
"""


def dinmo_yml(label: str, state: str = ".dinmo") -> str:
    """A ``dinmo.yml`` with one Braze destination (rate limits off, 8 in flight, 75 per array)."""
    return DINMO_YML.format(label=label, state=state)


def model_sql(comment: str, select: str) -> str:
    """A dbt model file: a comment line, ``materialized='table'``, then ``select``."""
    return f"-- {comment}\n{{{{ config(materialized='table') }}}}\n\n{select}"


def exposure_yml(name: str, model: str, dinmo: str, label: str | None = None) -> str:
    """One exposure of ``model`` (list item text); ``dinmo`` holds the lines under ``dinmo:``
    (destination and service, without indentation: they are indented here)."""
    body = "".join(f"          {line}\n" for line in dinmo.strip("\n").splitlines())
    head = f"  - name: {name}\n" + (f"    label: {label}\n" if label else "")
    return (
        f"{head}"
        "    type: application\n"
        "    owner: {name: Benchmarks, email: bench@example.com}\n"
        f"    depends_on: [ref('{model}')]\n"
        "    config:\n"
        "      meta:\n"
        "        dinmo:\n"
        "          destination: braze\n"
        f"{body}"
    )


def exposures_file(*exposures: str) -> str:
    """A ``models/exposures.yml`` holding ``exposures`` (from :func:`exposure_yml`)."""
    return "version: 2\nexposures:\n" + "".join(exposures)


def write_project(project: Path, name: str, files: Mapping[str, str]) -> None:
    """A fresh dbt project in ``project`` (``dbt_project.yml``, ``profiles.yml``) plus ``files``
    (path relative to the project -> text)."""
    if project.exists():
        shutil.rmtree(project)
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(DBT_PROJECT_YML.format(name=name))
    (project / "profiles.yml").write_text(PROFILES_YML.format(name=name))
    for path, text in files.items():
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def dbt_build(project: Path) -> Measured:
    """``dbt build --quiet`` of ``project``, measured."""
    cmd = [str(BIN / "dbt"), "build", "--profiles-dir", ".", "--quiet"]
    return check(measure(cmd, cwd=project, env=tool_env()), "dbt build")


def relation_name(project: Path, name: str, model: str) -> str:
    """A model's relation name, as the manifest records it."""
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    return str(manifest["nodes"][f"model.{name}.{model}"]["relation_name"])


def duckdb_execute(project: Path, *statements: str) -> list[int]:
    """Run DML straight in the project's DuckDB file (nothing else holds it); rows changed each."""
    import duckdb

    con = duckdb.connect(str(project / "bench.duckdb"))
    try:
        return [int(con.execute(sql).fetchall()[0][0]) for sql in statements]
    finally:
        con.close()


# -- dbt-dinmo runs -------------------------------------------------------------------------------


@dataclass
class DinmoRun:
    """One measured ``dbt-dinmo run --output json``: the process, its summary, the artifact."""

    measured: Measured
    results: dict[str, dict[str, Any]]  # activation name -> its entry of results[]
    artifact: dict[str, Any]  # target/dinmo/run_results.json

    @property
    def elapsed_s(self) -> float:
        """The runner's own elapsed_time (from the state store opened to the end)."""
        return float(self.artifact["elapsed_time"])

    def execution_s(self, *names: str) -> float:
        """The summed execution_time of the named activations (all of them when none is named)."""
        ids = {str(self.results[n]["unique_id"]) for n in names if n in self.results}
        return sum(
            float(r["execution_time"]) for r in self.artifact["results"] if not names or r["unique_id"] in ids
        )


def run_dinmo(project: Path, url: str, what: str, *args: str, profile: Path | None = None) -> DinmoRun:
    """``dbt-dinmo run --profiles-dir . --output json [args]`` in ``project``, measured."""
    tool = [str(BIN / "dbt-dinmo")]
    if profile is not None:
        tool = [sys.executable, "-m", "cProfile", "-o", str(profile), str(BIN / "dbt-dinmo")]
    cmd = [*tool, "run", "--profiles-dir", ".", "--output", "json", *args]
    run = check(measure(cmd, cwd=project, env=tool_env(url)), f"dbt-dinmo run ({what})")
    summary = json.loads(run.stdout[run.stdout.index("{") :])
    results = {
        str(r["activation"]): r
        for r in (summary.get("results", []) if isinstance(summary, dict) else [])
        if isinstance(r, dict) and "activation" in r
    }
    artifact = json.loads((project / "target" / "dinmo" / "run_results.json").read_text())
    return DinmoRun(run, results, artifact)


# -- servers in their own process -----------------------------------------------------------------


class Server:
    """``python <script> <command>`` serving HTTP in its own process (it prints its URL first), so
    it never shares a core's GIL or its memory with the measured programs, nor with the driver."""

    def __init__(self, script: Path, command: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script), command],
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

    def rss_mb(self) -> float:
        """The server's current RSS."""
        import psutil

        return tree_rss(psutil.Process(self.proc.pid)) / MB

    def cpu_s(self) -> float:
        """User + system CPU time the server has used so far."""
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def close(self) -> None:
        """Stop it (SIGTERM: it shuts down cleanly), then kill it if it lingers."""
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


def emulator() -> Server:
    """The Braze emulator in its own process, rate limits and request log off."""
    return Server(HARNESS, "_emulator")


def serve_emulator() -> None:
    """Subprocess body: the emulator with rate limits and the request log off; prints its URL."""
    from dbt_dinmo.emulator import EmulatorSettings, serve_forever

    settings = EmulatorSettings(api_keys={API_KEY: None}, rate_limits=None, request_log_size=0)
    serve_forever(settings, host="127.0.0.1", port=0, on_started=lambda url: print(url, flush=True))


def get_json(url: str) -> Any:
    """GET ``url`` and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=120) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: Any = None) -> Any:
    """POST ``body`` as JSON (an empty body when None) and decode the answer."""
    data = b"" if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as resp:
        return json.loads(resp.read() or b"null")


def emulator_counters(url: str) -> dict[str, Any]:
    """The emulator's counters (``GET /_emulator/workspace?users=0``)."""
    return dict(get_json(f"{url}/_emulator/workspace?users=0")["counters"])


def requests_to(counters: Mapping[str, Any], endpoint: str) -> tuple[int, int]:
    """(requests, of which non-2xx) the emulator counted for ``endpoint``."""
    per_status = counters["requests"].get(endpoint, {})
    total = sum(int(n) for n in per_status.values())
    return total, sum(int(n) for s, n in per_status.items() if not str(s).startswith("2"))


def emulator_reset(url: str) -> None:
    """Empty the emulator's workspace and counters."""
    post_json(f"{url}/_emulator/reset")


def emulator_create_users(url: str, external_ids: Iterable[str], chunk: int = 20_000) -> int:
    """Create users straight in the emulator (profiles made outside dbt-dinmo); return how many."""
    done, batch = 0, []
    for external_id in external_ids:
        batch.append({"external_id": external_id})
        if len(batch) == chunk:
            done += len(post_json(f"{url}/_emulator/users", batch)["braze_ids"])
            batch = []
    if batch:
        done += len(post_json(f"{url}/_emulator/users", batch)["braze_ids"])
    return done


# -- the bare Arrow read --------------------------------------------------------------------------


@dataclass
class ReadResult:
    """The bare Arrow read of a model: process figures plus the in-process phases."""

    wall_s: float
    cpu_s: float
    rows_per_s: float
    peak_rss_mb: float
    maxrss_mb: float
    rows: int
    open_s: float  # imports + open_warehouse(): imports dbt, parses the profile, connects
    stream_s: float  # stream_relation() to the last batch


def bare_read(relation: str, columns: list[str]) -> dict[str, Any]:
    """Subprocess body: stream the model through ``open_warehouse`` and count the rows."""
    started = time.perf_counter()
    from dbt_dinmo.warehouse import open_warehouse

    rows = 0
    with open_warehouse(Path.cwd(), profiles_dir=Path.cwd()) as wh:
        opened = time.perf_counter()
        for batch in wh.stream_relation(relation, columns):
            rows += batch.num_rows
        streamed = time.perf_counter()
    return {"rows": rows, "open_s": opened - started, "stream_s": streamed - opened}


def run_bare_read(project: Path, relation: str, columns: Sequence[str], rows: int) -> ReadResult:
    """The bare read in a subprocess with cwd ``project``; checks it returned ``rows`` rows."""
    cmd = [sys.executable, str(HARNESS), "_bare-read", "--relation", relation, "--columns", ",".join(columns)]
    run = check(measure(cmd, cwd=project, env=tool_env()), "bare read")
    doc = json.loads(run.stdout)
    if doc["rows"] != rows:
        raise SystemExit(f"bare read returned {doc['rows']} rows, expected {rows}")
    return ReadResult(
        wall_s=run.wall_s,
        cpu_s=run.cpu_s,
        rows_per_s=rows / run.wall_s,
        peak_rss_mb=run.peak_rss_mb,
        maxrss_mb=run.maxrss_mb,
        rows=int(doc["rows"]),
        open_s=float(doc["open_s"]),
        stream_s=float(doc["stream_s"]),
    )


# -- reporting ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import duckdb
    import psutil

    try:
        from importlib.metadata import version

        dbt = version("dbt-core")
    except Exception:
        dbt = "?"
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "duckdb": duckdb.__version__,
        "dbt_core": dbt,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "git_commit": git_commit(),
    }


def git_commit() -> str:
    """The checked-out commit, with ``+dirty`` when the working tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("+dirty" if dirty else "")


@dataclass(frozen=True)
class Col:
    """A table column: its title, width and the format spec of its numbers (``""``: as is)."""

    title: str
    width: int
    spec: str = ""


def table(columns: Sequence[Col], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A plain-text table: the first column left-aligned, the others right-aligned; a cell that
    is a string is printed as is, a number with its column's spec."""

    def cell(col: Col, value: Any, first: bool) -> str:
        text = value if isinstance(value, str) else format(value, col.spec)
        return f"{text:<{col.width}}" if first else f"{text:>{col.width}}"

    head = "".join(cell(c, c.title, i == 0) for i, c in enumerate(columns))
    lines = [head, "-" * len(head)]
    lines.extend(
        "".join(cell(c, v, i == 0) for i, (c, v) in enumerate(zip(columns, row, strict=False)))
        for row in rows
    )
    return lines


def print_table(columns: Sequence[Col], rows: Iterable[Sequence[Any]]) -> None:
    """Print :func:`table`."""
    print("\n".join(table(columns, rows)))


def mismatches(expected: Iterable[tuple[str, int, int]]) -> list[str]:
    """The sanity checks ``(what, got, want)`` that failed, as messages."""
    return [f"{what}: {got:,}, expected {want:,}" for what, got, want in expected if got != want]


def print_problems(problems: Sequence[str], ok: str) -> None:
    """Each failed sanity check, or ``ok`` when there is none."""
    for problem in problems:
        print(f"SANITY CHECK FAILED: {problem}")
    if not problems:
        print(ok)


def write_report(path: Path, report: Any, started: float) -> None:
    """Write a dataclass report as JSON to ``path``; say so with the time it all took."""
    path.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"\nwrote {path} ({time.perf_counter() - started:.0f} s in all)")


def main(argv: Sequence[str] | None = None) -> int:
    """The subprocess bodies the benchmarks spawn."""
    parser = argparse.ArgumentParser(description="(internal) subprocess bodies of the benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("_emulator", help="serve the emulator, print its URL")
    read = sub.add_parser("_bare-read", help="the bare Arrow read")
    read.add_argument("--relation", required=True)
    read.add_argument("--columns", required=True)
    args = parser.parse_args(argv)
    if args.command == "_emulator":
        serve_emulator()
    else:
        print(json.dumps(bare_read(args.relation, args.columns.split(","))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
