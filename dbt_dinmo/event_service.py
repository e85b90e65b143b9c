"""The custom-events and purchases services' sync: every event sent once, and only once.

Guarantee. Braze does not de-duplicate events, so dbt-dinmo does: the identity of every event
Braze acknowledged (its ``event_id``, or a hash of its identifying fields) is journaled in the
state store as soon as the acknowledgement arrives, one small transaction per request, and folded
into the activation's sent identities at the end of the run (or at the start of the next one
after a crash). An event whose identity is recorded is never sent again, and is never updated:
changing a sent row in the model changes nothing in Braze. Rows refused before sending, objects
Braze refused (its per-object "minor" errors) and requests that failed are not recorded, so they
are sent again by later runs (once fixed, for refused rows). A crash, Ctrl-C or ``kill -9`` at any
moment loses nothing; only the requests in flight at that moment (at most ``max_in_flight``
batches) may reach Braze twice, since their acknowledgement was never recorded.

Cursor window. With ``cursor``, a run reads only the rows whose cursor is at least the
*watermark* minus ``lookback`` (rows with a null cursor are always read); the condition is part
of the SQL sent to the warehouse. The watermark is the highest cursor a run read when every row
it read ended up acknowledged; when some did not (rejected, failed or not sent because the run
stopped) it is the lowest cursor among those, so they are read again; a run that dies before
writing it leaves the previous one. Identities are still checked, so rows read twice are sent
once. Without a cursor the whole model is read and diffed against the sent identities in DuckDB.
``--full-refresh`` reads the whole model once, ignoring the window (sent events stay sent).

Backfill. ``true``: the first run sends every row. ``false``: the first run records every
existing row as sent without sending it; later runs send the rows that appear after. A date:
rows whose event time is earlier are recorded as sent without being sent, on every run (so a
late row older than that date is never sent either).
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import math
from collections.abc import Iterator
from typing import Any

from dbt_dinmo.attributes import Rejection
from dbt_dinmo.braze import PreparedObject
from dbt_dinmo.errors import DinmoError, WarehouseError
from dbt_dinmo.event_diff import EPOCH, EventDiff
from dbt_dinmo.events import EventObjects, EventRef, rejection
from dbt_dinmo.service import ServiceSync, estimate_requests
from dbt_dinmo.state import EventState, Watermark

log = logging.getLogger("dbt_dinmo.runner")

TEMPORAL = ("timestamp", "timestamptz", "date")


class EventSync(ServiceSync):
    """``custom_events`` and ``purchases``: new rows become events, each sent once."""

    kind = "events"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.a.events is not None
        self.spec = self.a.events
        self.state: EventState | None = None
        self.diff: EventDiff | None = None
        self.builder: EventObjects | None = None
        self._iter: Iterator[PreparedObject] | None = None
        self._previous_rejections: set[str] = set()
        self._keyed = self.spec.event_id is not None
        self._window: Watermark | None = None  # the watermark this run's window came from
        self._prepared = False
        self._acked: list[str] = []

    @property
    def scheme(self) -> str:
        """How identities are computed; sent identities only match under the same scheme."""
        if self.spec.event_id is not None:
            return "event_id"
        return "row" + (":quantity" if self.spec.quantity else "")

    def prepare(self, dry_run: bool) -> None:
        a, res, opts, spec = self.a, self.res, self.options, self.spec
        self.reporter.activation_started(a, "reading")
        state = self.store.event_state(a.name, a.identity, prepare=not dry_run)
        self.state = state
        if state.reset_reason:
            log.warning("%s: starting from an empty state: %s.", a.name, state.reset_reason)
        old = state.scheme if state.initialized else None
        if old and old != self.scheme and self.store.sent_count(state):
            raise DinmoError(
                f"event identities were computed with {_scheme_text(old)} when events were last "
                f"sent, and now with {_scheme_text(self.scheme)}: every sent event would look new and be "
                "sent again (Braze does not de-duplicate). Revert the change, or rename the exposure to "
                "start a new event stream (its backfill setting then applies)."
            )
        self._previous_rejections = self.store.previous_rejections(a.name, "detail")
        state_exists = self.store.has_table(state.table) and (state.reset_reason is None or not dry_run)
        diff = EventDiff(self.con, a, self.columns, state, state_exists=state_exists)
        self.diff = diff
        sql = self._select_sql(diff.read_columns(), state)
        log.debug("%s: reading %s", a.name, sql)
        try:
            diff.load(self.wh.stream(sql))
        except WarehouseError as exc:
            if self._window is None:
                raise
            raise WarehouseError(
                f"{exc} (the cursor window filter failed: if the cursor column changed type, run "
                "once with --full-refresh to read the whole model)"
            ) from exc
        first_run = not state.initialized
        mark_all = spec.backfill is False and first_run
        before = spec.backfill if isinstance(spec.backfill, dt.datetime) else None
        counts = diff.compute(mark_all=mark_all, before=before)
        res.source_rows = counts.source_rows
        res.unchanged = counts.already_sent + counts.marked
        res.rejected = counts.rejected
        self.rejections.extend(
            rejection(self._keyed, uid, eid, reason, "dinmo") for uid, reason, eid in diff.rejections()
        )
        if counts.marked:
            why = (
                "backfill: false: the first run records existing rows as sent without sending them"
                if mark_all
                else f"backfill: rows before {_date_text(before)} are recorded as sent without sending them"
            )
            verb = "would be recorded" if dry_run else "recorded"
            res.message = f"{counts.marked} events {verb} as sent without sending ({why})"
            log.info("%s: %s.", a.name, res.message)
            if not dry_run:
                self._journal_marks(diff, state, mark_all)
        builder = EventObjects(a, self.columns.declared_types, sample_size=opts.sample_size if dry_run else 0)
        self.builder = builder
        if dry_run:
            for _ in builder.build(diff.rows()):
                pass
            out = builder.outbox
            res.inserted, res.attribute_writes, res.samples = out.objects, out.points, out.samples
            self.rejections.extend(out.rejections)
            res.rejected += len(out.rejections)
            res.requests = estimate_requests(out.objects, a.destination)
        else:
            self.total = counts.to_send
        self._prepared = True

    def _journal_marks(self, diff: EventDiff, state: EventState, mark_all: bool) -> None:
        """Record marked rows as sent; on a ``backfill: false`` first run, also record that the
        first pass happened, in the same transaction (a crash leaves both or neither)."""
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            diff.journal_marks(state.journal)
            if mark_all:
                self.store.set_event_mark(state, self.scheme, state.watermark, con=con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    # -- the cursor window -----------------------------------------------------------------
    def _select_sql(self, columns: list[str], state: EventState) -> str:
        """The SELECT sent to the warehouse: the needed columns, and the cursor window if any."""
        wh, a = self.wh, self.a
        sql = f"select {', '.join(wh.quote(c) for c in columns)} from {a.model.relation_name}"
        cursor = self.columns.roles.get("cursor")
        mark = state.watermark
        if cursor is None or mark is None:
            return sql
        if self.options.full_refresh:
            log.info("%s: --full-refresh: reading the whole model (sent events stay sent).", a.name)
            return sql
        if mark.column.lower() != cursor.lower():
            log.info(
                "%s: the cursor changed from %s to %s: reading the whole model once.",
                a.name,
                mark.column,
                cursor,
            )
            return sql
        declared = self.columns.declared_types.get(cursor.lower())
        literal, text = window_start(mark, self.spec.lookback.seconds, self.spec.lookback.amount, declared)
        self._window = mark
        column = wh.quote(cursor)
        log.info(
            "%s: reading rows with %s >= %s (watermark %s minus lookback %s).",
            a.name,
            cursor,
            text,
            _watermark_text(mark),
            self.spec.lookback.text,
        )
        return f"{sql} where ({column} >= {literal} or {column} is null)"

    # -- sending ---------------------------------------------------------------------------
    def objects(self) -> Iterator[PreparedObject]:
        if self._iter is None:
            assert self.builder is not None
            assert self.diff is not None
            self._iter = self.builder.build(self.diff.rows())
        return self._iter

    def on_batch(
        self,
        accepted: list[Any],
        rejected: list[tuple[Any, str]],
        failed: list[tuple[Any, str]],
    ) -> None:
        res = self.res
        refs = [ref for ref in accepted if isinstance(ref, EventRef)]
        self._acked.extend(r.identity for r in refs)
        previous = self._previous_rejections
        for ref in refs:
            res.inserted += 1
            res.attribute_writes += ref.points
            if previous and ref.identity in previous:
                res.retried += 1
        for ref, message in rejected:
            if isinstance(ref, EventRef):
                self.rejections.append(Rejection(ref.key, message, "braze", ref.identity))
            res.rejected += 1
        res.failed += len(failed)
        self.sent += len(accepted) + len(rejected)

    def flush(self) -> None:
        acked, self._acked = self._acked, []
        if acked and self.state is not None:
            self.store.journal_events(self.state, acked, self.next_seq())

    def _close(self, dry_run: bool) -> None:
        state, diff = self.state, self.diff
        try:
            if self.builder is not None and not dry_run and self._iter is not None:
                self.rejections.extend(self.builder.outbox.rejections)
                self.res.rejected += len(self.builder.outbox.rejections)
            if not dry_run and state is not None:
                self.store.fold_events(state)
                if self._prepared and diff is not None:
                    self.store.set_event_mark(state, self.scheme, self._next_watermark(state, diff))
        finally:
            if diff is not None:
                diff.close()

    def _next_watermark(self, state: EventState, diff: EventDiff) -> Watermark | None:
        cursor = self.columns.roles.get("cursor")
        if cursor is None:
            return None
        mark = diff.watermark(cursor)
        if mark is None and state.watermark is not None and state.watermark.column == cursor:
            return state.watermark  # no row with a cursor was read: keep the window where it was
        return mark


def window_start(
    mark: Watermark, seconds: float | None, amount: float | None, declared: str | None
) -> tuple[str, str]:
    """The SQL literal where the window starts (watermark minus lookback), and a readable form."""
    if mark.kind in TEMPORAL:
        if seconds is None:
            raise DinmoError(
                f"lookback {amount:g} is a plain number, but cursor {mark.column} holds times; "
                "give a duration such as '3 days'."
            )
        back = dt.timedelta(seconds=seconds)
        if mark.kind == "date":
            days = math.ceil(back / dt.timedelta(days=1))
            start = dt.date.fromisoformat(mark.value) - dt.timedelta(days=days)
            text = start.isoformat()
        else:
            moment = EPOCH + dt.timedelta(microseconds=int(mark.value)) - back
            text = moment.strftime("%Y-%m-%d %H:%M:%S.%f")
            if mark.kind == "timestamptz":
                text += "+00:00"
        quoted = "'" + text + "'"
        return (f"cast({quoted} as {declared})" if declared else quoted), text
    if amount is None:
        raise DinmoError(
            f"lookback is a duration, but cursor {mark.column} holds numbers; give a number such as 100."
        )
    if mark.kind == "integer":
        number: Any = int(mark.value) - math.ceil(amount)
    else:
        number = decimal.Decimal(mark.value) - decimal.Decimal(repr(amount))
    return str(number), str(number)


def _watermark_text(mark: Watermark) -> str:
    if mark.kind in ("timestamp", "timestamptz"):
        moment = EPOCH + dt.timedelta(microseconds=int(mark.value))
        return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if mark.kind == "timestamptz" else "")
    return mark.value


def _date_text(value: dt.datetime | None) -> str:
    if value is None:
        return "?"
    if value.time() == dt.time(0):
        return value.date().isoformat()
    return value.isoformat().replace("+00:00", "Z")


def _scheme_text(scheme: str) -> str:
    if scheme == "event_id":
        return "the event_id column"
    quantity = " (with quantity)" if scheme.endswith(":quantity") else ""
    return f"a hash of each row's identifying fields{quantity}"
