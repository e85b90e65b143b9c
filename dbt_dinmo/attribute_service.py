"""The user-attributes service's sync: field-level diff, attribute objects, mirror deletions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from dbt_dinmo.attributes import (
    AttributeObjects,
    Rejection,
    RowRef,
    delete_kwargs,
    deleted_refs,
    journal_rows,
)
from dbt_dinmo.braze import PreparedObject
from dbt_dinmo.diff import CHANGES, Diff
from dbt_dinmo.profiles import known_key
from dbt_dinmo.service import DELETE_BATCH, ServiceSync, estimate_requests
from dbt_dinmo.state import ActivationState

log = logging.getLogger("dbt_dinmo.runner")


class AttributeSync(ServiceSync):
    """``user_attributes``: only the attributes whose values changed, per user."""

    kind = "attributes"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state: ActivationState | None = None
        self.diff: Diff | None = None
        self.builder: AttributeObjects | None = None
        self._iter: Iterator[PreparedObject] | None = None
        self._deletes = 0
        self._blocked = False
        self._previous_rejections: set[str] = set()
        self._acks: list[pa.Table] = []

    def prepare(self, dry_run: bool) -> None:
        a, res, opts = self.a, self.res, self.options
        self.reporter.activation_started(a, "reading")
        creates = known_key(a) if a.creates_users else None
        state = self.store.activation_state(
            a.name, a.identity, a.attributes, prepare=not dry_run, creates=creates
        )
        self.state = state
        if state.reset_reason:
            log.warning("%s: starting from an empty state: %s.", a.name, state.reset_reason)
        self._previous_rejections = self.store.previous_rejections(a.name)
        diff = Diff(self.store, state, full_refresh=opts.full_refresh, con=self.con)
        self.diff = diff
        read = list(dict.fromkeys([self.columns.identifier, *self.columns.mapped]))
        diff.load(
            self.wh.stream_relation(a.model.relation_name or "", read),
            self.columns.identifier,
            self.columns.mapped,
        )
        counts = diff.compute()
        res.source_rows, res.unchanged = counts.source_rows, counts.unchanged
        self.rejections.extend(
            Rejection(row["identifier"], row["reason"], row["origin"], row["detail"])
            for row in diff.identifier_rejections(a.identifier.column).to_pylist()
        )
        res.rejected = counts.null_identifiers + counts.duplicate_rows
        self._deletes = counts.deletes if a.sync_mode == "mirror" else 0
        self._blocked = self._guard(self._deletes, counts.synced, counts.valid_rows)
        if a.updates_existing_only:  # update mode: only users whose Braze profile exists
            self.open_gate(f"SELECT __id FROM {CHANGES}", dry_run)
        builder = AttributeObjects(
            a, self.columns.declared_types, sample_size=opts.sample_size if dry_run else 0
        )
        self.builder = builder
        if dry_run:
            for _ in builder.build(diff.changes()):
                pass
            out = builder.outbox
            res.inserted, res.updated, res.attribute_writes = out.inserts, out.updates, out.points
            res.samples = out.samples
            res.deleted = 0 if self._blocked else self._deletes
            res.planned_deletes = diff.deletes(limit=20) if self._deletes else []
            self.rejections.extend(out.rejections)
            res.rejected += len(out.rejections)
            res.requests = estimate_requests(out.objects, a.destination, res.deleted)
        else:
            self.total = counts.inserted + counts.updated

    async def before_send(self) -> None:
        if self.gate is None or self.diff is None:
            return
        waiting = await self.pass_gate(f"SELECT __id FROM {CHANGES}")
        self.total = self.diff.exclude(waiting)

    def objects(self) -> Iterator[PreparedObject]:
        if self._iter is None:
            assert self.builder is not None
            assert self.diff is not None
            self._iter = self.builder.build(self.diff.changes())
        return self._iter

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
        return self.block_removals(deletes, why)

    def on_batch(
        self,
        accepted: list[Any],
        rejected: list[tuple[Any, str]],
        failed: list[tuple[Any, str]],
    ) -> None:
        res, a = self.res, self.a
        refs = [ref for ref in accepted if isinstance(ref, RowRef)]
        if refs and self.state is not None:
            self._acks.append(journal_rows(a, refs, self.next_seq()))
        for ref in refs:
            if ref.new and a.sync_mode != "update":
                res.inserted += 1
            else:
                res.updated += 1
            res.attribute_writes += ref.points
            if ref.identifier in self._previous_rejections:
                res.retried += 1
        for ref, message in rejected:
            identifier = ref.identifier if isinstance(ref, RowRef) else None
            self.rejections.append(Rejection(identifier, message, "braze"))
            res.rejected += 1
        res.failed += len(failed)
        self.sent += len(accepted) + len(rejected)

    def flush(self) -> None:
        acks, self._acks = self._acks, []
        if acks and self.state is not None:
            self.store.journal_acks(self.state, acks[0] if len(acks) == 1 else pa.concat_tables(acks))

    async def after_send(self) -> None:
        if self._deletes and not self._blocked and self.diff is not None:
            self.reporter.activation_started(self.a, "deleting")
            await self._delete(self.diff.deletes())

    async def _delete(self, identifiers: list[str]) -> None:
        assert self.client is not None
        assert self.state is not None
        client, state = self.client, self.state
        semaphore = asyncio.Semaphore(self.a.destination.max_in_flight)
        width = len(self.a.attributes)

        async def one(chunk: list[str]) -> None:
            async with semaphore:
                await client.delete_users(**delete_kwargs(self.a, chunk))
            self.store.journal_acks(
                state, journal_rows(self.a, deleted_refs(chunk, width), self.next_seq(), op="delete")
            )
            self.res.deleted += len(chunk)
            self.res.requests += 1

        chunks = [identifiers[i : i + DELETE_BATCH] for i in range(0, len(identifiers), DELETE_BATCH)]
        results = await asyncio.gather(*(one(c) for c in chunks), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    def _close(self, dry_run: bool) -> None:
        try:
            if self.builder is not None and not dry_run and self._iter is not None:
                self.rejections.extend(self.builder.outbox.rejections)
                self.res.rejected += len(self.builder.outbox.rejections)
        finally:
            if self.diff is not None:
                self.diff.close()
            if not dry_run and self.state is not None:
                self.store.fold(self.state)
