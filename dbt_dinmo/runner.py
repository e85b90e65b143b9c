"""The runner: the one API the CLI and the TUI drive.

``plan`` and ``run`` share every step (select, validate, read, diff, build payloads); ``run``
then sends under the rate limiter and journals what Braze acknowledged, batch by batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from dbt_dinmo.activation import Activation
from dbt_dinmo.attributes import (
    AttributeObjects,
    Rejection,
    RowRef,
    delete_kwargs,
    deleted_refs,
    journal_rows,
    rejection_table,
)
from dbt_dinmo.braze import BatchResult, BatchRule, BrazeClient, RateLimits, pack
from dbt_dinmo.config import Destination
from dbt_dinmo.diff import Diff
from dbt_dinmo.errors import BrazeError, DinmoError, WarehouseError
from dbt_dinmo.gating import is_due, load_build_status, next_due
from dbt_dinmo.project import Project, ResolvedColumns
from dbt_dinmo.reporting import NullReporter, Reporter
from dbt_dinmo.results import ERROR, PARTIAL, SKIPPED, SUCCESS, ActivationResult, RunResult
from dbt_dinmo.state import ActivationState, RunLock, StateStore

if TYPE_CHECKING:
    from dbt_dinmo.warehouse import Warehouse

log = logging.getLogger(__name__)

ClientFactory = Callable[[Destination], BrazeClient]
DELETE_BATCH = 50
REJECTION_SAMPLE = 200


@dataclass(frozen=True)
class RunOptions:
    """What to run and how."""

    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    full_refresh: bool = False
    allow_deletes: bool = False
    sample_size: int = 3
    all_activations: bool = False  # --all: ignore schedules
    ignore_dbt_failures: bool = False
    now: dt.datetime | None = None  # the clock, for schedules (tests)
    run_id: str | None = None  # default: a new UUID (the CLI passes its log invocation id)


def default_client(destination: Destination) -> BrazeClient:
    """A Braze client for a destination, with its batch and rate-limit settings."""
    limits = RateLimits.off() if destination.rate_limits_off else RateLimits.parse(destination.rate_limits)
    return BrazeClient(
        destination.rest_url,
        destination.api_key.reveal(),
        rate_limits=limits,
        timeout=destination.timeout,
        max_connections=max(destination.max_in_flight * 2, 4),
    )


class Runner:
    """Plans and runs activations of one project."""

    def __init__(
        self,
        project: Project,
        reporter: Reporter | None = None,
        client_factory: ClientFactory = default_client,
    ) -> None:
        self.project = project
        self.reporter = reporter or NullReporter()
        self.client_factory = client_factory

    def plan(self, options: RunOptions = RunOptions()) -> RunResult:
        """Compute what a run would send; send nothing and change no synced state."""
        return self._execute("plan", options, dry_run=True)

    def run(self, options: RunOptions = RunOptions()) -> RunResult:
        """Sync the selected activations."""
        return self._execute("run", options, dry_run=False)

    # ----------------------------------------------------------------------------------
    def _execute(self, command: str, options: RunOptions, *, dry_run: bool) -> RunResult:
        self.project.parse(options.select, options.exclude)  # config and manifest errors first
        lock = RunLock(self.project.state_dir)
        lock.acquire()
        try:
            with self.project.open_warehouse() as wh:
                activations, resolved = self.project.prepare(wh, options.select, options.exclude)
                return self._execute_locked(command, options, dry_run, wh, activations, resolved)
        finally:
            lock.release()

    def _execute_locked(
        self,
        command: str,
        options: RunOptions,
        dry_run: bool,
        wh: Warehouse,
        activations: list[Activation],
        resolved: dict[str, ResolvedColumns],
    ) -> RunResult:
        with StateStore(self.project.state_dir) as store:
            result = RunResult(
                run_id=options.run_id or str(uuid.uuid4()),
                command=command,
                started_at=dt.datetime.now(dt.timezone.utc),
                args=_args(options),
                dbt_version=self.project.manifest.dbt_version,
            )
            if not dry_run:
                store.start_run(result.run_id, command, orjson.dumps(result.args).decode())
            try:
                asyncio.run(self._run_all(store, wh, activations, resolved, options, result, dry_run))
            finally:
                result.finished_at = dt.datetime.now(dt.timezone.utc)
                if not dry_run:
                    store.finish_run(result.run_id, result.status)
                    result.write_artifact(self.project.target_dir)
            return result

    async def _run_all(
        self,
        store: StateStore,
        wh: Warehouse,
        activations: Sequence[Activation],
        resolved: dict[str, ResolvedColumns],
        options: RunOptions,
        run: RunResult,
        dry_run: bool,
    ) -> None:
        clients: dict[str, BrazeClient] = {}
        build = load_build_status(self.project.target_dir, self.project.manifest)
        if build is not None and build.stale:
            run.warnings.append(f"{build.path} may be stale: {build.stale}.")
            log.warning("%s may be stale: %s.", build.path, build.stale)
        now = options.now or dt.datetime.now(dt.timezone.utc)
        last_started = store.last_started()
        try:
            for activation in activations:
                if not (dry_run or options.all_activations) and not is_due(
                    activation.schedule, last_started.get(activation.name), now
                ):
                    due = next_due(activation.schedule, last_started.get(activation.name))
                    run.not_due.append((activation.name, due))
                    continue
                res = _new_result(activation)
                run.results.append(res)
                blockers = (
                    []
                    if build is None or options.ignore_dbt_failures
                    else (build.blockers(self.project.manifest, activation.model.unique_id))
                )
                if blockers:
                    self._skip(store, run, res, blockers, dry_run)
                    continue
                client = None
                if not dry_run:
                    name = activation.destination.name
                    if name not in clients:
                        clients[name] = self.client_factory(activation.destination)
                    client = clients[name]
                sync = _ActivationSync(
                    activation, resolved[activation.name], store, wh, client, options, res, self.reporter
                )
                try:
                    await sync.execute(dry_run)
                except (BrazeError, WarehouseError) as exc:
                    res.status, res.message = ERROR, str(exc)
                except (KeyboardInterrupt, asyncio.CancelledError):
                    res.status, res.message = ERROR, "interrupted"
                    raise
                finally:
                    res.finished_at = dt.datetime.now(dt.timezone.utc)
                    if not dry_run:
                        sync.record(run.run_id)
                    self.reporter.activation_finished(res)
        finally:
            for client in clients.values():
                await client.aclose()

    def _skip(
        self,
        store: StateStore,
        run: RunResult,
        res: ActivationResult,
        blockers: list[tuple[str, str]],
        dry_run: bool,
    ) -> None:
        """Skip an activation whose model (or an ancestor, or a test on them) failed in dbt."""
        nodes = ", ".join(f"{node} ({status})" for node, status in blockers[:5])
        more = f" and {len(blockers) - 5} more" if len(blockers) > 5 else ""
        res.status = SKIPPED
        res.message = (
            f"skipped: the last dbt build reported {nodes}{more}; fix it and rebuild, "
            "or pass --ignore-dbt-failures"
        )
        res.finished_at = dt.datetime.now(dt.timezone.utc)
        if not dry_run:
            store.record_activation(run.run_id, res.history_row())
        self.reporter.activation_finished(res)


class _ActivationSync:
    """One activation's plan or run."""

    def __init__(
        self,
        activation: Activation,
        columns: ResolvedColumns,
        store: StateStore,
        wh: Warehouse,
        client: BrazeClient | None,
        options: RunOptions,
        result: ActivationResult,
        reporter: Reporter,
    ) -> None:
        self.a = activation
        self.columns = columns
        self.store = store
        self.wh = wh
        self.client = client
        self.options = options
        self.res = result
        self.reporter = reporter
        self.rejections: list[Rejection] = []
        self.state: ActivationState | None = None
        self._seq = 0
        self._sent = 0
        self._total = 0
        self._previous_rejections: set[str] = set()

    async def execute(self, dry_run: bool) -> None:
        a, res, opts = self.a, self.res, self.options
        self.reporter.activation_started(a, "reading")
        state = self.store.activation_state(a.name, a.identity, a.attributes, prepare=not dry_run)
        self.state = state
        if state.reset_reason:
            log.warning("%s: starting from an empty state: %s.", a.name, state.reset_reason)
        self._previous_rejections = self.store.previous_rejections(a.name)
        diff = Diff(self.store, state, full_refresh=opts.full_refresh)
        try:
            read = list(dict.fromkeys([self.columns.identifier, *self.columns.mapped]))
            diff.load(
                self.wh.stream_relation(a.model.relation_name or "", read),
                self.columns.identifier,
                self.columns.mapped,
            )
            counts = diff.compute()
            res.source_rows, res.unchanged = counts.source_rows, counts.unchanged
            self.rejections.extend(_rejections(diff.identifier_rejections(a.identifier.column)))
            res.rejected = counts.null_identifiers + counts.duplicate_rows
            deletes = counts.deletes if a.sync_mode == "mirror" else 0
            blocked = self._guard(deletes, counts.synced, counts.valid_rows)
            builder = AttributeObjects(
                a, self.columns.declared_types, sample_size=opts.sample_size if dry_run else 0
            )
            objects = builder.build(diff.changes())
            if dry_run:
                for _ in objects:
                    pass
                out = builder.outbox
                res.inserted, res.updated, res.attribute_writes = out.inserts, out.updates, out.points
                res.samples = out.samples
                res.deleted = 0 if blocked else deletes
                res.planned_deletes = diff.deletes(limit=20) if deletes else []
                self.rejections.extend(out.rejections)
                res.rejected += len(out.rejections)
                res.requests = _estimate_requests(out.objects, a.destination, res.deleted)
            else:
                self._total = counts.inserted + counts.updated
                self.reporter.activation_started(a, "sending")
                await self._send(objects)
                self.rejections.extend(builder.outbox.rejections)
                res.rejected += len(builder.outbox.rejections)
                if deletes and not blocked:
                    self.reporter.activation_started(a, "deleting")
                    await self._delete(diff.deletes())
        finally:
            diff.close()
            if not dry_run and self.state is not None:
                self.store.fold(self.state)
        res.rejections = [
            {"identifier": r.identifier, "reason": r.reason, "origin": r.origin}
            for r in self.rejections[:REJECTION_SAMPLE]
        ]
        if res.status == SUCCESS and (res.rejected or res.failed):
            res.status = PARTIAL
            res.message = res.message or f"{res.rejected} rows rejected; they are retried on the next run"

    def _guard(self, deletes: int, synced: int, valid_rows: int) -> bool:
        """Apply the mirror guard; return True when the deletions are blocked."""
        if not deletes or self.options.allow_deletes:
            return False
        limit = self.a.max_deletes.limit(synced)
        if valid_rows == 0:
            why = f"the model returned no rows; refusing to delete all {deletes} synced users"
        elif deletes > limit:
            why = (
                f"{deletes} deletions exceed max_deletes {self.a.max_deletes} "
                f"({limit} of {synced} synced users)"
            )
        else:
            return False
        self.res.deletes_blocked = deletes
        self.res.status = ERROR
        self.res.message = f"{why}. Check the model, then run with --allow-deletes to pass the guard once."
        return True

    async def _send(self, objects: Any) -> None:
        assert self.client is not None
        rule = BatchRule.parse(self.a.destination.batch_rule)
        summary = await self.client.send_track_batches(
            pack(objects, rule), self._on_result, max_in_flight=self.a.destination.max_in_flight
        )
        self.res.requests += summary.requests

    def _on_result(self, result: BatchResult) -> None:
        res = self.res
        refs = [o.ref for o in result.accepted if isinstance(o.ref, RowRef)]
        if refs and self.state is not None:
            self._seq += 1
            self.store.journal_acks(self.state, journal_rows(self.a, refs, self._seq))
        for ref in refs:
            if ref.new and self.a.sync_mode != "update":
                res.inserted += 1
            else:
                res.updated += 1
            res.attribute_writes += ref.points
            if ref.identifier in self._previous_rejections:
                res.retried += 1
        for obj, message in result.rejected:
            identifier = obj.ref.identifier if isinstance(obj.ref, RowRef) else None
            self.rejections.append(Rejection(identifier, message, "braze"))
            res.rejected += 1
        res.failed += len(getattr(result, "failed", ()) or ())
        self._sent += len(result.accepted) + len(result.rejected)
        self.reporter.progress(self.a, self._sent, self._total)

    async def _delete(self, identifiers: list[str]) -> None:
        assert self.client is not None
        assert self.state is not None
        client, state = self.client, self.state
        semaphore = asyncio.Semaphore(self.a.destination.max_in_flight)
        width = len(self.a.attributes)

        async def one(chunk: list[str]) -> None:
            async with semaphore:
                await client.delete_users(**delete_kwargs(self.a, chunk))
            self._seq += 1
            self.store.journal_acks(
                state, journal_rows(self.a, deleted_refs(chunk, width), self._seq, op="delete")
            )
            self.res.deleted += len(chunk)
            self.res.requests += 1

        chunks = [identifiers[i : i + DELETE_BATCH] for i in range(0, len(identifiers), DELETE_BATCH)]
        results = await asyncio.gather(*(one(c) for c in chunks), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    def record(self, run_id: str) -> None:
        """Store this activation's figures and rejected rows in the history."""
        try:
            self.store.record_activation(run_id, self.res.history_row())
            self.store.record_rejections(run_id, self.a.name, rejection_table(self.rejections))
        except Exception as exc:  # the history must never hide the sync's own outcome
            raise DinmoError(f"could not record the run history: {exc}") from exc


def _new_result(a: Activation) -> ActivationResult:
    return ActivationResult(
        activation=a.name,
        unique_id=a.unique_id,
        service=a.service,
        sync_mode=a.sync_mode,
        destination=a.destination.name,
        relation_name=a.model.relation_name,
    )


def _rejections(table: Any) -> list[Rejection]:
    return [
        Rejection(row["identifier"], row["reason"], row["origin"], row["detail"]) for row in table.to_pylist()
    ]


def _estimate_requests(objects: int, destination: Destination, deletes: int) -> int:
    rule = BatchRule.parse(destination.batch_rule)
    per_request = min(rule.per_array, rule.combined or rule.per_array)
    return -(-objects // per_request) + -(-deletes // DELETE_BATCH)


def _args(options: RunOptions) -> dict[str, Any]:
    return {
        "select": list(options.select),
        "exclude": list(options.exclude),
        "full_refresh": options.full_refresh,
        "allow_deletes": options.allow_deletes,
        "all": options.all_activations,
        "ignore_dbt_failures": options.ignore_dbt_failures,
    }
