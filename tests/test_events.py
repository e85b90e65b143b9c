"""Custom events and purchases: contract, diff against sent identities, payloads, journal."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from dbt_dinmo.activation import Activation, parse_backfill, parse_lookback
from dbt_dinmo.event_diff import EventDiff
from dbt_dinmo.event_service import window_start
from dbt_dinmo.events import EventObjects
from dbt_dinmo.project import ResolvedColumns
from dbt_dinmo.state import StateStore, Watermark
from tests.test_activation import exposure, model, parse, write_project

UTC = dt.timezone.utc
EVENT = {
    "destination": "braze",
    "service": "custom_events",
    "event_name": "order_placed",
    "identifier": {"column": "customer_id", "type": "external_id"},
    "event_time": "ordered_at",
    "event_id": "order_id",
    "properties": {"amount": "order_total", "status": "status"},
    "cursor": "ordered_at",
    "lookback": "3 days",
}
PURCHASE = {
    "destination": "braze",
    "service": "purchases",
    "identifier": {"column": "customer_id"},
    "event_time": "ordered_at",
    "event_id": "item_id",
    "product_id": "sku",
    "price": "unit_price",
    "currency": {"value": "eur"},
    "quantity": "quantity",
    "properties": {"store": "store"},
}


def activation(tmp_path: Path, dinmo: dict[str, Any], name: str = "ev") -> Activation:
    write_project(tmp_path, [exposure(name, dinmo, ["model.p.orders"])], [model("orders")])
    activations, problems = parse(tmp_path)
    assert problems == []
    return activations[0]


def resolved(a: Activation) -> ResolvedColumns:
    return ResolvedColumns(
        a.identifier.column,
        [c for c, _ in a.mapping],
        {},
        {role: column for role, column, _ in a.role_columns()},
    )


def orders(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    schema = pa.schema(
        [
            ("order_id", pa.string()),
            ("customer_id", pa.string()),
            ("ordered_at", pa.timestamp("us")),
            ("amount", pa.decimal128(10, 2)),
            ("status", pa.string()),
        ]
    )
    return pa.RecordBatch.from_pylist(rows, schema=schema)


def order(i: int, **kw: Any) -> dict[str, Any]:
    row = {
        "order_id": f"O{i:03d}",
        "customer_id": f"C{i % 5}",
        "ordered_at": dt.datetime(2025, 1, 1) + dt.timedelta(days=i),
        "amount": Decimal("10.50") + i,
        "status": "placed",
    }
    row.update(kw)
    return row


class Sync:
    """The event path without the runner: diff, build, acknowledge everything, fold."""

    def __init__(self, store: StateStore, a: Activation) -> None:
        self.store, self.a = store, a

    def run(
        self, batch: pa.RecordBatch, *, ack: bool = True, dry_run: bool = False
    ) -> tuple[Any, list[dict[str, Any]], EventDiff, EventObjects]:
        a, store = self.a, self.store
        state = store.event_state(a.name, a.identity, prepare=not dry_run)
        con = store.cursor()
        diff = EventDiff(con, a, resolved(a), state, state_exists=store.has_table(state.table))
        diff.load([batch])
        spec = a.events
        assert spec is not None
        mark_all = spec.backfill is False and not state.initialized
        before = spec.backfill if isinstance(spec.backfill, dt.datetime) else None
        counts = diff.compute(mark_all=mark_all, before=before)
        if counts.marked and not dry_run:
            diff.journal_marks(state.journal)
        builder = EventObjects(a)
        objects = list(builder.build(diff.rows()))
        if ack and not dry_run:
            store.journal_events(state, [o.ref.identity for o in objects], 1)  # type: ignore[attr-defined]
            store.fold_events(state)
            cursor = resolved(a).roles.get("cursor")
            store.set_event_mark(state, "event_id", diff.watermark(cursor) if cursor else None)
        self.builder = builder
        self.diff_rejections = diff.rejections()
        diff.close()
        con.close()
        return counts, [orjson.loads(o.data) for o in objects], diff, builder


# -- contract ---------------------------------------------------------------------------------------


def test_event_and_purchase_contracts_parse(tmp_path: Path) -> None:
    a = activation(tmp_path, EVENT)
    assert a.is_event and a.sync_mode == "append" and a.mapping_key == "properties"
    assert a.events is not None and a.events.lookback.seconds == 3 * 86400 and a.events.backfill is True
    roles = {role: column for role, column, _ in a.role_columns()}
    assert roles == {"event_time": "ordered_at", "event_id": "order_id", "cursor": "ordered_at"}
    p = activation(tmp_path, PURCHASE, "pur")
    assert p.events is not None and p.events.is_purchase and p.events.currency_value == "EUR"
    assert {r for r, _, _ in p.role_columns()} == {
        "event_time",
        "event_id",
        "product_id",
        "price",
        "quantity",
    }
    assert "custom_events" in a.identity and "order_placed" in a.identity


def test_event_contract_problems_are_all_reported(tmp_path: Path) -> None:
    bad_event = dict(
        EVENT,
        event_name=None,
        sync_mode="upsert",
        mapping={"a": "b"},
        properties={"a": "$x", "b": "time", "c": "ok", "d": "ok"},
        lookback="soon",
        backfill="someday",
    )
    del bad_event["event_time"]
    bad_purchase = dict(PURCHASE, currency={"value": "EURO"}, price=None)
    attrs = {
        "destination": "braze",
        "service": "user_attributes",
        "identifier": {"column": "id"},
        "mapping": {"a": "a"},
        "event_time": "t",
    }
    write_project(
        tmp_path,
        [
            exposure("bad_event", bad_event, ["model.p.orders"]),
            exposure("bad_purchase", bad_purchase, ["model.p.orders"]),
            exposure("attrs", attrs, ["model.p.orders"]),
        ],
        [model("orders")],
    )
    activations, problems = parse(tmp_path)
    assert activations == []
    found = {(p.where, p.key.split(".")[-1]) for p in problems}
    for key in ("event_name", "event_time", "sync_mode", "mapping", "a", "b", "d", "lookback", "backfill"):
        assert ("exposure bad_event", key) in found, key
    assert ("exposure bad_purchase", "currency") in found and ("exposure bad_purchase", "price") in found
    assert ("exposure attrs", "event_time") in found
    text = " ".join(p.message for p in problems)
    assert "reserved" in text and "not a valid Braze property name" in text and "already mapped" in text


def test_lookback_and_backfill_values() -> None:
    assert parse_lookback("3 days").seconds == 259200
    assert parse_lookback("90 minutes").seconds == 5400
    assert parse_lookback("12h").seconds == 43200
    assert parse_lookback(100).amount == 100 and parse_lookback("0").is_zero
    with pytest.raises(ValueError):
        parse_lookback("3 fortnights")
    assert parse_backfill(False) is False and parse_backfill("true") is True
    assert parse_backfill(dt.date(2024, 1, 2)) == dt.datetime(2024, 1, 2, tzinfo=UTC)
    assert parse_backfill("2024-01-02T10:00:00+02:00") == dt.datetime(2024, 1, 2, 8, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_backfill("soon")


def test_window_start_literals() -> None:
    us = (
        int(
            (
                dt.datetime(2025, 3, 14, 18, 53, 3, tzinfo=UTC) - dt.datetime(1970, 1, 1, tzinfo=UTC)
            ).total_seconds()
        )
        * 10**6
    )
    lit, text = window_start(Watermark("t", "timestamp", str(us)), 3 * 86400, None, "TIMESTAMP")
    assert text == "2025-03-11 18:53:03.000000" and lit == "cast('2025-03-11 18:53:03.000000' as TIMESTAMP)"
    lit, _ = window_start(Watermark("t", "timestamptz", str(us)), 0.0, 0.0, None)
    assert lit == "'2025-03-14 18:53:03.000000+00:00'"
    _, text = window_start(Watermark("d", "date", "2025-03-14"), 36 * 3600, None, "DATE")
    assert text == "2025-03-12"  # a partial day reaches back a whole day
    assert window_start(Watermark("n", "integer", "1000"), None, 100, "BIGINT")[0] == "900"
    with pytest.raises(Exception, match="duration"):
        window_start(Watermark("t", "timestamp", str(us)), None, 5, None)
    with pytest.raises(Exception, match="number"):
        window_start(Watermark("n", "integer", "1000"), 60.0, None, None)


# -- diff and payloads ---------------------------------------------------------------------------------


def test_first_run_sends_every_event_then_only_new_ones(tmp_path: Path) -> None:
    a = activation(tmp_path, EVENT)
    with StateStore(tmp_path / "state") as store:
        sync = Sync(store, a)
        counts, sent, _, builder = sync.run(orders([order(i) for i in range(5)]))
        assert (counts.source_rows, counts.to_send, counts.already_sent) == (5, 5, 0)
        assert sent[0] == {
            "external_id": "C0",
            "name": "order_placed",
            "time": "2025-01-01T00:00:00Z",
            "properties": {"order_total": 10.5, "status": "placed"},
        }
        assert builder.outbox.points == 5 * 3
        counts, sent, _, _ = sync.run(
            orders([order(i) for i in range(6)] + [order(6, amount=Decimal("96.46"))])
        )
        assert (counts.to_send, counts.already_sent) == (2, 5)
        assert sent[-1]["properties"]["order_total"] == 96.46  # decimals are not rounded in binary
        assert [e["time"][:10] for e in sent] == ["2025-01-06", "2025-01-07"]
        # a sent row that changed later is never re-sent (events are not updated)
        counts, sent, _, _ = sync.run(orders([order(i, status="returned") for i in range(7)]))
        assert counts.to_send == 0 and sent == []


def test_rejected_rows_carry_reasons_and_are_not_recorded(tmp_path: Path) -> None:
    a = activation(tmp_path, EVENT)
    rows = [
        order(1, customer_id=None),
        order(2, ordered_at=None),
        order(3, order_id=None),
        order(4, status="x" * 300),
        order(5),
        order(6, order_id="O005"),  # the same id twice among new rows
    ]
    with StateStore(tmp_path / "state") as store:
        sync = Sync(store, a)
        counts, sent, _, builder = sync.run(orders(rows))
        reasons = {r[1] for r in sync.diff_rejections}
        assert "identifier column customer_id is null" in reasons
        assert "event_time column ordered_at is null" in reasons
        assert "event_id column order_id is null" in reasons
        assert any("appears 2 times" in r for r in reasons)
        assert [r.reason for r in builder.outbox.rejections] == [
            "property status (column status) is 300 characters long; Braze accepts at most 255"
        ]
        assert counts.rejected == 5 and sent == []
        fixed = [order(1), order(2), order(3), order(4), order(5), order(6)]
        counts, sent, _, _ = sync.run(orders(fixed))
        assert counts.to_send == 6 and len(sent) == 6  # retried once fixed


def test_text_times_and_row_hash_identity(tmp_path: Path) -> None:
    dinmo = dict(EVENT, event_time="at", cursor=None, lookback=None)
    del dinmo["event_id"], dinmo["cursor"], dinmo["lookback"]
    a = activation(tmp_path, dinmo)
    schema = pa.schema(
        [("customer_id", pa.string()), ("at", pa.string()), ("amount", pa.float64()), ("status", pa.string())]
    )
    rows = [
        {"customer_id": "C1", "at": "2025-01-01T10:00:00+02:00", "amount": 1.0, "status": "a"},
        {"customer_id": "C1", "at": "2025-01-01 08:00:00", "amount": 2.0, "status": "b"},  # same event
        {"customer_id": "C2", "at": "yesterday", "amount": 1.0, "status": "a"},
    ]
    with StateStore(tmp_path / "state") as store:
        sync = Sync(store, a)
        counts, sent, _, _ = sync.run(pa.RecordBatch.from_pylist(rows, schema=schema))
        assert [e["time"] for e in sent] == ["2025-01-01T08:00:00Z"]
        assert counts.already_sent == 1 and counts.rejected == 1
        assert "holds 'yesterday', which is not an ISO-8601 time" in sync.diff_rejections[0][1]
        counts, sent, _, _ = sync.run(pa.RecordBatch.from_pylist(rows, schema=schema))
        assert sent == [] and counts.rejected == 1


def test_purchases_checks_and_payload(tmp_path: Path) -> None:
    a = activation(tmp_path, dict(PURCHASE, currency="currency"), "pur")
    schema = pa.schema(
        [
            ("item_id", pa.string()),
            ("customer_id", pa.string()),
            ("ordered_at", pa.timestamp("us", tz="UTC")),
            ("sku", pa.string()),
            ("unit_price", pa.string()),
            ("currency", pa.string()),
            ("quantity", pa.int32()),
            ("store", pa.string()),
        ]
    )
    t = dt.datetime(2025, 1, 1, 12, 30, 0, 250000, tzinfo=UTC)
    good = {"item_id": "I1", "customer_id": "C1", "ordered_at": t, "sku": "SKU", "unit_price": "9.5",
            "currency": "usd", "quantity": 2, "store": None}  # fmt: skip
    rows = [
        good,
        {**good, "item_id": "I2", "currency": "EURO"},
        {**good, "item_id": "I3", "quantity": 101},
        {**good, "item_id": "I4", "unit_price": "abc"},
        {**good, "item_id": "I5", "sku": "s" * 256},
        {**good, "item_id": "I6", "quantity": 0},
        {**good, "item_id": "I7", "unit_price": None},
    ]
    with StateStore(tmp_path / "state") as store:
        sync = Sync(store, a)
        counts, sent, _, builder = sync.run(pa.RecordBatch.from_pylist(rows, schema=schema))
        assert sent == [
            {"external_id": "C1", "product_id": "SKU", "currency": "USD", "price": 9.5, "quantity": 2,
             "time": "2025-01-01T12:30:00.250000Z"}
        ]  # fmt: skip
        assert builder.outbox.points == 1
        reasons = {eid: reason for _, reason, eid in sync.diff_rejections}
        assert reasons["I2"] == "currency 'EURO' is not a three-letter ISO 4217 code"
        assert reasons["I3"] == "quantity '101' is not a whole number from 1 to 100"
        assert reasons["I4"] == "price 'abc' is not a number"
        assert reasons["I5"].startswith("product_id is 256 characters long")
        assert "I6" in reasons and reasons["I7"] == "price column unit_price is null"
        assert counts.rejected == 6


def test_backfill_false_marks_history_then_sends_later_rows(tmp_path: Path) -> None:
    a = activation(tmp_path, dict(EVENT, backfill=False))
    with StateStore(tmp_path / "state") as store:
        sync = Sync(store, a)
        counts, sent, _, _ = sync.run(orders([order(i) for i in range(4)]))
        assert (counts.marked, counts.to_send, sent) == (4, 0, [])
        counts, sent, _, _ = sync.run(orders([order(i) for i in range(6)]))
        assert counts.marked == 0 and len(sent) == 2 and counts.already_sent == 4


def test_backfill_date_never_sends_older_events(tmp_path: Path) -> None:
    a = activation(tmp_path, dict(EVENT, backfill="2025-01-03"))
    with StateStore(tmp_path / "state") as store:
        sync = Sync(store, a)
        counts, sent, _, _ = sync.run(orders([order(i) for i in range(5)]))
        assert counts.marked == 2 and [e["time"][:10] for e in sent] == [
            "2025-01-03",
            "2025-01-04",
            "2025-01-05",
        ]
        late = orders([order(i) for i in range(5)] + [order(90, ordered_at=dt.datetime(2024, 12, 1))])
        counts, sent, _, _ = sync.run(late)
        assert counts.marked == 1 and sent == []


def test_watermark_is_held_by_rows_not_acknowledged(tmp_path: Path) -> None:
    a = activation(tmp_path, EVENT)
    with StateStore(tmp_path / "state") as store:
        sync = Sync(store, a)
        sync.run(orders([order(i) for i in range(5)]))
        state = store.event_state(a.name, a.identity)
        assert state.watermark is not None and state.watermark.kind == "timestamp"
        top = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(state.watermark.value))
        assert top == dt.datetime(2025, 1, 5)
        sync.run(orders([order(i) for i in range(5)] + [order(7, customer_id=None)]))
        state = store.event_state(a.name, a.identity)
        low = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(state.watermark.value))  # type: ignore[union-attr]
        assert low == dt.datetime(2025, 1, 8)  # the rejected row is the lowest unacknowledged one
        sync.run(orders([order(i) for i in range(5)] + [order(6, customer_id=None), order(7)]))
        state = store.event_state(a.name, a.identity)
        low = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(state.watermark.value))  # type: ignore[union-attr]
        assert low == dt.datetime(2025, 1, 7)


# -- the journal ----------------------------------------------------------------------------------------


def test_acknowledgement_log_survives_a_crash_and_a_torn_line(tmp_path: Path) -> None:
    a = activation(tmp_path, EVENT)
    with StateStore(tmp_path / "state") as store:
        state = store.event_state(a.name, a.identity)
        store.journal_events(state, ["O1", "O2"], 1)
        store.journal_events(state, ["O3"], 2)
    with state.ack_log.open("ab") as log:
        log.write(b'["O4", "O')  # killed mid-write: never acknowledged as recorded
    with StateStore(tmp_path / "state") as store:
        state = store.event_state(a.name, a.identity)  # folds what the dead run journaled
        assert not state.ack_log.exists()
        ids = {r[0] for r in store.con.execute(f"SELECT __id FROM {state.table}").fetchall()}
        assert ids == {"O1", "O2", "O3"}
        store.journal_events(state, ["O3", "O5"], 3)  # folding again is idempotent
        store.fold_events(state)
        assert store.sent_count(state) == 4


def test_a_new_destination_starts_a_fresh_event_state(tmp_path: Path) -> None:
    a = activation(tmp_path, EVENT)
    with StateStore(tmp_path / "state") as store:
        Sync(store, a).run(orders([order(i) for i in range(3)]))
        state = store.event_state(a.name, a.identity + "|elsewhere")
        assert state.reset_reason and not state.initialized and store.sent_count(state) == 0
