"""What every service's sync has in common, as the runner drives it.

A run of one activation goes through these steps, called by :class:`dbt_dinmo.runner.Runner`:

1. :meth:`ServiceSync.prepare`: read the model (through the warehouse), diff it against the
   state in DuckDB and count what would be sent. A plan stops here, with its figures filled in.
2. :meth:`ServiceSync.before_send`: activations that may only touch existing users check the
   users they are about to send (:mod:`dbt_dinmo.profiles`) and set aside those without a
   Braze profile yet.
3. :meth:`ServiceSync.objects`: the ``/users/track`` objects to send, built lazily. The runner may
   pack the objects of several activations of one destination into shared requests, and hands
   each activation the outcome of its own objects through :meth:`ServiceSync.on_batch`, which
   journals what Braze acknowledged. Services with an endpoint of their own (subscription
   statuses) send in :meth:`ServiceSync.send_direct` instead.
4. :meth:`ServiceSync.after_send`: work that must follow the sends (mirror deletions).
5. :meth:`ServiceSync.close`: fold the journal into the state, free temporary tables, settle the
   status; then :meth:`ServiceSync.record` stores the figures and rejected rows in the history.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from dbt_dinmo.activation import Activation
from dbt_dinmo.attributes import Rejection, rejection_table
from dbt_dinmo.braze import BatchRule, BrazeClient, PreparedObject, RateLimits
from dbt_dinmo.config import Destination
from dbt_dinmo.errors import DinmoError
from dbt_dinmo.profiles import WAITING, WAITING_REASON, ProfileGate, export_seconds, known_key
from dbt_dinmo.project import ResolvedColumns
from dbt_dinmo.reporting import Reporter
from dbt_dinmo.results import ERROR, PARTIAL, SUCCESS, ActivationResult
from dbt_dinmo.state import StateStore

if TYPE_CHECKING:
    import duckdb

    from dbt_dinmo.runner import RunOptions
    from dbt_dinmo.warehouse import Warehouse

log = logging.getLogger(__name__)

DELETE_BATCH = 50
REJECTION_SAMPLE = 200
WAITING_SAMPLE = 1000  # users waiting for a profile kept in the history per run


class ServiceSync:
    """One activation's plan or run; subclasses implement one Braze service."""

    #: "attributes" syncs never share requests with one another (two in-flight requests writing
    #: the same user's attributes can overwrite each other in Braze); event and purchase syncs
    #: only append, so they may ride along with anything. "direct" syncs use an endpoint of their
    #: own (:meth:`send_direct`), after the destination's ``/users/track`` requests.
    kind: ClassVar[str] = "attributes"

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
        run_started: dt.datetime | None = None,
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
        self.total = 0  # objects this run expects to send (progress)
        self.sent = 0  # objects Braze answered for
        self.done = False  # closed: nothing more to send
        self.sending = False  # "sending" was announced
        self.stopped = False  # a send failed: nothing more is sent this run
        self._seq = 0
        self._con: duckdb.DuckDBPyConnection | None = None
        self.run_started = run_started or dt.datetime.now(dt.timezone.utc)
        self.gate: ProfileGate | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """This sync's own connection to the state database (its temporary tables and results)."""
        if self._con is None:
            self._con = self.store.cursor()
        return self._con

    def next_seq(self) -> int:
        """A new journal sequence number."""
        self._seq += 1
        return self._seq

    # -- the steps -------------------------------------------------------------------------
    def prepare(self, dry_run: bool) -> None:
        """Read and diff; fill the plan figures when ``dry_run``."""
        raise NotImplementedError

    def objects(self) -> Iterator[PreparedObject]:
        """The objects to send (run only); the same iterator on every call."""
        raise NotImplementedError

    def on_batch(
        self,
        accepted: list[Any],
        rejected: list[tuple[Any, str]],
        failed: list[tuple[Any, str]],
    ) -> None:
        """Braze's answer for this sync's objects of one request: journal and count."""
        raise NotImplementedError

    def flush(self) -> None:
        """Journal, in one transaction, what Braze acknowledged since the last flush.

        ``on_batch`` only buffers: the runner flushes before any new request is started (when
        the next batch is pulled) and when a send ends, so a request is never started while an
        acknowledged one is still unrecorded (a kill loses at most the requests in flight), and
        acknowledgements arriving together share one commit.
        """

    async def before_send(self) -> None:
        """Work that precedes the sends: checking users' profiles (nothing by default)."""

    async def send_direct(self) -> None:
        """Send through the service's own endpoint ("direct" syncs only)."""
        raise NotImplementedError

    async def after_send(self) -> None:
        """Work that follows the sends (nothing by default)."""

    def block_removals(self, count: int, why: str) -> bool:
        """A guard (mirror deletions, segment exits) blocks ``count`` removals this run: the
        activation fails with ``why`` and the way past the guard; returns True."""
        res = self.res
        res.deletes_blocked = count
        res.status = ERROR
        res.message = f"{why}. Check the model, then run with --allow-deletes to pass the guard once."
        return True

    # -- users who must already exist in Braze -----------------------------------------------
    def open_gate(self, candidates_sql: str, dry_run: bool) -> None:
        """Start the profile gate over ``SELECT __id ...`` (the users this run would send);
        a plan gets its figures: users to check, export calls and the time they take."""
        gate = ProfileGate(self.con, known_key(self.a), self.a.identifier, self.run_started)
        self.gate = gate
        counts = gate.split(candidates_sql, plan=dry_run)
        if dry_run:
            res, dest = self.res, self.a.destination
            res.waiting = counts.waiting_before
            res.profiles_checked = counts.to_check
            res.export_calls = counts.export_calls
            res.export_seconds = export_seconds(counts.export_calls, RateLimits.parse(dest.rate_limits))

    async def pass_gate(self, candidates_sql: str) -> str:
        """Check the users not known to exist with /users/export/ids; return the table of those
        still waiting for a profile (the caller sends to everyone else)."""
        gate, res = self.gate, self.res
        assert gate is not None
        assert self.client is not None
        counts = gate.split(candidates_sql)  # again: this run's upserts may have made users known
        if counts.to_check:
            self.reporter.activation_started(self.a, f"checking {counts.to_check} Braze profiles")

        def progress(done: int) -> None:
            res.profiles_checked, res.export_calls = gate.checked, gate.calls
            self.reporter.progress(self.a, done, counts.to_check)

        try:
            res.waiting = await gate.check(self.client, self.a.destination.max_in_flight, progress)
        finally:
            res.profiles_checked, res.export_calls = gate.checked, gate.calls
        self.rejections.extend(
            Rejection(i, WAITING_REASON, "waiting") for i in gate.waiting_sample(WAITING_SAMPLE)
        )
        if res.waiting:
            log.info(
                "%s: %d users waiting for a Braze profile (not sent; checked again next run).",
                self.a.name,
                res.waiting,
            )
        return WAITING

    def close(self, dry_run: bool) -> None:
        """Fold the journal, free temporary tables and settle the status (always called)."""
        self.done = True
        try:
            if not dry_run:
                self.flush()
            self._close(dry_run)
        finally:
            if self.gate is not None:
                self.gate.close()
            if self._con is not None:
                self._con.close()
                self._con = None
        res = self.res
        res.rejections = [
            {"identifier": r.identifier, "reason": r.reason, "origin": r.origin}
            for r in self.rejections[:REJECTION_SAMPLE]
        ]
        if res.status == SUCCESS and (res.rejected or res.failed):
            res.status = PARTIAL
            res.message = res.message or f"{res.rejected} rows rejected; they are retried on the next run"
        if res.status in (SUCCESS, PARTIAL) and res.waiting and not dry_run:
            waiting = f"{res.waiting} users waiting for a Braze profile (not sent; checked again next run)"
            res.message = f"{res.message}; {waiting}" if res.message else waiting

    def _close(self, dry_run: bool) -> None:
        """Service-specific part of :meth:`close`."""

    def record(self, run_id: str) -> None:
        """Store this activation's figures and rejected rows in the history."""
        try:
            self.store.record_activation(run_id, self.res.history_row())
            self.store.record_rejections(run_id, self.a.name, rejection_table(self.rejections))
        except Exception as exc:  # the history must never hide the sync's own outcome
            raise DinmoError(f"could not record the run history: {exc}") from exc


def estimate_requests(objects: int, destination: Destination, deletes: int = 0) -> int:
    """Requests a plan expects for ``objects`` track objects and ``deletes`` user deletions."""
    rule = BatchRule.parse(destination.batch_rule)
    per_request = min(rule.per_array, rule.combined or rule.per_array)
    return -(-objects // per_request) + -(-deletes // DELETE_BATCH)
