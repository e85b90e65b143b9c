"""Request, object and data-point counters kept by the workspace (not thread-safe)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

ARRAYS = ("attributes", "events", "purchases")


class Counters:
    """Requests per endpoint and outcome, objects and data points per array, misc totals."""

    def __init__(self) -> None:
        self.requests: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.objects = {a: dict.fromkeys(("received", "processed", "errors", "skipped"), 0) for a in ARRAYS}
        self.points = dict.fromkeys(ARRAYS, 0)
        self.misc: defaultdict[str, int] = defaultdict(int)

    @property
    def data_points(self) -> int:
        return sum(self.points.values())

    def view(self) -> dict[str, Any]:
        """JSON-ready view (shares the live dicts: serialize under the workspace lock)."""
        by_status: defaultdict[str, int] = defaultdict(int)
        for statuses in self.requests.values():
            for status, n in statuses.items():
                by_status[status] += n
        return {
            "requests": self.requests,
            "requests_by_status": by_status,
            "objects": self.objects,
            "data_points": {"total": self.data_points, **self.points},
            **self.misc,
        }

    def state(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "objects": self.objects,
            "data_points": self.points,
            "misc": self.misc,
        }

    def load(self, state: dict[str, Any]) -> None:
        for path, statuses in state.get("requests", {}).items():
            self.requests[path].update(statuses)
        for array, counts in state.get("objects", {}).items():
            self.objects.setdefault(array, {}).update(counts)
        self.points.update(state.get("data_points", {}))
        self.misc.update(state.get("misc", {}))
