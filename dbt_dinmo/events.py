"""The custom-event and purchase services' payloads: one Braze object per new model row.

Rows arrive from :class:`dbt_dinmo.event_diff.EventDiff` already checked by set-based rules (null
identifier or time, product, price, currency, quantity) and with the time as ISO-8601 UTC; here
each row becomes one ``/users/track`` event or purchase object. Property values go through the
same converters as attributes (numbers, booleans, ISO times, arrays, objects); a null property
is left out; a value Braze would refuse rejects the row with a reason. Each object costs one
data point plus one per property sent (braze-api.md 11.2).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from dbt_dinmo.activation import Activation
from dbt_dinmo.attributes import Outbox, Rejection
from dbt_dinmo.braze import Kind, PreparedObject
from dbt_dinmo.payloads import MAX_STRING, Converter, ValueRejected, make_converter

# Braze's ceiling on a properties payload holding arrays or objects (braze-api.md 3.8, 3.9).
MAX_NESTED_PROPERTIES = {"events": 100 * 1024, "purchases": 50 * 1024}


@dataclass(frozen=True, slots=True)
class EventRef:
    """What an event or purchase object stands for: enough to journal it once acknowledged."""

    identity: str  # the event identity recorded as sent (event_id, or the row hash)
    key: str | None  # what rejections show: the event_id, else the user identifier
    points: int  # data points the object spends


def event_identifier(activation: Activation, identifier: str) -> dict[str, Any]:
    """The identifying key of one event or purchase object."""
    ident = activation.identifier
    if ident.type == "user_alias":
        return {"user_alias": {"alias_name": identifier, "alias_label": ident.alias_label}}
    return {ident.type: identifier}


def _nested(arrow_type: pa.DataType, declared: str | None) -> bool:
    if pat.is_dictionary(arrow_type):
        return _nested(arrow_type.value_type, declared)
    if pat.is_list(arrow_type) or pat.is_large_list(arrow_type) or pat.is_fixed_size_list(arrow_type):
        return True
    if pat.is_struct(arrow_type) or pat.is_map(arrow_type):
        return True
    return bool(declared and declared.strip().lower() in ("json", "jsonb"))


class EventObjects:
    """Builds event or purchase objects from :meth:`EventDiff.rows` batches."""

    def __init__(
        self,
        activation: Activation,
        declared_types: Mapping[str, str] | None = None,
        sample_size: int = 0,
    ) -> None:
        assert activation.events is not None
        self.activation = activation
        self.spec = activation.events
        self.kind: Kind = "purchases" if self.spec.is_purchase else "events"
        self.names = [prop for _, prop in activation.mapping]
        self.columns = [column for column, _ in activation.mapping]
        self.declared = {k.lower(): v for k, v in (declared_types or {}).items()}
        self.sample_size = sample_size
        self.outbox = Outbox()
        self._converters: list[Converter] | None = None
        self._nested = False
        self._keyed = self.spec.event_id is not None
        self._json_columns = [
            (self.declared.get(c.lower()) or "").strip().lower() in ("json", "jsonb") for c in self.columns
        ]

    def _prepare(self, schema: pa.Schema) -> list[Converter]:
        converters = []
        for i, column in enumerate(self.columns):
            arrow_type = schema.field(f"v{i}").type
            declared = self.declared.get(column.lower())
            if pat.is_decimal(arrow_type):
                arrow_type = pa.float64()  # read as floats (see _column)
            converters.append(make_converter(arrow_type, declared))
            self._nested = self._nested or _nested(arrow_type, declared)
        return converters

    def _column(self, batch: pa.RecordBatch, i: int) -> tuple[list[Any], bool]:
        """Python values of property ``i`` and whether they need the converter.

        Decimals are read as floats (Braze numbers are doubles anyway); integers, booleans,
        finite floats and strings within Braze's length pass through as they are, so the per-row
        converter only runs where a value may need changing or refusing.
        """
        column = batch.column(f"v{i}")
        kind = column.type
        if pat.is_decimal(kind):
            # Through text: a direct cast divides in binary and turns 96.46 into 96.46000000000001.
            column = pc.cast(pc.cast(column, pa.string()), pa.float64())
            kind = column.type
        values = column.to_pylist()
        if pat.is_integer(kind) or pat.is_boolean(kind) or pat.is_null(kind):
            return values, False
        if pat.is_floating(kind):
            finite = pc.all(pc.is_finite(column)).as_py()  # None when every value is null
            return values, finite is False
        if (pat.is_string(kind) or pat.is_large_string(kind)) and not self._json_columns[i]:
            longest = pc.max(pc.utf8_length(column)).as_py()
            return values, longest is not None and longest > MAX_STRING
        return values, True

    def build(self, batches: Iterator[pa.RecordBatch]) -> Iterator[PreparedObject]:
        """Yield one prepared object per row whose properties pass Braze's rules."""
        out, kind, names = self.outbox, self.kind, self.names
        n = len(names)
        limit = MAX_NESTED_PROPERTIES[kind]
        dumps = orjson.dumps
        ident_type = self.activation.identifier.type
        plain_ident = ident_type != "user_alias"
        name = self.spec.event_name
        purchase = self.spec.is_purchase
        keyed = self._keyed
        sample = self.sample_size
        too_big = f"properties hold arrays or objects and exceed Braze's {limit // 1024} KB limit"
        for batch in batches:
            if self._converters is None:
                self._converters = self._prepare(batch.schema)
            conv = self._converters
            uids = batch.column("__uid").to_pylist()
            eids = batch.column("__eid").to_pylist()
            times = batch.column("__time").to_pylist()
            columns = [self._column(batch, i) for i in range(n)]
            values = [c[0] for c in columns]
            slow = [c[1] for c in columns]
            props_of = list(zip(names, values, slow, conv, strict=True))
            if purchase:
                products = batch.column("__product").to_pylist()
                prices = batch.column("__price").to_pylist()
                currencies = batch.column("__currency").to_pylist()
                quantities = batch.column("__qty").to_pylist()
            objects = points = 0
            for r, uid in enumerate(uids):
                obj: dict[str, Any] = (
                    {ident_type: uid} if plain_ident else event_identifier(self.activation, uid)
                )
                if purchase:
                    obj["product_id"] = products[r]
                    obj["currency"] = currencies[r]
                    obj["price"] = prices[r]
                    if quantities[r] is not None:
                        obj["quantity"] = quantities[r]
                else:
                    obj["name"] = name
                obj["time"] = times[r]
                props: dict[str, Any] = {}
                for prop, vals, convert, fn in props_of:
                    raw = vals[r]
                    if raw is None:
                        continue
                    if convert:
                        try:
                            raw = fn(raw)
                        except ValueRejected as exc:
                            column = self.columns[names.index(prop)]
                            out.rejections.append(
                                self._rejection(uid, eids[r], f"property {prop} (column {column}) {exc}")
                            )
                            break
                        if raw is None:
                            continue
                    props[prop] = raw
                else:
                    if props:
                        if self._nested and len(dumps(props)) > limit:
                            out.rejections.append(self._rejection(uid, eids[r], too_big))
                            continue
                        obj["properties"] = props
                    cost = 1 + len(props)
                    objects += 1
                    points += cost
                    if len(out.samples) < sample:
                        out.samples.append(obj)
                    eid = eids[r]
                    yield PreparedObject(kind, dumps(obj), EventRef(eid, eid if keyed else uid, cost))
            out.objects += objects
            out.inserts += objects
            out.points += points

    def _rejection(self, uid: str | None, eid: str | None, reason: str) -> Rejection:
        return rejection(self._keyed, uid, eid, reason, "dinmo")


def rejection(keyed: bool, uid: str | None, eid: str | None, reason: str, origin: str) -> Rejection:
    """A rejected event: shown by its event_id (else its user), with its identity as detail."""
    return Rejection(eid if keyed else uid, reason, origin, eid)
