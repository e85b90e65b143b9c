"""A read-mostly facade over a project for the terminal dashboard (and any other face).

The TUI never touches the manifest, the state store or the runner directly: it asks a
:class:`Catalog`. Everything here is plain Python (no Textual), typed, and cheap to call from a
worker thread:

* the activation list comes from the manifest (no warehouse, no dbt import);
* history queries open the state store read-only, run one SQL statement and close it at once,
  so a CLI run in another process is never blocked for long (while it holds the file, the
  query fails with :class:`~dbt_dinmo.errors.StateLockedError`);
* history is paged (``limit``/``offset``): the app never loads thousands of runs at once;
* ``plan`` and ``sync`` go through :class:`~dbt_dinmo.runner.Runner`, one at a time per
  process (dbt's adapters are process-wide), and history reads wait for them briefly, then
  fail with :class:`CatalogBusyError` instead of hanging.

Braze dashboard links: for services whose rows name a user (attributes, events, purchases,
subscription statuses and user lists),
:meth:`Catalog.dashboard_link` builds, from the destination's ``dashboard_url``::

    {dashboard_url}/users/user_search/user-search?query=<identifier>

(a user alias is searched as ``<alias_label>:<alias_name>``, the form Braze's Search Users page
accepts). Braze does not document this deep link: it is a best guess that opens the dashboard's
user search; the identifier is in the copied row to paste there otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dbt_dinmo.activation import EVENT_SERVICES, SEGMENT_SERVICES, Activation
from dbt_dinmo.errors import ConfigError, DinmoError, Problem
from dbt_dinmo.project import Project

if TYPE_CHECKING:
    import duckdb

    from dbt_dinmo.reporting import Reporter
    from dbt_dinmo.results import ActivationResult, RunResult
    from dbt_dinmo.runner import ClientFactory

__all__ = [
    "USER_SERVICES",
    "ActivationRun",
    "Catalog",
    "CatalogBusyError",
    "Listing",
    "RejectedPage",
    "RejectedRow",
    "RunInfo",
    "dashboard_link",
    "next_due",
]

# Services whose rows name one Braze user by the activation's identifier (the link's target).
USER_SERVICES = ("user_attributes", *EVENT_SERVICES, *SEGMENT_SERVICES)
# Columns added to ``run_activations`` after the first release: an older state file opened
# read-only (never migrated) may lack them, and their figures then read as 0.
ADDED_COUNT_FIELDS = ("entered", "exited", "waiting", "profiles_checked", "export_calls")
# What "changes" adds up: users inserted, updated, deleted, or entering and leaving a segment.
CHANGE_FIELDS = ("inserted", "updated", "deleted", "entered", "exited")
COUNT_FIELDS = (
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
    *ADDED_COUNT_FIELDS,
)
READ_WAIT = 2.0  # seconds a history read waits for an in-process plan/sync before giving up
SEARCH_LIMIT = 500


class CatalogBusyError(DinmoError):
    """A plan or sync of this process holds the state; try again when it ends."""


@dataclass(frozen=True)
class Listing:
    """The project's activations, or why there are none."""

    activations: list[Activation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    manifest_missing: bool = False
    manifest_path: Path | None = None
    project_name: str = ""


@dataclass(frozen=True)
class ActivationRun:
    """One activation's figures in one run (a ``run_activations`` row)."""

    run_id: str
    activation: str
    status: str
    message: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    service: str = ""
    sync_mode: str = ""
    destination: str = ""
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
    entered: int = 0  # segments: members who joined (subscribed, or flagged true)
    exited: int = 0  # segments: members who left (unsubscribed, or flagged false)
    waiting: int = 0  # users not sent: no Braze profile yet (checked again next run)
    profiles_checked: int = 0  # identifiers checked with /users/export/ids
    export_calls: int = 0  # /users/export/ids requests

    @property
    def is_segment(self) -> bool:
        """True for a subscription_status or user_lists run (entries and exits, no upserts)."""
        return self.sync_mode == "segment" or self.service in SEGMENT_SERVICES

    @property
    def changes(self) -> int:
        """Users inserted, updated or deleted, or entering or leaving a segment."""
        return self.inserted + self.updated + self.deleted + self.entered + self.exited

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (None while unfinished)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ActivationRun:
        """Build from a ``run_activations`` row as a dict."""
        counts = {k: int(row.get(k) or 0) for k in COUNT_FIELDS}
        return cls(
            run_id=str(row.get("run_id") or ""),
            activation=str(row.get("activation") or ""),
            status=str(row.get("status") or ""),
            message=str(row.get("message") or ""),
            started_at=row.get("started_at"),
            finished_at=row.get("finished_at"),
            service=str(row.get("service") or ""),
            sync_mode=str(row.get("sync_mode") or ""),
            destination=str(row.get("destination") or ""),
            **counts,
        )


@dataclass(frozen=True)
class RunInfo:
    """A whole run: its ``runs`` row and every activation's figures."""

    run_id: str
    command: str
    status: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    activations: list[ActivationRun]

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (None while unfinished)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class RejectedRow:
    """One rejected row, with a Braze dashboard link when one can be built."""

    activation: str
    identifier: str | None
    reason: str
    origin: str
    detail: str
    link: str | None = None

    def as_text(self) -> str:
        """Tab-separated, for the clipboard (pastes into a spreadsheet)."""
        parts = [self.activation, self.identifier or "", self.reason, self.origin, self.detail]
        parts.append(self.link or "")
        return "\t".join(" ".join(p.split()) for p in parts)


@dataclass(frozen=True)
class RejectedPage:
    """Rejected rows matching a search (at most ``limit``) and how many matched in all."""

    rows: list[RejectedRow]
    total: int
    search: str = ""


def dashboard_link(activation: Activation, identifier: str | None) -> str | None:
    """The Braze dashboard's user search for one identifier; None when it cannot be built."""
    base = activation.destination.dashboard_url.rstrip("/")
    if not base or not identifier or activation.service not in USER_SERVICES:
        return None
    query = identifier
    if activation.identifier.type == "user_alias" and activation.identifier.alias_label:
        query = f"{activation.identifier.alias_label}:{identifier}"
    return f"{base}/users/user_search/user-search?query={quote(query, safe='')}"


def next_due(schedule: str | None, now: dt.datetime) -> dt.datetime | None:
    """When a cron schedule is next due after ``now`` (None without a valid schedule)."""
    if not schedule:
        return None
    try:
        from croniter import croniter

        nxt = croniter(schedule, now).get_next(dt.datetime)
    except Exception:  # an invalid expression is reported by `validate`, not here
        return None
    return nxt if isinstance(nxt, dt.datetime) else None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Catalog:
    """What the dashboard shows and does, for one project."""

    def __init__(
        self,
        project: Project,
        *,
        client_factory: ClientFactory | None = None,
        read_wait: float = READ_WAIT,
    ) -> None:
        self.project = project
        self.client_factory = client_factory
        self.read_wait = read_wait
        self._state_lock = threading.RLock()  # state-file access within this process
        self._dbt_lock = threading.Lock()  # one plan or sync at a time (dbt is process-wide)
        self._by_name: dict[str, Activation] = {}
        self.busy_with: str | None = None  # "plan <name>" / "sync <name>" while one runs

    # -- activations ------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        """Where dbt writes ``manifest.json`` for this project."""
        return self.project.target_dir / "manifest.json"

    def reload(self) -> None:
        """Forget cached config and manifest (after ``dbt build`` or an edit of dinmo.yml)."""
        self.project = Project(self.project.options)

    def activations(self) -> Listing:
        """Every activation of the manifest, sorted by name, and every problem found.

        A missing manifest is not an error: the listing says so. Config problems (e.g. an
        unset environment variable) come back as ``problems``; activations that cannot be
        built at all are left out.
        """
        path = self.manifest_path
        if not path.is_file():
            return Listing(manifest_missing=True, manifest_path=path)
        try:
            activations, problems = self.project.parse()
        except ConfigError as exc:
            return Listing(problems=list(exc.problems), manifest_path=path)
        self._by_name = {a.name: a for a in activations}
        name = ""
        with contextlib.suppress(DinmoError):
            name = self.project.manifest.project_name
        return Listing(activations, problems, manifest_path=path, project_name=name)

    def activation(self, name: str) -> Activation | None:
        """A loaded activation by name (after :meth:`activations`)."""
        return self._by_name.get(name)

    # -- history ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection to the state file, held only for one query."""
        import duckdb

        from dbt_dinmo.state import StateStore

        if not self._state_lock.acquire(timeout=self.read_wait):
            raise CatalogBusyError(
                f"{self.busy_with or 'a sync'} is using the state; the history refreshes when it ends."
            )
        try:
            try:
                store = StateStore(self.project.state_dir, read_only=True)
            except duckdb.Error as exc:
                raise DinmoError(f"cannot read the state in {self.project.state_dir}: {exc}") from None
            with store:
                try:
                    yield store.con
                except duckdb.Error as exc:
                    raise DinmoError(f"cannot read the run history: {exc}") from None
        finally:
            self._state_lock.release()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._connection() as con:
            cur = con.execute(sql, list(params))
            names = [d[0] for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def has_state(self) -> bool:
        """True once a run has written the state file."""
        from dbt_dinmo.state import STATE_FILE

        return (self.project.state_dir / STATE_FILE).is_file()

    def last_runs(self) -> dict[str, ActivationRun]:
        """Each activation's latest run, by activation name (one query)."""
        if not self.has_state():
            return {}
        rows = self._query(
            "SELECT * FROM run_activations "
            "QUALIFY row_number() OVER (PARTITION BY activation ORDER BY started_at DESC) = 1"
        )
        return {r["activation"]: ActivationRun.from_row(r) for r in rows}

    def runs(self, activation: str | None = None, limit: int = 100, offset: int = 0) -> list[ActivationRun]:
        """One page of activation runs, newest first (all activations when ``activation`` is None)."""
        if not self.has_state():
            return []
        where, params = ("WHERE activation = ?", [activation]) if activation else ("", [])
        rows = self._query(
            f"SELECT * FROM run_activations {where} ORDER BY started_at DESC, run_id "
            f"LIMIT {int(limit)} OFFSET {int(offset)}",
            params,
        )
        return [ActivationRun.from_row(r) for r in rows]

    def run_count(self, activation: str | None = None) -> int:
        """How many activation runs the history holds."""
        if not self.has_state():
            return 0
        where, params = ("WHERE activation = ?", [activation]) if activation else ("", [])
        return int(self._query(f"SELECT count(*) AS n FROM run_activations {where}", params)[0]["n"])

    def changes_per_run(self, activation: str, limit: int = 60) -> list[int]:
        """Users changed (inserted + updated + deleted + entered + exited) by the latest runs,
        oldest first."""
        if not self.has_state():
            return []
        with self._connection() as con:
            cur = con.execute("SELECT * FROM run_activations LIMIT 0")
            present = {d[0] for d in cur.description or ()}
            total = " + ".join(f"coalesce({c}, 0)" for c in CHANGE_FIELDS if c in present) or "0"
            rows = con.execute(
                f"SELECT {total} AS n FROM run_activations WHERE activation = ? "
                f"ORDER BY started_at DESC LIMIT {int(limit)}",
                [activation],
            ).fetchall()
        return [int(r[0] or 0) for r in reversed(rows)]

    def run_detail(self, run_id: str) -> RunInfo | None:
        """A run and every activation's figures in it (None when unknown)."""
        if not self.has_state():
            return None
        with self._connection() as con:
            cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
            names = [d[0] for d in cur.description or ()]
            found = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            cur = con.execute(
                "SELECT * FROM run_activations WHERE run_id = ? ORDER BY started_at, activation", [run_id]
            )
            names = [d[0] for d in cur.description or ()]
            parts = [ActivationRun.from_row(dict(zip(names, r, strict=True))) for r in cur.fetchall()]
        if not found and not parts:
            return None
        run = found[0] if found else {}
        return RunInfo(
            run_id=run_id,
            command=str(run.get("command") or "run"),
            status=str(run.get("status") or (parts[0].status if parts else "")),
            started_at=run.get("started_at") or (parts[0].started_at if parts else None),
            finished_at=run.get("finished_at") or (parts[-1].finished_at if parts else None),
            activations=parts,
        )

    def rejected(
        self,
        run_id: str,
        activation: str | None = None,
        search: str = "",
        limit: int = SEARCH_LIMIT,
    ) -> RejectedPage:
        """Rejected rows of a run, optionally of one activation and matching a search text.

        The search is case-insensitive and looks in the identifier, reason, origin and detail.
        """
        if not self.has_state():
            return RejectedPage([], 0, search)
        where = ["run_id = ?"]
        params: list[Any] = [run_id]
        if activation:
            where.append("activation = ?")
            params.append(activation)
        term = search.strip()
        if term:
            like = _like(term)
            where.append(
                "(coalesce(identifier, '') ILIKE ? ESCAPE '\\' OR coalesce(reason, '') ILIKE ? ESCAPE '\\' "
                "OR coalesce(origin, '') ILIKE ? ESCAPE '\\' OR coalesce(detail, '') ILIKE ? ESCAPE '\\')"
            )
            params.extend([like] * 4)
        clause = " AND ".join(where)
        with self._connection() as con:
            total = con.execute(f"SELECT count(*) FROM rejected_rows WHERE {clause}", params).fetchall()
            cur = con.execute(
                f"SELECT activation, identifier, reason, origin, detail FROM rejected_rows WHERE {clause} "
                f"ORDER BY activation, identifier NULLS LAST LIMIT {int(limit)}",
                params,
            )
            raw = cur.fetchall()
        rows = []
        for act, ident, reason, origin, detail in raw:
            a = self._by_name.get(str(act))
            link = dashboard_link(a, ident) if a is not None else None
            rows.append(
                RejectedRow(str(act), ident, str(reason or ""), str(origin or ""), str(detail or ""), link)
            )
        return RejectedPage(rows, int(total[0][0]) if total else 0, term)

    def dashboard_link(self, activation: str | Activation, identifier: str | None) -> str | None:
        """The Braze dashboard's user search for an identifier of an activation."""
        a = self._by_name.get(activation) if isinstance(activation, str) else activation
        return dashboard_link(a, identifier) if a is not None else None

    # -- plan and sync ----------------------------------------------------------------------
    def _runner(self, reporter: Reporter | None) -> Any:
        from dbt_dinmo.runner import Runner, default_client

        return Runner(self.project, reporter, self.client_factory or default_client)

    @contextlib.contextmanager
    def _exclusive(self, what: str) -> Iterator[None]:
        if not self._dbt_lock.acquire(blocking=False):
            raise CatalogBusyError(f"{self.busy_with or 'a plan or sync'} is still running; wait for it.")
        try:
            with self._state_lock:
                self.busy_with = what
                try:
                    yield
                finally:
                    self.busy_with = None
        finally:
            self._dbt_lock.release()

    def plan(self, name: str, sample_size: int = 3, reporter: Reporter | None = None) -> ActivationResult:
        """Dry run of one activation: counts, attribute writes, blocked deletions, samples."""
        from dbt_dinmo.runner import RunOptions

        with self._exclusive(f"the plan of {name}"):
            options = RunOptions(select=(name,), sample_size=sample_size)
            result: RunResult = self._runner(reporter).plan(options)
        return _only(result, name)

    def sync(self, name: str, reporter: Reporter | None = None) -> tuple[str, ActivationResult]:
        """Sync one activation; return the run id and its result (errors inside the result)."""
        from dbt_dinmo.runner import RunOptions

        with self._exclusive(f"the sync of {name}"):
            result: RunResult = self._runner(reporter).run(RunOptions(select=(name,)))
        return result.run_id, _only(result, name)


def _only(result: RunResult, name: str) -> ActivationResult:
    for res in result.results:
        if res.activation == name:
            return res
    raise DinmoError(f"the runner returned no result for {name}.")
