"""Emulator state shared by the HTTP layer and the Python API: settings, workspace, rate
limiter, faults, request log and persistence. Thread-safe.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from ._faults import Fault, FaultQueue
from ._ratelimit import RateLimiter
from ._settings import EmulatorSettings
from ._users import iso
from ._workspace import Workspace

log = logging.getLogger("dbt_dinmo.emulator")

# (epoch time, endpoint, status or fault outcome, raw body or None)
LogEntry = tuple[float, str, "int | str", "bytes | None"]


class EmulatorCore:
    """Everything behind one emulator instance, independent of the HTTP server."""

    def __init__(self, settings: EmulatorSettings | None = None, workspace: Workspace | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        self.workspace = workspace if workspace is not None else Workspace()
        self.limiter = RateLimiter(self.settings.rate_limits)
        self.faults = FaultQueue()
        self._log: deque[LogEntry] = deque(maxlen=self.settings.request_log_size)
        self._save_lock = threading.Lock()
        self._saved_version = -1

    # ------------------------------------------------------------------ settings, faults, reset

    def update_settings(self, **changes: Any) -> EmulatorSettings:
        """Apply setting changes at runtime (validated); returns the new settings."""
        new = self.settings.replace(**changes)
        if new.rate_limits != self.settings.rate_limits:
            self.limiter.configure(new.rate_limits)
            self.limiter.reset()
        if new.request_log_size != self.settings.request_log_size:
            self._log = deque(self._log, maxlen=new.request_log_size)
        self.settings = new
        return new

    def add_faults(self, faults: Iterable[Fault | Mapping[str, Any]] | Fault | Mapping[str, Any]) -> None:
        """Queue one fault or several (``Fault`` objects or their JSON form)."""
        if isinstance(faults, Fault | Mapping):
            faults = [faults]
        self.faults.add(faults)

    def reset(self) -> None:
        """Empty the workspace, faults, request log and rate-limit windows (settings stay)."""
        self.workspace.reset()
        self.faults.clear()
        self.limiter.reset()
        self._log.clear()

    # ------------------------------------------------------------------ request log

    def log_request(self, endpoint: str, status: int | str, body: bytes | None) -> None:
        """Count the request and keep it in the bounded log (headers are never stored)."""
        self.workspace.record_request(endpoint, status)
        if self._log.maxlen:
            self._log.append((time.time(), endpoint, status, body))

    def requests(self, *, endpoint: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Logged requests, oldest first: time, endpoint, status (or fault outcome), body."""
        entries = [e for e in list(self._log) if endpoint in (None, e[1])]
        if limit is not None:
            entries = entries[-limit:] if limit > 0 else []
        out = []
        for ts, path, status, raw in entries:
            item: dict[str, Any] = {"time": iso(ts), "endpoint": path, "status": status}
            try:
                item["body"] = None if raw is None else orjson.loads(raw)
            except orjson.JSONDecodeError:
                item["body"] = None
                item["raw_body"] = raw.decode("utf-8", "replace")[:2000] if raw else ""
            out.append(item)
        return out

    # ------------------------------------------------------------------ persistence

    def load(self) -> bool:
        """Load ``data_file`` when it exists; returns whether something was loaded."""
        path = self.settings.data_file
        if not path or not os.path.exists(path):
            return False
        self.workspace.load_state(Path(path).read_bytes())
        self._saved_version = self.workspace.version
        log.info("emulator workspace loaded from %s (%d users)", path, len(self.workspace))
        return True

    @property
    def dirty(self) -> bool:
        return bool(self.settings.data_file) and self.workspace.version != self._saved_version

    def save(self, *, force: bool = False) -> bool:
        """Write ``data_file`` atomically (temp file + os.replace) when dirty (or forced)."""
        path = self.settings.data_file
        if not path:
            return False
        with self._save_lock:
            version = self.workspace.version
            if version == self._saved_version and not force:
                return False
            raw = self.workspace.to_state()
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            self._saved_version = version
        log.debug("emulator workspace saved to %s", path)
        return True
