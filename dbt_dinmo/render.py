"""Human and JSON output for the CLI (rich on a terminal, plain text when piped)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from dbt_dinmo.errors import Problem

if TYPE_CHECKING:
    from dbt_dinmo.activation import Activation
    from dbt_dinmo.project import Project
    from dbt_dinmo.results import ActivationResult, RunResult
    from dbt_dinmo.validate import PermissionCheck

STATUS_STYLE = {"success": "green", "partial success": "yellow", "error": "red", "skipped": "dim"}


@functools.cache
def stdout_console() -> Console:
    """Where results go."""
    return Console(file=sys.stdout, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


@functools.cache
def stderr_console() -> Console:
    """Where logs, progress and errors go."""
    return Console(file=sys.stderr, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_problems(problems: Sequence[Problem]) -> None:
    """Every configuration problem, with where, what and how to fix it."""
    console = stderr_console()
    console.print(f"[bold red]{len(problems)} problem(s) found; nothing was sent.[/]")
    for p in problems:
        console.print(f"  [bold]{p.where}[/] › [cyan]{p.key}[/]: {p.message}", highlight=False)
        if p.fix:
            console.print(f"      fix: {p.fix}", highlight=False)


class RichReporter:
    """Progress on stderr while the runner works: a bar on a terminal, lines otherwise."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.console = stderr_console()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def activation_started(self, activation: Activation, phase: str) -> None:
        """Say what starts."""
        if not self.quiet:
            self.console.print(f"[dim]{activation.name}: {phase}…[/]", highlight=False)

    def progress(self, activation: Activation, done: int, total: int) -> None:
        """Move the bar (terminals only; plain streams get the summary at the end)."""
        if self.quiet or not self.console.is_terminal or total <= 0:
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(f"sending {activation.name}", total=total)
        assert self._task is not None
        self._progress.update(self._task, completed=done)

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._task = None, None

    def activation_finished(self, result: ActivationResult) -> None:
        """Say how an activation ended."""
        self._stop_bar()
        if self.quiet:
            return
        style = STATUS_STYLE.get(result.status, "white")
        self.console.print(
            f"[{style}]{result.status.upper()}[/] {result.activation} "
            f"({result.execution_time:.1f}s){': ' + result.message if result.message else ''}",
            highlight=False,
        )


SEGMENT_SERVICES = ("subscription_status", "user_lists")


def _counts_table(title: str, results: Sequence[ActivationResult], plan: bool) -> Table:
    """Figures per activation; segment and profile-check columns only when some activation has them."""
    segments = any(r.service in SEGMENT_SERVICES for r in results)
    checks = segments or any(r.waiting or r.profiles_checked or r.export_calls for r in results)
    table = Table(title=title, title_justify="left")
    longest = max((len(r.activation) for r in results), default=10)
    table.add_column("activation", no_wrap=True, min_width=longest)  # headers wrap, names never
    table.add_column("status", no_wrap=True)
    cols = ["rows", "insert", "update", "delete"]
    cols += ["enter", "exit"] if segments else []
    cols += ["unchanged", "rejected"]
    cols += ["waiting", "export calls"] if checks else []
    cols += [] if plan else ["retried"]
    for col in [*cols, "data points", "requests"]:
        table.add_column(col, justify="right")
    for r in results:
        segment = r.service in SEGMENT_SERVICES
        blocked = f" (+{r.deletes_blocked} blocked)" if r.deletes_blocked else ""
        values = {
            "rows": r.source_rows,
            "insert": r.inserted,
            "update": r.updated,
            "delete": f"{r.deleted}{'' if segment else blocked}",
            "enter": r.entered,
            "exit": f"{r.exited}{blocked if segment else ''}",
            "unchanged": r.unchanged,
            "rejected": r.rejected,
            "waiting": r.waiting,
            "export calls": r.export_calls,
            "retried": r.retried,
        }
        row = [r.activation, f"[{STATUS_STYLE.get(r.status, 'white')}]{r.status}[/]"]
        row += [str(values[c]) for c in cols] + [str(r.attribute_writes), str(r.requests)]
        table.add_row(*row)
    return table


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min"


def _profile_check_line(r: ActivationResult) -> str | None:
    """What a plan's profile checks cost: users to check, export calls and the time implied."""
    if not r.profiles_checked and not r.waiting:
        return None
    if r.export_seconds:
        wait = f"at least {_seconds(r.export_seconds)} under the users.export.ids rate limit"
    else:
        wait = "within one window of the users.export.ids rate limit"
    line = (
        f"[bold]{r.activation}[/]: {r.profiles_checked} users not known to exist in Braze would be checked "
        f"with {r.export_calls} /users/export/ids calls ({wait}); users not found wait for their "
        "Braze profile and are not sent"
    )
    if r.waiting:
        line += f"; {r.waiting} of them were not found at their last check"
    return line + "."


def print_run(result: RunResult, as_json: bool = False) -> None:
    """The run's summary table, then rejected rows and messages."""
    if as_json:
        _json(result.summary())
        return
    console = stdout_console()
    elapsed = ((result.finished_at or result.started_at) - result.started_at).total_seconds()
    console.print(_counts_table(f"dbt-dinmo run {result.run_id[:8]} · {elapsed:.1f}s", result.results, False))
    for r in result.results:
        if r.message and (r.status != "success" or r.waiting):
            console.print(f"[bold]{r.activation}[/]: {r.message}", highlight=False)
        rejected = [rej for rej in r.rejections if rej["origin"] != "waiting"]
        waiting = [str(rej["identifier"]) for rej in r.rejections if rej["origin"] == "waiting"]
        for rej in rejected[:10]:
            console.print(
                f"  rejected {rej['identifier']!s}: {rej['reason']} [{rej['origin']}]", highlight=False
            )
        if waiting:
            more = f" and {r.waiting - 10} more" if r.waiting > 10 else ""
            console.print(f"  waiting for a Braze profile: {', '.join(waiting[:10])}{more}", highlight=False)
        if len(rejected) > 10 or r.waiting > 10:
            console.print(f"  … see `dbt-dinmo history --run {result.run_id}`")
    for name, due in result.not_due:
        console.print(
            f"[dim]{name}: not due until {str(due)[:19]} (use --all to run it now)[/]", highlight=False
        )
    for warning in result.warnings:
        console.print(f"[yellow]Warning:[/] {warning}", highlight=False)
    status = result.status
    console.print(f"[{STATUS_STYLE.get(status, 'white')}]Done: {status}.[/]")


def print_plan(result: RunResult, as_json: bool = False) -> None:
    """The plan: counts by operation, cost, blocked deletions and sample payloads."""
    if as_json:
        _json(result.summary())
        return
    console = stdout_console()
    console.print(_counts_table("dbt-dinmo plan (nothing sent)", result.results, True))
    for r in result.results:
        if r.message:
            console.print(f"[bold]{r.activation}[/]: {r.message}", highlight=False)
        checks = _profile_check_line(r)
        if checks:
            console.print(checks, highlight=False)
        if r.planned_deletes:
            if r.service in SEGMENT_SERVICES:
                verb = "exits blocked" if r.deletes_blocked else "would exit"
            else:
                verb = "blocked" if r.deletes_blocked else "would delete"
            console.print(f"[bold]{r.activation}[/] {verb}: {', '.join(r.planned_deletes)}", highlight=False)
        for rej in r.rejections[:10] if r.rejections else []:
            console.print(f"  would reject {rej['identifier']!s}: {rej['reason']}", highlight=False)
        for sample in r.samples:
            console.print(
                f"[dim]{r.activation} sample:[/] {json.dumps(sample, default=str)}", highlight=False
            )


def print_activations(
    project: Project,
    activations: Sequence[Activation],
    last: dict[str, dict[str, Any]],
    due: dict[str, Any],
    as_json: bool,
) -> None:
    """``ls``: one line per activation, with its last run and next due time."""
    rows = []
    for a in activations:
        run = last.get(a.name) or {}
        next_due = due.get(a.name)
        rows.append(
            {
                "name": a.name,
                "service": a.service,
                "sync_mode": a.sync_mode,
                "model": a.model.name,
                "destination": a.destination.name,
                "identifier": f"{a.identifier.column} ({a.identifier.type})",
                "schedule": a.schedule or "",
                "last_run": str(run.get("started_at", ""))[:19],
                "last_status": run.get("status", ""),
                "next_due": str(next_due)[:19] if next_due else "now",
            }
        )
    if as_json:
        _json(rows)
        return
    table = Table(title=f"{len(rows)} activation(s)", title_justify="left")
    for key in rows[0] if rows else ("name",):
        table.add_column(key)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    stdout_console().print(table)


def print_history(rows: list[dict[str, Any]], as_json: bool) -> None:
    """``history``: newest runs first."""
    if as_json:
        _json(rows)
        return
    if not rows:
        stdout_console().print("No runs yet: run `dbt-dinmo run`.")
        return
    table = Table(title="history", title_justify="left")
    cols = (
        "run_id",
        "activation",
        "status",
        "started_at",
        "inserted",
        "updated",
        "deleted",
        "entered",
        "exited",
        "rejected",
        "waiting",
        "attribute_writes",
        "requests",
    )
    for c in cols:
        table.add_column(c)
    for row in rows:
        values = {**row, "run_id": str(row["run_id"])[:8], "started_at": str(row["started_at"])[:19]}
        table.add_row(*(str(values.get(c) or 0) if c in cols[4:] else str(values[c]) for c in cols))
    stdout_console().print(table)


def print_rejected(rows: list[dict[str, Any]], as_json: bool) -> None:
    """A run's rejected rows."""
    if as_json:
        _json(rows)
        return
    if not rows:
        stdout_console().print("No rejected rows in that run.")
    for row in rows:
        stdout_console().print(
            f"{row['activation']} {row['identifier']}: {row['reason']} [{row['origin']}]", highlight=False
        )


def print_permission_checks(checks: Sequence[PermissionCheck]) -> None:
    """``validate``: whether each destination's key can do what its activations need."""
    for c in checks:
        mark = "[green]OK[/]" if c.ok else "[red]MISSING[/]"
        stdout_console().print(f"{mark} {c.destination}: {c.permission} ({c.detail})", highlight=False)
