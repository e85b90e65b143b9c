"""What a run produced: per-activation figures, and the ``run_results.json`` artifact."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from dbt_dinmo import __version__

SCHEMA_URL = "https://dbt-dinmo.github.io/schemas/dinmo/run-results/v1.json"
ARTIFACT_DIR = "dinmo"
ARTIFACT = "run_results.json"

SUCCESS, PARTIAL, ERROR, SKIPPED = "success", "partial success", "error", "skipped"


@dataclass
class ActivationResult:
    """One activation's outcome in a run or a plan."""

    activation: str
    unique_id: str
    service: str
    sync_mode: str
    destination: str
    relation_name: str | None
    status: str = SUCCESS
    message: str = ""
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    finished_at: dt.datetime | None = None
    source_rows: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    rejected: int = 0
    retried: int = 0
    failed: int = 0
    deletes_blocked: int = 0
    attribute_writes: int = 0
    requests: int = 0
    entered: int = 0  # segments: users who joined (subscribed, or flagged true)
    exited: int = 0  # segments: users who left (unsubscribed, or flagged false)
    waiting: int = 0  # users not sent because their Braze profile does not exist (yet)
    profiles_checked: int = 0  # identifiers checked with /users/export/ids (plan: to check)
    export_calls: int = 0  # /users/export/ids requests (plan: needed)
    export_seconds: float = 0.0  # plan: the least time the export rate limit implies
    rejections: list[dict[str, Any]] = field(default_factory=list)  # a sample, for output
    samples: list[dict[str, Any]] = field(default_factory=list)  # plan: example payloads
    planned_deletes: list[str] = field(default_factory=list)  # plan: a sample

    @property
    def execution_time(self) -> float:
        """Seconds spent."""
        end = self.finished_at or dt.datetime.now(dt.timezone.utc)
        return (end - self.started_at).total_seconds()

    def counts(self) -> dict[str, int]:
        """The figures, as stored in the history and the artifact."""
        keys = [
            "source_rows",
            "inserted",
            "updated",
            "deleted",
            "unchanged",
            "rejected",
            "retried",
            "failed",
            "deletes_blocked",
            "attribute_writes",
            "requests",
            "entered",
            "exited",
            "waiting",
            "profiles_checked",
            "export_calls",
        ]
        return {k: int(getattr(self, k)) for k in keys}

    def history_row(self) -> dict[str, Any]:
        """The row stored in ``run_activations``."""
        return {
            "activation": self.activation,
            "service": self.service,
            "sync_mode": self.sync_mode,
            "destination": self.destination,
            "status": self.status,
            "message": self.message,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            **self.counts(),
        }


@dataclass
class RunResult:
    """A whole run (or plan)."""

    run_id: str
    command: str
    started_at: dt.datetime
    args: dict[str, Any]
    results: list[ActivationResult] = field(default_factory=list)
    finished_at: dt.datetime | None = None
    dbt_version: str = ""
    not_due: list[tuple[str, dt.datetime | None]] = field(default_factory=list)  # schedule not due
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """error when any activation failed, partial success when rows were rejected."""
        statuses = {r.status for r in self.results}
        if ERROR in statuses:
            return ERROR
        return PARTIAL if statuses & {PARTIAL, SKIPPED} else SUCCESS

    @property
    def exit_code(self) -> int:
        """0 when everything synced, 1 when an activation failed, was skipped or rejected rows."""
        return 0 if self.status == SUCCESS else 1

    def artifact(self) -> dict[str, Any]:
        """The ``run_results.json`` document, shaped like dbt's."""
        end = self.finished_at or dt.datetime.now(dt.timezone.utc)
        return {
            "metadata": {
                "dbt_schema_version": SCHEMA_URL,
                "dbt_version": self.dbt_version,
                "dinmo_version": __version__,
                "generated_at": _iso(end),
                "invocation_id": self.run_id,
                "invocation_started_at": _iso(self.started_at),
                "env": {},
            },
            "results": [
                {
                    "status": r.status,
                    "timing": [
                        {
                            "name": "execute",
                            "started_at": _iso(r.started_at),
                            "completed_at": _iso(r.finished_at or end),
                        }
                    ],
                    "thread_id": "main",
                    "execution_time": round(r.execution_time, 3),
                    "adapter_response": {"_message": r.message or r.status.upper(), **r.counts()},
                    "message": r.message or None,
                    "failures": r.rejected,
                    "unique_id": r.unique_id,
                    "compiled": None,
                    "compiled_code": None,
                    "relation_name": r.relation_name,
                    "batch_results": None,
                }
                for r in self.results
            ],
            "elapsed_time": round((end - self.started_at).total_seconds(), 3),
            "args": {"which": self.command, **self.args},
            "not_due": [{"activation": n, "next_due": _iso(d) if d else None} for n, d in self.not_due],
            "warnings": self.warnings,
        }

    def write_artifact(self, target_dir: Path) -> Path:
        """Write ``target/dinmo/run_results.json`` atomically (never dbt's own files)."""
        out = target_dir / ARTIFACT_DIR
        out.mkdir(parents=True, exist_ok=True)
        path = out / ARTIFACT
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(orjson.dumps(self.artifact(), option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)
        return path

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (for ``--format json`` and tests)."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "not_due": [{"activation": n, "next_due": _iso(d) if d else None} for n, d in self.not_due],
            "warnings": self.warnings,
            "results": [
                {k: v for k, v in asdict(r).items() if k not in ("started_at", "finished_at")}
                for r in self.results
            ],
        }


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
