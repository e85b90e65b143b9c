"""The runner: the one API the CLI and the TUI drive.

``plan`` and ``run`` share every step (select, validate, read, diff, build payloads); ``run``
then sends under the rate limiter and journals what Braze acknowledged, batch by batch. Each
service's own work lives in a :class:`~dbt_dinmo.service.ServiceSync` subclass
(:mod:`dbt_dinmo.attribute_service`, :mod:`dbt_dinmo.event_service`,
:mod:`dbt_dinmo.segment_service`); this module orchestrates.

Shared requests. The activations of one destination are read and diffed first, one after the
other; then their ``/users/track`` objects are packed into shared requests in *rounds*: each
round sends one attribute activation's objects interleaved with the objects of every event and
purchase activation of the destination (so a request carries up to 75 attributes, 75 events and
75 purchases under the ``75_per_array`` rule), and ends when that attribute activation has sent
everything (then its mirror deletions run). A last round sends the events left. Attribute
activations never share a round: two requests in flight writing the same user's attributes can
overwrite each other in Braze (braze-api.md 3.10), while events only append. A request that
carried several activations' objects counts in the ``requests`` of each of them.

Order. Activations that create users (upsert, mirror) lead first, so users they create are known
to the update-only activations that follow (update mode, user lists), which check the profiles of
users not known to exist just before their round. Subscription statuses, which have an endpoint of
their own, go last.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from dbt_dinmo.activation import Activation
from dbt_dinmo.attribute_service import AttributeSync
from dbt_dinmo.braze import (
    BatchResult,
    BatchRule,
    BrazeClient,
    PreparedObject,
    RateLimits,
    TrackBatch,
    TrackPacker,
)
from dbt_dinmo.config import Destination
from dbt_dinmo.errors import DinmoError
from dbt_dinmo.event_service import EventSync
from dbt_dinmo.gating import is_due, load_build_status, next_due
from dbt_dinmo.project import Project, ResolvedColumns
from dbt_dinmo.reporting import NullReporter, Reporter
from dbt_dinmo.results import ERROR, SKIPPED, ActivationResult, RunResult
from dbt_dinmo.segment_service import SubscriptionSync, UserListSync
from dbt_dinmo.service import DELETE_BATCH, REJECTION_SAMPLE, ServiceSync
from dbt_dinmo.state import RunLock, StateStore

if TYPE_CHECKING:
    from dbt_dinmo.warehouse import Warehouse

log = logging.getLogger(__name__)

ClientFactory = Callable[[Destination], BrazeClient]
__all__ = [
    "DELETE_BATCH",
    "REJECTION_SAMPLE",
    "ClientFactory",
    "RunOptions",
    "Runner",
    "default_client",
]


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
    share_requests: bool = True  # pack a destination's activations into shared requests


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


SYNCS: dict[str, type[ServiceSync]] = {
    "user_attributes": AttributeSync,
    "custom_events": EventSync,
    "purchases": EventSync,
    "subscription_status": SubscriptionSync,
    "user_lists": UserListSync,
}


def service_sync(activation: Activation, *args: Any, **kwargs: Any) -> ServiceSync:
    """The sync implementing an activation's service."""
    return SYNCS[activation.service](activation, *args, **kwargs)


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
            if dry_run:
                store.begin_plan()
            else:
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
        groups: dict[str, list[ServiceSync]] = {}
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
            sync = service_sync(
                activation,
                resolved[activation.name],
                store,
                wh,
                client,
                options,
                res,
                self.reporter,
                run_started=run.started_at,
            )
            # Without sharing, each activation is its own group: read, send, close in turn.
            key = activation.destination.name if options.share_requests else activation.name
            groups.setdefault(key, []).append(sync)
        try:
            for syncs in groups.values():
                await self._run_group(syncs, run, dry_run)
        finally:
            for client in clients.values():
                await client.aclose()

    async def _run_group(self, syncs: list[ServiceSync], run: RunResult, dry_run: bool) -> None:
        """Plan or run the activations of one destination (see the module docstring)."""
        try:
            live: list[ServiceSync] = []
            for sync in syncs:
                if _attempt(sync, sync.prepare, dry_run):
                    live.append(sync)
                else:
                    self._finish(sync, run, dry_run)
            if dry_run:
                for sync in live:
                    self._finish(sync, run, dry_run)
                return
            track = [s for s in live if s.kind != "direct"]
            sender = _SharedSender(track)
            riders = [s for s in track if s.kind != "attributes"]
            # Creators first: the users they create are then known to the update-only leads.
            leads = sorted((s for s in track if s.kind == "attributes"), key=lambda s: not s.a.creates_users)
            for lead in leads:
                if await _step(lead, lead.before_send) and await self._round(
                    sender, lead, [r for r in riders if not r.stopped]
                ):
                    await _step(lead, lead.after_send)
                self._finish(lead, run, dry_run)
            remaining = [r for r in riders if not r.stopped]
            if remaining:
                await self._round(sender, None, remaining)
            for sync in riders:
                self._finish(sync, run, dry_run)
            for sync in (s for s in live if s.kind == "direct"):
                if await _step(sync, sync.before_send):
                    await _step(sync, sync.send_direct)
                self._finish(sync, run, dry_run)
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt | asyncio.CancelledError)
            for sync in syncs:
                if not sync.done:
                    sync.res.status = ERROR
                    sync.res.message = "interrupted" if interrupted else f"{type(exc).__name__}: {exc}"
                    self._finish(sync, run, dry_run)
            raise

    def _finish(self, sync: ServiceSync, run: RunResult, dry_run: bool) -> None:
        """Close, record and report one activation (once)."""
        if sync.done:
            return
        res = sync.res
        try:
            sync.close(dry_run)
        except DinmoError as exc:
            res.status, res.message = ERROR, str(exc)
        finally:
            res.finished_at = dt.datetime.now(dt.timezone.utc)
            if not dry_run:
                sync.record(run.run_id)
            self.reporter.activation_finished(res)

    async def _round(
        self, sender: _SharedSender, lead: ServiceSync | None, riders: list[ServiceSync]
    ) -> bool:
        """Send ``lead``'s objects with the riders' interleaved, until ``lead`` is done (without a
        lead: until the riders are). Returns False when the send stopped on an error: every member
        is then marked failed and sends nothing more this run (what Braze acknowledged before the
        error is journaled all the same)."""
        members = ([lead] if lead is not None else []) + riders
        client = members[0].client
        assert client is not None
        for m in members:
            if not m.sending:
                m.sending = True
                self.reporter.activation_started(m.a, "sending")
        destination = members[0].a.destination
        total = sum(max(m.total - m.sent, 0) for m in members)
        done = [0]

        def on_result(result: BatchResult) -> None:
            sender.dispatch(result)
            done[0] += len(result.accepted) + len(result.rejected)
            self.reporter.progress(members[0].a, done[0], total)

        try:
            summary = await client.send_track_batches(
                sender.batches(lead, riders), on_result, max_in_flight=destination.max_in_flight
            )
        except DinmoError as exc:
            sender.flush()
            sender.discard()
            for m in members:
                m.res.status, m.res.message = ERROR, str(exc)
                m.stopped = True
            return False
        sender.flush()
        if not sender.tagged:
            members[0].res.requests += summary.requests
        return True

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


def _new_result(a: Activation) -> ActivationResult:
    return ActivationResult(
        activation=a.name,
        unique_id=a.unique_id,
        service=a.service,
        sync_mode=a.sync_mode,
        destination=a.destination.name,
        relation_name=a.model.relation_name,
    )


async def _step(sync: ServiceSync, step: Callable[[], Awaitable[None]]) -> bool:
    """Run one async step; on a dbt-dinmo error, mark the activation failed and return False."""
    try:
        await step()
    except DinmoError as exc:
        sync.res.status, sync.res.message = ERROR, str(exc)
        sync.stopped = True
        return False
    return True


def _attempt(sync: ServiceSync, step: Callable[[bool], None], dry_run: bool) -> bool:
    """Run one step; on a dbt-dinmo error, mark the activation failed and return False."""
    try:
        step(dry_run)
    except DinmoError as exc:
        sync.res.status, sync.res.message = ERROR, str(exc)
        return False
    return True


class _SharedSender:
    """Packs the ``/users/track`` objects of a destination's activations into shared requests.

    One packer lives for the whole run of the destination, so objects left in a partly filled
    request when a round ends go out at the start of the next round. Objects are tagged with
    their activation's index (unless the destination has a single activation) so each answer is
    handed to its owner.
    """

    def __init__(self, syncs: list[ServiceSync]) -> None:
        self.syncs = syncs
        self.tagged = len(syncs) > 1
        destination = syncs[0].a.destination if syncs else None
        rule = BatchRule.parse(destination.batch_rule) if destination else BatchRule()
        self.packer = TrackPacker(rule)
        self._streams: dict[int, Iterator[PreparedObject]] = {}
        self._index = {id(s): i for i, s in enumerate(syncs)}

    def _stream(self, sync: ServiceSync) -> Iterator[PreparedObject]:
        i = self._index[id(sync)]
        stream = self._streams.get(i)
        if stream is None:
            stream = sync.objects() if not self.tagged else _tagged(i, sync.objects())
            self._streams[i] = stream
        return stream

    def flush(self) -> None:
        """Journal every activation's buffered acknowledgements (see ServiceSync.flush)."""
        for sync in self.syncs:
            if not sync.done:
                sync.flush()

    def batches(self, lead: ServiceSync | None, riders: list[ServiceSync]) -> Iterator[TrackBatch]:
        """Batches for one round: one object of each stream in turn until ``lead`` is exhausted,
        then riders' objects only until the current request is full (the rest waits for the next
        round); without a lead, until every rider is exhausted.

        The client pulls a batch only when a request slot is free, after handing over the answers
        that arrived: every acknowledgement is journaled before the batch is handed out."""
        packer = self.packer
        rider_streams = [self._stream(r) for r in riders]
        if lead is not None:
            lead_stream = self._stream(lead)
            for obj in _interleave([lead_stream, *rider_streams], stop_with_first=True):
                batch = packer.add(obj)
                if batch is not None:
                    self.flush()
                    yield batch
            for obj in _interleave(rider_streams, stop_with_first=False):
                batch = packer.add(obj)
                if batch is not None:
                    self.flush()
                    yield batch
                    return  # a request is full: the riders' next objects wait for the next round
        else:
            for obj in _interleave(rider_streams, stop_with_first=False):
                batch = packer.add(obj)
                if batch is not None:
                    self.flush()
                    yield batch
        last = packer.flush()  # nothing more can join this request in this round
        if last is not None:
            self.flush()
            yield last

    def dispatch(self, result: BatchResult) -> None:
        """Hand each activation the outcome of its own objects."""
        failed = list(getattr(result, "failed", ()) or ())
        if not self.tagged:
            self.syncs[0].on_batch(
                [o.ref for o in result.accepted],
                [(o.ref, message) for o, message in result.rejected],
                [(o.ref, message) for o, message in failed],
            )
            return
        buckets: dict[int, tuple[list[Any], list[tuple[Any, str]], list[tuple[Any, str]]]] = {}
        for o in result.accepted:
            i, ref = _untag(o)
            buckets.setdefault(i, ([], [], []))[0].append(ref)
        for o, message in result.rejected:
            i, ref = _untag(o)
            buckets.setdefault(i, ([], [], []))[1].append((ref, message))
        for o, message in failed:
            i, ref = _untag(o)
            buckets.setdefault(i, ([], [], []))[2].append((ref, message))
        for i, (accepted, rejected, not_applied) in buckets.items():
            self.syncs[i].on_batch(accepted, rejected, not_applied)
            self.syncs[i].res.requests += 1

    def discard(self) -> None:
        """Drop objects waiting in the packer after a failed round (they were never sent)."""
        self.packer.flush()


def _tagged(index: int, objects: Iterator[PreparedObject]) -> Iterator[PreparedObject]:
    for obj in objects:
        yield PreparedObject(obj.kind, obj.data, (index, obj.ref))


def _untag(obj: PreparedObject) -> tuple[int, Any]:
    """(activation index, original ref) of an object tagged by :func:`_tagged`."""
    tag = obj.ref
    assert isinstance(tag, tuple)
    return int(tag[0]), tag[1]


def _interleave(
    streams: list[Iterator[PreparedObject]], *, stop_with_first: bool
) -> Iterator[PreparedObject]:
    """One object of each stream in turn, so requests mix kinds (and fill several arrays).

    With ``stop_with_first``, ends as soon as the first stream is exhausted (the others are left
    where they are); otherwise when every stream is.
    """
    if len(streams) == 1:
        yield from streams[0]
        return
    active = list(range(len(streams)))
    while active:
        for i in list(active):
            try:
                obj = next(streams[i])
            except StopIteration:
                if i == 0 and stop_with_first:
                    return
                active.remove(i)
                continue
            yield obj


def _args(options: RunOptions) -> dict[str, Any]:
    return {
        "select": list(options.select),
        "exclude": list(options.exclude),
        "full_refresh": options.full_refresh,
        "allow_deletes": options.allow_deletes,
        "all": options.all_activations,
        "ignore_dbt_failures": options.ignore_dbt_failures,
    }
