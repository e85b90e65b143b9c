from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from dbt_dinmo.diff import Diff
from dbt_dinmo.errors import StateLockedError
from dbt_dinmo.state import RunLock, StateStore, attribute_column

ATTRS = ("first_name", "ltv")


def batch(ids: list[str | None], names: list[str | None], ltv: list[float | None]) -> pa.RecordBatch:
    return pa.record_batch({"id": ids, "name": names, "ltv": ltv})


def diff_of(
    store: StateStore, rows: pa.RecordBatch, attrs: tuple[str, ...] = ATTRS, **kw: bool
) -> tuple[Diff, object]:
    state = store.activation_state("act", "dest|external_id|id|", attrs)
    diff = Diff(store, state, **kw)
    diff.load([rows], "id", ["name", "ltv"][: len(attrs)])
    return diff, diff.compute()


def ack_all(store: StateStore, diff: Diff) -> None:
    """Journal every change as acknowledged, then fold (what a run does)."""
    for b in diff.changes():
        n = len(diff.attr_cols)
        data = {
            "__id": b.column("__id"),
            "__op": ["upsert"] * b.num_rows,
            "__seq": [1] * b.num_rows,
            "__at": [dt.datetime.now(dt.timezone.utc)] * b.num_rows,
        }
        for i, col in enumerate(diff.attr_cols):
            flags = b.column(f"c{i}").to_pylist()
            hashes = b.column(f"h{i}").to_pylist()
            data[col] = pa.array(
                [h if f else None for h, f in zip(hashes, flags, strict=True)], type=pa.uint64()
            )
        assert n == len(diff.attr_cols)
        store.journal_acks(diff.state, pa.table(data))
    diff.close()
    store.fold(diff.state)


def test_first_sync_then_noop_then_field_level_change(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        diff, counts = diff_of(store, batch(["a", "b", "c"], ["Ada", "Bob", None], [1.0, 2.0, 3.0]))
        assert (counts.inserted, counts.updated, counts.unchanged) == (3, 0, 0)
        changed = [r for b in diff.changes() for r in b.to_pylist()]
        # c has no name: a never-sent null is not sent
        row_c = next(r for r in changed if r["__id"] == "c")
        assert row_c["c0"] is False and row_c["c1"] is True
        ack_all(store, diff)

        diff, counts = diff_of(store, batch(["a", "b", "c"], ["Ada", "Bob", None], [1.0, 2.0, 3.0]))
        assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 3)
        diff.close()

        diff, counts = diff_of(store, batch(["a", "b", "c"], ["Ada", "Bobby", None], [1.0, 2.0, 3.0]))
        assert (counts.inserted, counts.updated) == (0, 1)
        [row] = [r for b in diff.changes() for r in b.to_pylist()]
        assert row["__id"] == "b" and row["c0"] is True and row["c1"] is False
        diff.close()


def test_unacknowledged_changes_are_sent_again(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        diff, counts = diff_of(store, batch(["a"], ["Ada"], [1.0]))
        diff.close()  # nothing acknowledged
        diff, counts = diff_of(store, batch(["a"], ["Ada"], [1.0]))
        assert counts.inserted == 1
        diff.close()


def test_null_and_duplicate_identifiers_are_set_aside(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        diff, counts = diff_of(store, batch(["a", None, "d", "d"], ["A", "N", "D1", "D2"], [1, 2, 3, 4]))
        assert counts.null_identifiers == 1 and counts.duplicate_rows == 2 and counts.inserted == 1
        reasons = diff.identifier_rejections("id").to_pylist()
        assert {r["identifier"] for r in reasons} == {None, "d"}
        diff.close()


def test_new_mapped_attribute_backfills_only_that_attribute(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        diff, _ = diff_of(store, batch(["a", "b"], ["A", "B"], [1.0, 2.0]), attrs=("first_name",))
        ack_all(store, diff)
        diff, counts = diff_of(store, batch(["a", "b"], ["A", "B"], [1.0, 2.0]))
        assert (counts.inserted, counts.updated) == (0, 2)
        rows = [r for b in diff.changes() for r in b.to_pylist()]
        assert all(r["c0"] is False and r["c1"] is True for r in rows)
        diff.close()


def test_deletes_and_full_refresh(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        diff, _ = diff_of(store, batch(["a", "b", "c"], ["A", "B", "C"], [1.0, 2.0, 3.0]))
        ack_all(store, diff)
        diff, counts = diff_of(store, batch(["a"], ["A"], [1.0]))
        assert counts.deletes == 2 and diff.deletes() == ["b", "c"] and counts.synced == 3
        diff.close()
        diff, counts = diff_of(store, batch(["a"], ["A"], [1.0]), full_refresh=True)
        assert counts.updated == 1
        diff.close()


def test_journal_survives_a_crash_and_is_folded_next_time(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    diff, _ = diff_of(store, batch(["a"], ["A"], [1.0]))
    [b] = list(diff.changes())
    acks = pa.table(
        {
            "__id": ["a"],
            "__op": ["upsert"],
            "__seq": [1],
            "__at": [dt.datetime.now(dt.timezone.utc)],
            attribute_column("first_name"): pa.array([b.column("h0")[0].as_py()], type=pa.uint64()),
            attribute_column("ltv"): pa.array([None], type=pa.uint64()),
        }
    )
    store.journal_acks(diff.state, acks)
    store.con.close()  # "crash": no fold
    with StateStore(tmp_path) as store2:
        diff, counts = diff_of(store2, batch(["a"], ["A"], [1.0]))
        assert (counts.inserted, counts.updated) == (0, 1)  # only ltv is still unacknowledged
        [row] = [r for b in diff.changes() for r in b.to_pylist()]
        assert row["c0"] is False and row["c1"] is True
        diff.close()


def test_run_lock_is_exclusive(tmp_path: Path) -> None:
    first = RunLock(tmp_path)
    first.acquire()
    with pytest.raises(StateLockedError, match="another dbt-dinmo run"):
        RunLock(tmp_path).acquire()
    first.release()
    RunLock(tmp_path).acquire()
