"""The user-attributes service: changed fields become Braze attribute objects.

Reads the diff's changed rows, builds one ``/users/track`` attribute object per user holding only
the attributes that changed, rejects rows Braze would refuse, and turns acknowledged objects back
into state journal rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from dbt_dinmo.activation import Activation
from dbt_dinmo.braze import PreparedObject
from dbt_dinmo.payloads import Converter, ValueRejected, check_standard, data_points, make_converter
from dbt_dinmo.state import attribute_column


@dataclass(frozen=True, slots=True)
class RowRef:
    """What an attribute object stands for: enough to journal it once acknowledged."""

    identifier: str
    new: bool
    hashes: tuple[int | None, ...]  # hash of each sent attribute, None where not sent
    points: int  # data points the object spends


@dataclass
class Rejection:
    """A row that was not sent (or that Braze refused), with the reason."""

    identifier: str | None
    reason: str
    origin: str  # "dinmo" (checked before sending) or "braze" (Braze's message)
    detail: str | None = None


@dataclass
class Outbox:
    """Objects built from the changed rows, plus what was rejected before sending."""

    rejections: list[Rejection] = field(default_factory=list)
    objects: int = 0
    inserts: int = 0
    updates: int = 0
    points: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)


def identifier_fields(activation: Activation, identifier: str) -> dict[str, Any]:
    """The identifying keys (and update-only flag) of one user's attribute object."""
    ident = activation.identifier
    fields: dict[str, Any]
    if ident.type == "user_alias":
        fields = {"user_alias": {"alias_name": identifier, "alias_label": ident.alias_label}}
    else:
        fields = {ident.type: identifier}
    if activation.sync_mode == "update":
        fields["_update_existing_only"] = True
    elif ident.type == "user_alias":
        fields["_update_existing_only"] = False  # aliases are update-only unless told otherwise
    return fields


class AttributeObjects:
    """Builds attribute objects from the diff's changed-row batches."""

    def __init__(
        self,
        activation: Activation,
        declared_types: Mapping[str, str] | None = None,
        sample_size: int = 0,
    ) -> None:
        self.activation = activation
        self.attributes = activation.attributes
        self.columns = [column for column, _ in activation.mapping]
        self.declared = {k.lower(): v for k, v in (declared_types or {}).items()}
        self.sample_size = sample_size
        self.outbox = Outbox()
        self._converters: list[Converter] | None = None

    def _build_converters(self, schema: pa.Schema) -> list[Converter]:
        return [
            make_converter(schema.field(f"v{i}").type, self.declared.get(col.lower()))
            for i, col in enumerate(self.columns)
        ]

    def build(self, batches: Iterator[pa.RecordBatch]) -> Iterator[PreparedObject]:
        """Yield one prepared object per changed row that passes Braze's value rules."""
        n = len(self.attributes)
        out = self.outbox
        for batch in batches:
            if self._converters is None:
                self._converters = self._build_converters(batch.schema)
            conv = self._converters
            ids = batch.column("__id").to_pylist()
            news = batch.column("__new").to_pylist()
            flags = [batch.column(f"c{i}").to_pylist() for i in range(n)]
            hashes = [batch.column(f"h{i}").to_pylist() for i in range(n)]
            values = [batch.column(f"v{i}") for i in range(n)]
            # Convert only the columns that changed somewhere in this batch.
            pyvalues: list[list[Any] | None] = [
                values[i].to_pylist() if any(flags[i]) else None for i in range(n)
            ]
            for r, identifier in enumerate(ids):
                obj = identifier_fields(self.activation, identifier)
                sent: list[int | None] = [None] * n
                points = 0
                try:
                    for i in range(n):
                        if not flags[i][r]:
                            continue
                        attr = self.attributes[i]
                        try:
                            value = conv[i](pyvalues[i][r])  # type: ignore[index]
                            check_standard(attr, value)
                        except ValueRejected as exc:
                            raise ValueRejected(
                                f"attribute {attr} (column {self.columns[i]}) {exc}"
                            ) from None
                        obj[attr] = value
                        sent[i] = hashes[i][r]
                        points += data_points(attr, value)
                except ValueRejected as exc:
                    out.rejections.append(Rejection(identifier, str(exc), "dinmo"))
                    continue
                out.objects += 1
                out.points += points
                if news[r] and self.activation.sync_mode != "update":  # update mode never creates
                    out.inserts += 1
                else:
                    out.updates += 1
                if len(out.samples) < self.sample_size:
                    out.samples.append(obj)
                yield PreparedObject(
                    "attributes",
                    orjson.dumps(obj),
                    RowRef(identifier, bool(news[r]), tuple(sent), points),
                )


def journal_rows(activation: Activation, refs: list[RowRef], seq: int, op: str = "upsert") -> pa.Table:
    """Journal rows for acknowledged objects (or deleted identifiers with ``op='delete'``)."""
    now = dt.datetime.now(dt.timezone.utc)
    data: dict[str, Any] = {
        "__id": [r.identifier for r in refs],
        "__op": [op] * len(refs),
        "__seq": [seq] * len(refs),
        "__at": [now] * len(refs),
    }
    for i, attr in enumerate(activation.attributes):
        data[attribute_column(attr)] = pa.array([r.hashes[i] for r in refs], type=pa.uint64())
    return pa.table(data)


def rejection_table(rejections: list[Rejection]) -> pa.Table:
    """Rejections as an Arrow table for the history."""
    return pa.table(
        {
            "identifier": pa.array([r.identifier for r in rejections], type=pa.string()),
            "reason": pa.array([r.reason for r in rejections], type=pa.string()),
            "origin": pa.array([r.origin for r in rejections], type=pa.string()),
            "detail": pa.array([r.detail for r in rejections], type=pa.string()),
        }
    )


def deleted_refs(identifiers: list[str], width: int) -> list[RowRef]:
    """RowRefs standing for deleted identifiers (no hashes)."""
    return [RowRef(i, False, (None,) * width, 0) for i in identifiers]


def delete_kwargs(activation: Activation, identifiers: list[str]) -> dict[str, Any]:
    """``/users/delete`` arguments for this activation's identifier type."""
    ident = activation.identifier
    if ident.type == "user_alias":
        return {"user_aliases": [{"alias_name": i, "alias_label": ident.alias_label} for i in identifiers]}
    if ident.type == "braze_id":
        return {"braze_ids": identifiers}
    return {"external_ids": identifiers}
