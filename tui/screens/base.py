"""What every dashboard screen shares: typed access to the app and thread workers for reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from textual.screen import Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from ..app import DinmoApp
    from ..messages import RunsChanged


class DinmoScreen(Screen[None]):
    """A screen whose slow reads run in thread workers; results come back to ``loaded_<name>``."""

    @property
    def dinmo(self) -> DinmoApp:
        """The app, typed."""
        return cast("DinmoApp", self.app)

    def load(self, name: str, func: Callable[..., Any], *args: Any) -> Worker[Any]:
        """Run ``func(*args)`` in a thread; a newer load of the same name replaces it."""
        return self.run_worker(
            lambda: func(*args),
            name=name,
            group=name,
            exclusive=True,
            thread=True,
            exit_on_error=False,
            description=f"{type(self).__name__}: {name}",
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Hand a finished load to ``loaded_<name>``; report a failed one."""
        worker = event.worker
        if event.state == WorkerState.SUCCESS:
            handler = getattr(self, f"loaded_{worker.name}", None)
            if handler is not None:
                handler(worker.result)
        elif event.state == WorkerState.ERROR and worker.error is not None:
            failed = getattr(self, f"failed_{worker.name}", None)
            if failed is not None:
                failed(worker.error)
            self.dinmo.report_error(worker.error)

    def reload(self) -> None:
        """Fetch what the screen shows again (``r``); screens override it."""

    def on_runs_changed(self, message: RunsChanged) -> None:
        """The history changed (a sync ended); screens showing it override this."""
