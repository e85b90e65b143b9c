"""The dashboard App: owns the catalog, the loaded activations and the plan/sync worker."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import App
from textual.binding import Binding, BindingType
from textual.markup import escape
from textual.worker import Worker, WorkerState

from dbt_dinmo.catalog import CatalogBusyError
from dbt_dinmo.errors import ConfigError, DinmoError

from .commands import DinmoCommands
from .formatting import Clock, system_clock
from .messages import LogNotice, RunsChanged, SyncProgress
from .reporter import AppReporter
from .screens.activations import ActivationsScreen
from .screens.confirm import ConfirmScreen
from .screens.detail import DetailScreen
from .screens.help import HelpScreen
from .screens.plan import PlanScreen
from .screens.run_detail import RunDetailScreen
from .screens.sync import SyncScreen

if TYPE_CHECKING:
    from textual.screen import Screen

    from dbt_dinmo.catalog import ActivationRun, Catalog, Listing
    from dbt_dinmo.results import ActivationResult

DBT_GROUP = "dbt"


class DinmoApp(App[None]):
    """Activations, their runs and rejected rows; plan and sync one activation at a time."""

    CSS_PATH = "app.tcss"
    TITLE = "dbt-dinmo"
    SUB_TITLE = "activations"
    COMMANDS = App.COMMANDS | {DinmoCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit_app", "Quit", id="quit"),
        Binding("question_mark,f1", "help", "Help", key_display="?", id="help"),
        Binding("r", "refresh", "Refresh", id="refresh"),
    ]

    def __init__(self, catalog: Catalog, *, clock: Clock = system_clock) -> None:
        super().__init__()
        self.catalog = catalog
        self.clock = clock
        self.listing: Listing | None = None
        self.last_runs: dict[str, ActivationRun] = {}
        self.busy: str | None = None  # "plan <name>" / "sync <name>" while the dbt worker runs
        self._quit_armed = False
        start_resource_tracker()

    def get_default_screen(self) -> Screen[Any]:
        """The activations table."""
        return ActivationsScreen()

    # -- data shared by the screens -----------------------------------------------------------
    def set_listing(self, listing: Listing) -> None:
        """Keep the loaded activations (the palette lists them too)."""
        self.listing = listing
        if listing.project_name:
            self.sub_title = f"{listing.project_name} · activations"

    def broadcast(self, message_type: type[RunsChanged], activation: str) -> None:
        """Tell every screen on the stack that an activation's history changed."""
        for screen in self.screen_stack:
            screen.post_message(message_type(activation))

    # -- navigation ---------------------------------------------------------------------------
    def open_activation(self, name: str) -> None:
        """Push the detail screen of an activation."""
        activation = self.catalog.activation(name)
        if activation is None:
            self.notify(f"Unknown activation {name}; press r to reload.", severity="warning")
            return
        self.push_screen(DetailScreen(activation))

    def open_run(self, run_id: str, activation: str | None = None) -> None:
        """Push the detail of a run."""
        self.push_screen(RunDetailScreen(run_id, activation))

    async def action_quit_app(self) -> None:
        """Quit; while a sync runs, ask for a second ``q`` (the sync then finishes before exit)."""
        if self.busy and self.busy.startswith("sync") and not self._quit_armed:
            self._quit_armed = True
            self.set_timer(5, self._disarm_quit)
            self.notify(
                f"The {self.busy} is still running. Press q again to quit: it finishes first.",
                severity="warning",
                timeout=5,
            )
            return
        self.exit()

    def _disarm_quit(self) -> None:
        self._quit_armed = False

    def action_help(self) -> None:
        """Show the key bindings."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_refresh(self) -> None:
        """Reload manifest, config and history on every screen."""
        self.catalog.reload()
        for screen in self.screen_stack:
            reload = getattr(screen, "reload", None)
            if callable(reload):
                reload()
        self.notify("Reloading the manifest, config and run history.", timeout=2)

    # -- plan and sync ------------------------------------------------------------------------
    def _free(self) -> bool:
        if self.busy:
            self.notify(f"Wait: the {self.busy} is still running.", severity="warning")
            return False
        return True

    def request_plan(self, name: str) -> None:
        """Plan an activation in the dbt worker; show the result on a plan screen."""
        if not self._free():
            return
        self.busy = f"plan of {name}"
        self.push_screen(PlanScreen(name))
        self.run_worker(
            lambda: self.catalog.plan(name),
            name=f"plan:{name}",
            group=DBT_GROUP,
            thread=True,
            exit_on_error=False,
            description=f"plan {name}",
        )

    def request_sync(self, name: str) -> None:
        """Ask for a confirmation, then sync the activation in the dbt worker."""
        if not self._free():
            return
        activation = self.catalog.activation(name)
        if activation is None:
            self.notify(f"Unknown activation {name}; press r to reload.", severity="warning")
            return
        dest = activation.destination
        where = (
            f"{dest.name} ({dest.label}, {dest.rest_url})" if dest.label else f"{dest.name} ({dest.rest_url})"
        )
        body = (
            f"Send what changed in model [b]{escape(activation.model.name)}[/] to {escape(where)}.\n"
            f"Mode [b]{activation.sync_mode}[/]"
            + (
                f", deletions guarded by max_deletes {activation.max_deletes}"
                if activation.sync_mode == "mirror"
                else ""
            )
            + ".\nPress [b]p[/] on the activation first to see what would be sent."
        )

        def confirmed(answer: bool | None) -> None:
            if answer:
                self._start_sync(name)

        self.push_screen(ConfirmScreen(f"Sync [b]{escape(name)}[/] now?", body), confirmed)

    def _start_sync(self, name: str) -> None:
        if not self._free():
            return
        self.busy = f"sync of {name}"
        self.push_screen(SyncScreen(name))
        reporter = AppReporter(self)
        self.run_worker(
            lambda: self.catalog.sync(name, reporter),
            name=f"sync:{name}",
            group=DBT_GROUP,
            thread=True,
            exit_on_error=False,
            description=f"sync {name}",
        )

    def _screens(self, kind: type[Any], name: str) -> list[Any]:
        return [s for s in self.screen_stack if isinstance(s, kind) and s.activation == name]

    def on_sync_progress(self, message: SyncProgress) -> None:
        """Forward the runner's progress to the sync modal (if it is open)."""
        for screen in self._screens(SyncScreen, message.name):
            screen.progress(message.phase, message.done, message.total)
        if message.phase == "sending" and message.total:
            self.sub_title = f"syncing {message.name}: {message.done:,}/{message.total:,}"

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The plan or sync ended: show it, refresh the history, report errors."""
        worker = event.worker
        if worker.group != DBT_GROUP or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        self.busy = None
        self.sub_title = f"{self.listing.project_name} · activations" if self.listing else "activations"
        kind, _, name = worker.name.partition(":")
        if event.state == WorkerState.ERROR:
            error = worker.error or DinmoError("unknown error")
            for screen in self._screens(PlanScreen, name) if kind == "plan" else ():
                screen.show_error(describe(error))
            for screen in self._screens(SyncScreen, name) if kind == "sync" else ():
                screen.failed(describe(error))
            self.report_error(error, title=f"{kind.capitalize()} of {name} failed")
            if kind == "sync":
                self.broadcast(RunsChanged, name)
            return
        if kind == "plan":
            self._plan_done(name, cast("ActivationResult", worker.result))
        else:
            run_id, result = cast("tuple[str, ActivationResult]", worker.result)
            self._sync_done(name, run_id, result)

    def _plan_done(self, name: str, result: ActivationResult) -> None:
        screens = self._screens(PlanScreen, name)
        for screen in screens:
            screen.show_result(result)
        if result.status == "error":
            self.notify(
                result.message or "the plan failed", title=f"Plan of {name}", severity="error", timeout=10
            )
        elif not screens:
            self.notify(
                f"{result.inserted:,} insert · {result.updated:,} update · {result.deleted:,} delete · "
                f"{result.attribute_writes:,} attribute writes",
                title=f"Plan of {name} ready",
            )

    def _sync_done(self, name: str, run_id: str, result: ActivationResult) -> None:
        for screen in self._screens(SyncScreen, name):
            screen.finished(run_id, result)
        self.broadcast(RunsChanged, name)
        counts = (
            f"{result.inserted:,} inserted · {result.updated:,} updated · {result.deleted:,} deleted · "
            f"{result.rejected:,} rejected"
        )
        if result.status == "error":
            self.notify(
                result.message or "the sync failed",
                title=f"Sync of {name} failed",
                severity="error",
                timeout=15,
            )
        elif result.status == "success":
            self.notify(counts, title=f"Sync of {name} done")
        else:
            self.notify(
                f"{counts}\n{result.message}", title=f"Sync of {name}: {result.status}", severity="warning"
            )

    # -- errors, logs, clipboard --------------------------------------------------------------
    def report_error(self, error: BaseException, title: str = "") -> None:
        """An error as a notification, never a crash (a busy state is only a warning)."""
        if isinstance(error, CatalogBusyError):
            self.notify(describe(error), title=title or "Busy", severity="warning", timeout=6, markup=False)
            return
        self.notify(describe(error), title=title or "Error", severity="error", timeout=12, markup=False)

    def on_log_notice(self, message: LogNotice) -> None:
        """A core warning logged while the dashboard runs."""
        if message.severity == "error":
            self.notify(message.text, severity="error", timeout=6, markup=False)
        else:
            self.notify(message.text, severity="warning", timeout=6, markup=False)

    def copy_text(self, text: str, confirmation: str) -> None:
        """Copy with OSC 52 (and pyperclip when it is installed), then say so."""
        self.copy_to_clipboard(text)
        copied_locally = False
        if not self.is_headless:
            try:
                import pyperclip  # type: ignore[import-not-found, import-untyped, unused-ignore]

                pyperclip.copy(text)
                copied_locally = True
            except Exception:  # not installed, or no clipboard backend (SSH, headless)
                pass
        hint = "" if copied_locally else " (through the terminal: OSC 52; some terminals ignore it)"
        self.notify(confirmation + hint, timeout=4)


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker now, while ``sys.stderr`` is the real one.

    dbt's adapters create multiprocessing locks, which start the tracker on first use, passing it
    ``sys.stderr.fileno()``. Inside a running Textual app stderr is captured (fileno -1) and the
    spawn fails with "bad value(s) in fds_to_keep"; started beforehand, it is simply reused.
    """
    with contextlib.suppress(Exception):
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()


def describe(error: BaseException) -> str:
    """A one-paragraph description of an error for a notification."""
    if isinstance(error, ConfigError):
        first = "\n".join(str(p) for p in error.problems[:3])
        more = f"\n… and {len(error.problems) - 3} more" if len(error.problems) > 3 else ""
        return f"{first}{more}"
    if isinstance(error, DinmoError):
        return str(error)
    return f"{type(error).__name__}: {error}"
