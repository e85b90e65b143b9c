"""Gate activations on the last dbt build, and decide which are due on their schedule.

A model whose own build, any ancestor's, or any test on them ended in ``error``, ``fail`` or
``skipped`` in ``target/run_results.json`` must not be synced: Braze would receive data dbt
itself flagged. Nodes absent from the file were not part of that invocation and do not block.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from dbt_dinmo.manifest import Manifest

BLOCKING = frozenset({"error", "fail", "skipped", "runtime error", "partial success"})
HEALTHY = frozenset({"success", "pass", "warn", "no-op", "reused"})
RUN_RESULTS = "run_results.json"


@dataclass(frozen=True)
class BuildStatus:
    """Node statuses of dbt's latest ``run_results.json``."""

    path: Path
    invocation_id: str
    generated_at: str
    statuses: dict[str, str] = field(default_factory=dict)
    stale: str | None = None  # why the file may not describe the models in the manifest

    def blockers(self, manifest: Manifest, model_id: str) -> list[tuple[str, str]]:
        """(node, status) pairs that forbid syncing this model: itself, ancestors, their tests."""
        nodes = {model_id} | _ancestors(manifest, model_id)
        checked = set(nodes)
        for node in nodes:
            children = manifest.child_map.get(node, ())
            checked.update(c for c in children if c.startswith(("test.", "unit_test.")))
        return sorted((n, self.statuses[n]) for n in checked if self.statuses.get(n) in BLOCKING)


def load_build_status(target_dir: Path, manifest: Manifest) -> BuildStatus | None:
    """Read dbt's ``run_results.json`` (never written by dbt-dinmo); None when absent."""
    path = target_dir / RUN_RESULTS
    if not path.is_file():
        return None
    try:
        raw = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return BuildStatus(path, "", "", {}, stale="it is not valid JSON")
    meta = raw.get("metadata") or {}
    statuses = {r["unique_id"]: str(r.get("status")) for r in raw.get("results") or [] if "unique_id" in r}
    generated = str(meta.get("generated_at") or "")
    stale = None
    older = bool(manifest.generated_at and generated) and _parse(generated) < _parse(manifest.generated_at)
    if older and meta.get("invocation_id") != manifest.invocation_id:
        stale = (
            f"it was written at {generated}, before the manifest ({manifest.generated_at}), by another "
            "dbt invocation; run `dbt build` to refresh it"
        )
    return BuildStatus(path, str(meta.get("invocation_id") or ""), generated, statuses, stale)


def _parse(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _ancestors(manifest: Manifest, node: str) -> set[str]:
    seen: set[str] = set()
    queue = deque([node])
    while queue:
        for parent in manifest.parent_map.get(queue.popleft(), ()):
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return seen


def next_due(schedule: str | None, last_started: dt.datetime | None) -> dt.datetime | None:
    """When an activation is next due: None means now (no schedule, or never run)."""
    if not schedule or last_started is None:
        return None
    from croniter import croniter

    base = last_started if last_started.tzinfo else last_started.replace(tzinfo=dt.timezone.utc)
    nxt = croniter(schedule, base.astimezone(dt.timezone.utc)).get_next(dt.datetime)
    return nxt if nxt.tzinfo else nxt.replace(tzinfo=dt.timezone.utc)


def is_due(schedule: str | None, last_started: dt.datetime | None, now: dt.datetime) -> bool:
    """True when the activation should run now."""
    due = next_due(schedule, last_started)
    return due is None or due <= now
