"""An append-only acknowledgement journal: one line per batch Braze acknowledged.

Appending a line costs microseconds, so every acknowledged batch is recorded the moment it is
acknowledged, even at thousands of batches per second. Lines are flushed to the operating system
at once, so they survive a crash, Ctrl-C or ``kill -9`` of the process; a line torn by a kill is
ignored (its batch is simply sent again). The state store folds the journal into its tables in
one transaction at the end of a run, or at the start of the next one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson


class Journal:
    """Appends acknowledged batches of one activation to ``<state>/journal/<table>.ndjson``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def append(self, op: str, seq: int, ids: Sequence[str], columns: dict[str, Sequence[Any]]) -> None:
        """Record one acknowledged batch: identifiers and, per state column, the acknowledged hashes."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        line = orjson.dumps({"op": op, "seq": seq, "ids": list(ids), "cols": columns}) + b"\n"
        os.write(self._fd, line)  # one write() per line: appended atomically, kept by the OS on kill

    def close(self) -> None:
        """Close the file (it stays until folded)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every complete line; a torn last line is skipped."""
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    yield orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue

    def clear(self) -> None:
        """Remove the journal once folded."""
        self.close()
        self.path.unlink(missing_ok=True)
