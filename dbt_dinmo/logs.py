"""Logging for the CLI: rich text on stderr, or dbt's JSON envelope (``--log-format json``).

With JSON, every event is one line on stdout shaped like dbt's structured logs
(``{"info": {name, code, level, msg, ts, invocation_id, ...}, "data": {...}}``), so log tooling that
reads dbt's JSON logs reads ours. Our event names start with ``Dinmo`` and codes with ``DM``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any, TextIO

import orjson

if TYPE_CHECKING:
    from dbt_dinmo.activation import Activation
    from dbt_dinmo.results import ActivationResult, RunResult

INVOCATION_ID = str(uuid.uuid4())
LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error"}
CODES = {
    "DinmoLog": "DM001",
    "DinmoActivationStart": "DM100",
    "DinmoActivationProgress": "DM101",
    "DinmoActivationResult": "DM102",
    "DinmoRunResult": "DM200",
    "DinmoProblem": "DM300",
}


def emit(
    name: str, msg: str, data: dict[str, Any] | None = None, level: str = "info", stream: TextIO | None = None
) -> None:
    """Write one event in dbt's JSON envelope."""
    event = {
        "info": {
            "name": name,
            "code": CODES.get(name, "DM000"),
            "level": level,
            "msg": msg,
            "invocation_id": INVOCATION_ID,
            "pid": os.getpid(),
            "thread": threading.current_thread().name,
            "ts": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "category": "",
            "extra": {},
        },
        "data": data or {},
    }
    out = stream or sys.stdout
    out.write(orjson.dumps(event, default=str).decode() + "\n")
    out.flush()


class JsonLogHandler(logging.Handler):
    """Python log records as ``DinmoLog`` events."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record."""
        try:
            emit("DinmoLog", record.getMessage(), {"logger": record.name}, LEVELS.get(record.levelno, "info"))
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class JsonReporter:
    """Runner callbacks as JSON events."""

    def __init__(self, every: int = 1000) -> None:
        self.every = every
        self._last: dict[str, int] = {}

    def activation_started(self, activation: Activation, phase: str) -> None:
        """An activation begins a phase."""
        emit(
            "DinmoActivationStart",
            f"{activation.name}: {phase}",
            {"activation": activation.name, "unique_id": activation.unique_id, "phase": phase},
        )

    def progress(self, activation: Activation, done: int, total: int) -> None:
        """Progress, at most one event per ``every`` objects."""
        last = self._last.get(activation.name, 0)
        if done - last >= self.every or done == total:
            self._last[activation.name] = done
            emit(
                "DinmoActivationProgress",
                f"{activation.name}: {done}/{total}",
                {"activation": activation.name, "done": done, "total": total},
                "debug",
            )

    def activation_finished(self, result: ActivationResult) -> None:
        """An activation ended."""
        level = {"error": "error", "skipped": "warn", "partial success": "warn"}.get(result.status, "info")
        emit(
            "DinmoActivationResult",
            f"{result.status.upper()} {result.activation}"
            + (f": {result.message}" if result.message else ""),
            {
                "activation": result.activation,
                "unique_id": result.unique_id,
                "status": result.status,
                "message": result.message,
                "execution_time": round(result.execution_time, 3),
                **result.counts(),
            },
            level,
        )


def emit_run(result: RunResult) -> None:
    """The run's end, with its summary."""
    emit(
        "DinmoRunResult",
        f"Done: {result.status}.",
        result.summary(),
        "error" if result.status == "error" else "info",
    )
