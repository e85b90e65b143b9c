"""While the dashboard runs, core warnings become notifications instead of text on the screen."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .messages import LogNotice

if TYPE_CHECKING:
    from textual.app import App


class NotifyHandler(logging.Handler):
    """Forwards WARNING and above to the app as :class:`LogNotice` messages (thread-safe)."""

    def __init__(self, app: App[Any]) -> None:
        super().__init__(logging.WARNING)
        self.app = app
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Post the record; never raise."""
        with contextlib.suppress(Exception):
            severity = "error" if record.levelno >= logging.ERROR else "warning"
            self.app.post_message(LogNotice(self.format(record), severity))


@contextlib.contextmanager
def route_logs_to(app: App[Any]) -> Iterator[None]:
    """Replace the root logger's handlers (the CLI's stderr handler would draw over the UI)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = NotifyHandler(app)
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved
