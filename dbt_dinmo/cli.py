"""``dbt-dinmo``: a thin click face over the runner.

Results go to stdout, logs and progress to stderr. Exit codes: 0 everything synced, 1 an
activation failed or rows were rejected, 2 usage or configuration error (nothing sent).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from dbt_dinmo import __version__
from dbt_dinmo.errors import ConfigError, DinmoError

F = TypeVar("F", bound=Callable[..., Any])


def dbt_options(func: F) -> F:
    """The dbt flags every command shares (with dbt's own environment variables)."""
    options = [
        click.option(
            "--project-dir",
            envvar="DBT_PROJECT_DIR",
            default=".",
            show_default=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="The dbt project.",
        ),
        click.option(
            "--profiles-dir",
            envvar="DBT_PROFILES_DIR",
            default=None,
            type=click.Path(file_okay=False, path_type=Path),
            help="Where profiles.yml is.",
        ),
        click.option("--profile", envvar="DBT_PROFILE", default=None, help="Profile to use."),
        click.option("-t", "--target", envvar="DBT_TARGET", default=None, help="Target to use."),
        click.option("--vars", default=None, help="dbt vars as a YAML/JSON string."),
        click.option(
            "--target-path",
            envvar="DBT_TARGET_PATH",
            default=None,
            help="dbt's target directory (default: target).",
        ),
        click.option(
            "--dinmo-file",
            default=None,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Path of dinmo.yml (default: beside dbt_project.yml).",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json", "default"]),
            envvar="DBT_LOG_FORMAT",
            default="default",
            show_default=True,
            help="json: one dbt-style JSON event per line on stdout.",
        ),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warn", "error"]),
            envvar="DBT_LOG_LEVEL",
            default="info",
            show_default=True,
        ),
        click.option(
            "-q", "--quiet", is_flag=True, envvar="DBT_QUIET", help="Print only errors and the final result."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def selection_options(func: F) -> F:
    """-s/--select and --exclude in dbt's syntax (names, exposure:, tag:, path:, fqn:, model+)."""
    func = click.option("--exclude", multiple=True, help="dbt selector of activations to leave out.")(func)
    return click.option(
        "-s",
        "--select",
        multiple=True,
        help="dbt selector: NAME, exposure:X, tag:X, path:X, model+, 'a b', a,b.",
    )(func)


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part for value in values for part in value.split() if part)


def _project(kw: dict[str, Any]) -> Any:
    from dbt_dinmo.project import Project, ProjectOptions

    _setup_logging(kw.pop("log_level"), kw.pop("quiet"), kw.pop("log_format"))
    return Project(
        ProjectOptions(
            project_dir=kw.pop("project_dir"),
            profiles_dir=kw.pop("profiles_dir"),
            profile=kw.pop("profile"),
            target=kw.pop("target"),
            vars=kw.pop("vars"),
            target_path=kw.pop("target_path"),
            dinmo_file=kw.pop("dinmo_file"),
        )
    )


_JSON = {"on": False}


def json_logs() -> bool:
    """True when --log-format json is in force."""
    return _JSON["on"]


def _setup_logging(level: str, quiet: bool, log_format: str = "default") -> None:
    from rich.logging import RichHandler

    from dbt_dinmo.logs import JsonLogHandler
    from dbt_dinmo.render import stderr_console

    _JSON["on"] = log_format == "json"
    lvl = logging.ERROR if quiet else getattr(logging, level.upper().replace("WARN", "WARNING"))
    handler: logging.Handler = (
        JsonLogHandler()
        if json_logs()
        else RichHandler(console=stderr_console(), show_path=False, show_time=False)
    )
    logging.basicConfig(level=lvl, handlers=[handler], format="%(message)s", force=True)
    for noisy in ("httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(max(lvl, logging.WARNING))


def handle_errors(func: F) -> F:
    """Turn dbt-dinmo's errors into clear messages and exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dbt_dinmo.logs import emit
        from dbt_dinmo.render import print_problems, stderr_console

        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            if json_logs():
                for p in exc.problems:
                    emit(
                        "DinmoProblem",
                        str(p),
                        {"where": p.where, "key": p.key, "message": p.message, "fix": p.fix},
                        "error",
                    )
            else:
                print_problems(exc.problems)
            sys.exit(2)
        except DinmoError as exc:
            if json_logs():
                emit("DinmoLog", f"Error: {exc}", {}, "error")
            else:
                stderr_console().print(f"[bold red]Error:[/] {exc}")
            sys.exit(2)
        except KeyboardInterrupt:
            stderr_console().print(
                "[bold red]Interrupted.[/] Acknowledged batches are saved; run again to finish."
            )
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dbt-dinmo")
def main() -> None:
    """dbt-native reverse ETL to Braze: sync dbt models to Braze, sending only what changed."""


def _run_options(select: tuple[str, ...], exclude: tuple[str, ...], **kw: Any) -> Any:
    from dbt_dinmo.logs import INVOCATION_ID
    from dbt_dinmo.runner import RunOptions

    return RunOptions(select=_split(select), exclude=_split(exclude), run_id=INVOCATION_ID, **kw)


@main.command("ls")
@dbt_options
@selection_options
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
@handle_errors
def ls_command(select: tuple[str, ...], exclude: tuple[str, ...], output: str, **kw: Any) -> None:
    """List what a selector picks, with each activation's last run and next due time."""
    from dbt_dinmo.gating import next_due
    from dbt_dinmo.render import print_activations
    from dbt_dinmo.state import StateStore

    project = _project(kw)
    activations, problems = project.parse(_split(select), _split(exclude))
    for problem in dict.fromkeys(problems):  # listing works even while a key is unset
        logging.getLogger(__name__).warning("%s", problem)
    last: dict[str, dict[str, Any]] = {}
    started: dict[str, Any] = {}
    if (project.state_dir / "state.duckdb").exists():
        try:
            with StateStore(project.state_dir, read_only=True) as store:
                last, started = store.last_results(), store.last_started()
        except DinmoError as exc:
            logging.getLogger(__name__).warning("run history unavailable: %s", exc)
    due = {a.name: next_due(a.schedule, started.get(a.name)) for a in activations}
    print_activations(project, activations, last, due, as_json=output == "json")


@main.command()
@dbt_options
@selection_options
@click.option(
    "--no-destination-check",
    is_flag=True,
    help="Skip the harmless calls that check the API key's permissions.",
)
@handle_errors
def validate(
    select: tuple[str, ...], exclude: tuple[str, ...], no_destination_check: bool, **kw: Any
) -> None:
    """Check dinmo.yml, the activations, the model columns and the API key's permissions."""
    from dbt_dinmo.render import print_permission_checks, stdout_console
    from dbt_dinmo.validate import check_permissions

    project = _project(kw)
    project.parse(_split(select), _split(exclude))  # config and manifest errors first
    with project.open_warehouse() as wh:
        activations, _ = project.prepare(wh, _split(select), _split(exclude))
    stdout_console().print(f"[green]OK[/] {len(activations)} activation(s): config and columns are valid.")
    if no_destination_check:
        return
    checks = check_permissions(activations)
    print_permission_checks(checks)
    if any(not c.ok for c in checks):
        sys.exit(1)


@main.command()
@dbt_options
@selection_options
@click.option("-f", "--full-refresh", is_flag=True, help="Ignore the state: plan to send every mapped value.")
@click.option("--allow-deletes", is_flag=True, help="Plan as if the mirror guard were passed.")
@click.option(
    "--ignore-dbt-failures", is_flag=True, help="Plan even when the last dbt build failed upstream."
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
@handle_errors
def plan(select: tuple[str, ...], exclude: tuple[str, ...], output: str, **kw: Any) -> None:
    """Dry run: what would be sent, what it costs, sample payloads. Sends nothing."""
    from dbt_dinmo.logs import JsonReporter, emit_run
    from dbt_dinmo.render import RichReporter, print_plan
    from dbt_dinmo.runner import Runner

    flags = {k: kw.pop(k) for k in ("full_refresh", "allow_deletes", "ignore_dbt_failures")}
    project = _project(kw)
    runner = Runner(project, JsonReporter() if json_logs() else RichReporter(quiet=True))
    result = runner.plan(_run_options(select, exclude, **flags))
    if json_logs():
        emit_run(result)
    else:
        print_plan(result, as_json=output == "json")


@main.command()
@dbt_options
@selection_options
@click.option("-f", "--full-refresh", is_flag=True, help="Ignore the state: re-send every mapped value.")
@click.option("--allow-deletes", is_flag=True, help="Pass the mirror guard (max_deletes) for this run.")
@click.option("--all", "all_activations", is_flag=True, help="Run every selected activation, due or not.")
@click.option(
    "--ignore-dbt-failures",
    is_flag=True,
    help="Sync even when the last dbt build failed on the model, an ancestor or their tests.",
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
@handle_errors
def run(select: tuple[str, ...], exclude: tuple[str, ...], output: str, **kw: Any) -> None:
    """Sync the due activations to Braze, sending only what changed."""
    from dbt_dinmo.logs import JsonReporter, emit_run
    from dbt_dinmo.render import RichReporter, print_run
    from dbt_dinmo.runner import Runner

    flags = {
        k: kw.pop(k) for k in ("full_refresh", "allow_deletes", "all_activations", "ignore_dbt_failures")
    }
    quiet = kw.get("quiet", False)
    project = _project(kw)
    reporter = JsonReporter() if json_logs() else RichReporter(quiet=output == "json" or quiet)
    result = Runner(project, reporter).run(_run_options(select, exclude, **flags))
    if json_logs():
        emit_run(result)
    else:
        print_run(result, as_json=output == "json")
    sys.exit(result.exit_code)


@main.command()
@dbt_options
@click.option("-s", "--select", "activation", default=None, help="One activation's history.")
@click.option("--limit", default=20, show_default=True)
@click.option("--run", "run_id", default=None, help="Show one run's rejected rows.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
@handle_errors
def history(activation: str | None, limit: int, run_id: str | None, output: str, **kw: Any) -> None:
    """Past runs per activation, and a run's rejected rows."""
    from dbt_dinmo.render import print_history, print_rejected
    from dbt_dinmo.state import StateStore

    project = _project(kw)
    with StateStore(project.state_dir, read_only=True) as store:
        if run_id:
            print_rejected(store.rejected(run_id, activation), as_json=output == "json")
        else:
            print_history(store.history(activation, limit), as_json=output == "json")


@main.command()
@dbt_options
@handle_errors
def tui(**kw: Any) -> None:
    """Open the terminal dashboard: activations, plans, runs and rejected rows."""
    project = _project(kw)
    load_tui().run_tui(project)


@main.command("macros-path")
def macros_path() -> None:
    """Print the local path of the `dinmo` dbt package (for packages.yml `local:`)."""
    click.echo(str(dbt_package_path()))


def dbt_package_path() -> Path:
    """The shipped dbt package: inside the wheel, or the repository root in development."""
    from importlib.resources import files

    shipped = Path(str(files("dbt_dinmo") / "dbt_package"))
    if (shipped / "dbt_project.yml").is_file():
        return shipped
    return Path(__file__).resolve().parents[1]


def load_tui() -> Any:
    """The TUI package: ``dbt_dinmo.tui`` in a wheel, the repository's ``tui/`` in development."""
    import importlib

    try:
        return importlib.import_module("dbt_dinmo.tui")
    except ModuleNotFoundError:
        return importlib.import_module("tui")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=4010, show_default=True, type=int)
@click.option(
    "--data-file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the workspace in this JSON file between restarts.",
)
@click.option(
    "--api-key-env",
    default="BRAZE_API_KEY",
    show_default=True,
    help="Environment variable holding a key with every permission.",
)
@click.option(
    "--batch-mode",
    type=click.Choice(["legacy", "combined75", "mau50"]),
    default="legacy",
    show_default=True,
    help="Braze's per-request object rule to enforce.",
)
@click.option("--no-rate-limits", is_flag=True, help="Turn Braze's rate limits off (benchmarks).")
def emulator(
    host: str, port: int, data_file: Path | None, api_key_env: str, batch_mode: str, no_rate_limits: bool
) -> None:
    """Run the local Braze emulator (keys also from DINMO_EMULATOR_API_KEYS='k1;k2=users.track')."""
    from dbt_dinmo.emulator import EmulatorSettings, parse_api_keys, serve_forever

    keys = parse_api_keys(os.environ.get("DINMO_EMULATOR_API_KEYS", ""))
    if os.environ.get(api_key_env):
        keys[os.environ[api_key_env]] = None
    if not keys:
        raise click.UsageError(f"no API key: export {api_key_env}=... or DINMO_EMULATOR_API_KEYS=...")
    kwargs: dict[str, Any] = {"api_keys": keys, "batch_mode": batch_mode, "data_file": data_file}
    if no_rate_limits:
        kwargs["rate_limits"] = None
    serve_forever(EmulatorSettings(**kwargs), host=host, port=port)


if __name__ == "__main__":  # pragma: no cover
    main()
