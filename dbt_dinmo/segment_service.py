"""The segment services' syncs: a dbt model is a segment, each row one member.

- ``subscription_status``: users entering the segment are subscribed to the subscription group,
  users leaving it are unsubscribed (``/v2/subscription/status/set``, 50 external ids a request,
  no data points); users who were never members are never touched.
- ``user_lists``: the audience is a boolean custom attribute (its name with spaces replaced by
  underscores) set to ``true`` on entry and ``false`` on exit, update-only
  (``_update_existing_only: true``) through ``/users/track``.

Neither ever creates a Braze user: entries go through the profile gate
(:mod:`dbt_dinmo.profiles`), and members without a profile yet wait for a later run. Exits need
no check: the state holds only users Braze acknowledged as members. The state is the set of
acknowledged members; each acknowledged entry adds one, each acknowledged exit removes one. They are
appended to the activation's member log the moment Braze acknowledges them (one ``write()``, no
database commit) and folded into the state at the end of the run or the start of the next, so a
crash loses nothing and re-sends only what was not acknowledged. A rerun with the same segment
sends nothing.

Exit guard: a run never sends exits because the model came back empty, nor more exits than
``max_exits`` (when set), unless ``--allow-deletes`` is passed for that run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from dbt_dinmo._aio import run_bounded
from dbt_dinmo.attributes import Rejection
from dbt_dinmo.braze import MAX_IDS_PER_REQUEST, PreparedObject
from dbt_dinmo.segment_diff import ENTRIES, EXITS, SegmentCounts, SegmentDiff, segment_sql
from dbt_dinmo.service import ServiceSync, estimate_requests
from dbt_dinmo.state import ActivationState

log = logging.getLogger("dbt_dinmo.runner")

SUBSCRIBED, UNSUBSCRIBED = "subscribed", "unsubscribed"


@dataclass(frozen=True, slots=True)
class MemberRef:
    """What one sent identifier stands for: an entry or an exit."""

    identifier: str
    entry: bool


class SegmentSync(ServiceSync):
    """What both segment services share: the diff, the exit guard, the gate, the journal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.a.segment is not None
        self.spec = self.a.segment
        self.state: ActivationState | None = None
        self.diff: SegmentDiff | None = None
        self._previous_rejections: set[str] = set()
        self._acks: list[tuple[str, bool]] = []

    # -- prepare ---------------------------------------------------------------------------
    def prepare(self, dry_run: bool) -> None:
        a, res = self.a, self.res
        self.reporter.activation_started(a, "reading")
        state = self.store.activation_state(a.name, a.identity, (), prepare=not dry_run)
        self.state = state
        if state.reset_reason:
            log.warning("%s: starting from an empty state: %s.", a.name, state.reset_reason)
        self._previous_rejections = self.store.previous_rejections(a.name)
        exists = self.store.has_table(state.table) and state.reset_reason is None
        diff = SegmentDiff(self.con, state, state_exists=exists, full_refresh=self.options.full_refresh)
        self.diff = diff
        sql = segment_sql(a.model.relation_name or "", self.wh.quote(self.columns.identifier))
        log.debug("%s: reading %s", a.name, sql)
        diff.load(self.wh.stream(sql))
        counts = diff.compute()
        res.source_rows = counts.source_rows
        res.unchanged = counts.members - counts.entries
        if counts.null_rows:
            res.rejected = counts.null_rows
            self.rejections.append(
                Rejection(
                    None,
                    f"identifier column {self.columns.identifier} is null in {counts.null_rows} rows",
                    "dinmo",
                )
            )
        if self._exits_blocked(counts):
            diff.drop_exits()
        self.open_gate(f"SELECT __id FROM {ENTRIES}", dry_run)
        if dry_run:
            res.entered = counts.entries
            res.exited = diff.count(EXITS)
            res.samples = self._samples()
            res.planned_deletes = diff.sample(EXITS, 20)
            res.requests = self._estimate_requests(res.entered, res.exited)
            res.attribute_writes = self._points(res.entered + res.exited)
        else:
            self.total = counts.entries + diff.count(EXITS)

    def _exits_blocked(self, counts: SegmentCounts) -> bool:
        """Apply the exit guard; return True when this run must send no exits."""
        exits = counts.exits
        if not exits or self.options.allow_deletes:
            return False
        guard = self.spec.max_exits
        if counts.members == 0:
            why = f"the model returned no members; refusing to remove all {exits} members"
        elif guard is not None and exits > guard.limit(counts.synced):
            why = (
                f"{exits} exits exceed max_exits {guard} "
                f"({guard.limit(counts.synced)} of {counts.synced} synced members)"
            )
        else:
            return False
        return self.block_removals(exits, why)

    def _estimate_requests(self, entries: int, exits: int) -> int:
        raise NotImplementedError

    def _points(self, objects: int) -> int:
        """Data points the sends spend."""
        return 0

    def _samples(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    # -- the gate --------------------------------------------------------------------------
    async def before_send(self) -> None:
        assert self.diff is not None
        waiting = await self.pass_gate(f"SELECT __id FROM {ENTRIES}")
        self.diff.exclude_entries(waiting)
        self.total = self.diff.count(ENTRIES) + self.diff.count(EXITS)

    # -- acknowledgements ------------------------------------------------------------------
    def acknowledge(self, refs: list[MemberRef]) -> None:
        """Count acknowledged entries and exits, and buffer them for the journal."""
        res = self.res
        for ref in refs:
            if ref.entry:
                res.entered += 1
            else:
                res.exited += 1
            if ref.identifier in self._previous_rejections:
                res.retried += 1
            self._acks.append((ref.identifier, ref.entry))
        res.attribute_writes += self._points(len(refs))
        self.sent += len(refs)

    def flush(self) -> None:
        acks, self._acks = self._acks, []
        if acks and self.state is not None:
            entries = [i for i, entry in acks if entry]
            self.store.journal_members(self.state, entries, [i for i, entry in acks if not entry])

    def _close(self, dry_run: bool) -> None:
        try:
            if self.diff is not None:
                self.diff.close()
        finally:
            if not dry_run and self.state is not None:
                self.store.fold(self.state)


class SubscriptionSync(SegmentSync):
    """``subscription_status``: entries subscribed, exits unsubscribed, in one group."""

    kind: ClassVar[str] = "direct"

    def _group(self, state: str, ids: list[str]) -> dict[str, Any]:
        return {
            "subscription_group_id": self.spec.subscription_group_id,
            "subscription_state": state,
            "external_ids": ids,
        }

    def _estimate_requests(self, entries: int, exits: int) -> int:
        n = MAX_IDS_PER_REQUEST
        return -(-entries // n) + -(-exits // n)

    def _samples(self) -> list[dict[str, Any]]:
        assert self.diff is not None
        sample = self.options.sample_size
        groups = [
            self._group(state, ids)
            for state, ids in (
                (SUBSCRIBED, self.diff.sample(ENTRIES, sample)),
                (UNSUBSCRIBED, self.diff.sample(EXITS, sample)),
            )
            if ids
        ]
        return [{"subscription_groups": [g]} for g in groups]

    async def send_direct(self) -> None:
        """One request per 50 identifiers and state (entries first), ``max_in_flight`` at once.

        A request holds one group object: Braze documents several groups per call but not how a
        repeated group id behaves, and 5,000 requests a minute already carry 250,000 users."""
        assert self.client is not None
        assert self.diff is not None
        client, diff = self.client, self.diff
        if not self.total:
            return
        self.reporter.activation_started(self.a, "sending")
        chunks: Iterator[tuple[bool, list[str]]] = (
            (entry, ids)
            for entry, table in ((True, ENTRIES), (False, EXITS))
            for ids in diff.ids(table, MAX_IDS_PER_REQUEST)
        )

        async def one(chunk: tuple[bool, list[str]]) -> None:
            entry, ids = chunk
            await client.set_subscription_status([self._group(SUBSCRIBED if entry else UNSUBSCRIBED, ids)])
            self.res.requests += 1
            self.acknowledge([MemberRef(i, entry) for i in ids])
            self.flush()
            self.reporter.progress(self.a, self.sent, self.total)

        # The chunks are read lazily from DuckDB (the sync's own connection, unused meanwhile).
        await run_bounded(chunks, one, self.a.destination.max_in_flight)


class UserListSync(SegmentSync):
    """``user_lists``: a boolean attribute, ``true`` on entry and ``false`` on exit, update-only."""

    kind: ClassVar[str] = "attributes"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._iter: Iterator[PreparedObject] | None = None
        assert self.spec.attribute is not None
        self.attribute: str = self.spec.attribute

    def _object(self, identifier: str, member: bool) -> dict[str, Any]:
        ident = self.a.identifier
        obj: dict[str, Any]
        if ident.type == "user_alias":
            obj = {"user_alias": {"alias_name": identifier, "alias_label": ident.alias_label}}
        else:
            obj = {ident.type: identifier}
        obj[self.attribute] = member
        obj["_update_existing_only"] = True  # never creates a user
        return obj

    def _estimate_requests(self, entries: int, exits: int) -> int:
        return estimate_requests(entries + exits, self.a.destination)

    def _points(self, objects: int) -> int:
        return objects  # one boolean attribute per object

    def _samples(self) -> list[dict[str, Any]]:
        assert self.diff is not None
        sample = self.options.sample_size
        entries = [self._object(i, True) for i in self.diff.sample(ENTRIES, sample)]
        exits = [self._object(i, False) for i in self.diff.sample(EXITS, max(sample - len(entries), 1))]
        return (entries + exits)[: max(sample, 1)]

    def objects(self) -> Iterator[PreparedObject]:
        if self._iter is None:
            self._iter = self._build()
        return self._iter

    def _build(self) -> Iterator[PreparedObject]:
        assert self.diff is not None
        for entry, table in ((True, ENTRIES), (False, EXITS)):
            for ids in self.diff.ids(table, 10_000):
                for identifier in ids:
                    yield PreparedObject(
                        "attributes",
                        orjson.dumps(self._object(identifier, entry)),
                        MemberRef(identifier, entry),
                    )

    def on_batch(
        self,
        accepted: list[Any],
        rejected: list[tuple[Any, str]],
        failed: list[tuple[Any, str]],
    ) -> None:
        self.acknowledge([ref for ref in accepted if isinstance(ref, MemberRef)])
        for ref, message in rejected:
            identifier = ref.identifier if isinstance(ref, MemberRef) else None
            self.rejections.append(Rejection(identifier, message, "braze"))
            self.res.rejected += 1
            self.sent += 1
        self.res.failed += len(failed)
