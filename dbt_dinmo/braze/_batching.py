"""Sans-IO /users/track: packing pre-encoded objects into bodies, and reading the answers.

Objects arrive already JSON-encoded, so a body is a few ``bytes.join`` calls and its size is
tracked incrementally: no object is decoded or re-encoded here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import orjson

from dbt_dinmo.braze._limits import MAX_BODY_BYTES, BatchRule

__all__ = [
    "KINDS",
    "Kind",
    "PreparedObject",
    "TrackBatch",
    "TrackPacker",
    "TrackResponse",
    "pack",
    "parse_track_response",
]

Kind = Literal["attributes", "events", "purchases"]
#: The arrays of a /users/track body, in body (and Braze processing) order.
KINDS: tuple[Kind, ...] = ("attributes", "events", "purchases")
_OPEN: dict[str, bytes] = {k: b'"' + k.encode() + b'":[' for k in KINDS}
# Cost of an array's first element beyond its own bytes: '"kind":[' + ']'.
_ARRAY_OVERHEAD: dict[str, int] = {k: len(_OPEN[k]) + 1 for k in KINDS}


@dataclass(frozen=True, slots=True)
class PreparedObject:
    """One /users/track object, already encoded as a JSON object, plus the caller's reference."""

    kind: Kind
    data: bytes
    ref: object = None


class TrackBatch:
    """Objects for one /users/track request, grouped by array."""

    __slots__ = ("_lists", "_size")

    def __init__(self, objects: Iterable[PreparedObject] = ()) -> None:
        self._lists: dict[str, list[PreparedObject]] = {k: [] for k in KINDS}
        self._size = 2  # "{}"
        for obj in objects:
            self._append(obj)

    @classmethod
    def _from_parts(cls, lists: dict[str, list[PreparedObject]], size: int) -> TrackBatch:
        batch = cls.__new__(cls)
        batch._lists = lists
        batch._size = size
        return batch

    def _added_size(self, obj: PreparedObject) -> int:
        """Bytes the body would grow by if ``obj`` were appended."""
        if self._lists[obj.kind]:
            return len(obj.data) + 1  # a comma inside the array
        extra = _ARRAY_OVERHEAD[obj.kind]
        if self._size > 2:
            extra += 1  # a comma between arrays
        return len(obj.data) + extra

    def _append(self, obj: PreparedObject) -> None:
        if obj.kind not in self._lists:
            raise ValueError(f"unknown object kind {obj.kind!r}; expected one of {KINDS}")
        self._size += self._added_size(obj)
        self._lists[obj.kind].append(obj)

    @property
    def size_bytes(self) -> int:
        """Exact length of :meth:`body`."""
        return self._size

    @property
    def kind_lists(self) -> dict[Kind, list[PreparedObject]]:
        """The three arrays (possibly empty), keyed by kind. Do not mutate them."""
        return {k: self._lists[k] for k in KINDS}

    @property
    def objects(self) -> list[PreparedObject]:
        """Every object, in body order: attributes, then events, then purchases."""
        lists = self._lists
        return lists["attributes"] + lists["events"] + lists["purchases"]

    def count(self, kind: Kind) -> int:
        """Number of objects in one array."""
        return len(self._lists[kind])

    def __len__(self) -> int:
        lists = self._lists
        return len(lists["attributes"]) + len(lists["events"]) + len(lists["purchases"])

    def __bool__(self) -> bool:
        return self._size > 2

    def body(self) -> bytes:
        """The JSON request body; empty arrays are left out."""
        parts = [
            _OPEN[kind] + b",".join([o.data for o in objs]) + b"]"
            for kind, objs in self._lists.items()
            if objs
        ]
        return b"{" + b",".join(parts) + b"}"

    def split(self) -> tuple[TrackBatch, TrackBatch]:
        """Two halves (by object count, body order) for resending after a 413."""
        objects = self.objects
        if len(objects) < 2:
            raise ValueError("a batch of fewer than two objects cannot be split")
        middle = len(objects) // 2
        return TrackBatch(objects[:middle]), TrackBatch(objects[middle:])

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={len(v)}" for k, v in self._lists.items() if v)
        return f"TrackBatch({counts or 'empty'}, {self._size} bytes)"


class TrackPacker:
    """Incremental packer: feed objects with :meth:`add`, collect full batches, then :meth:`flush`.

    A batch is closed when the next object would break the count rule or push the body over
    ``max_body_bytes``, or as soon as no further object could fit by count. An object larger
    than ``max_body_bytes`` on its own travels alone (Braze may still accept it up to 4 MB;
    otherwise the sender reports it as rejected). ``add`` is the hot path: a few integer
    comparisons and one list append per object.
    """

    __slots__ = ("_combined", "_lists", "_max_bytes", "_per_array", "_size", "_total")

    def __init__(self, rule: BatchRule, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._per_array = rule.per_array
        self._combined = rule.combined if rule.combined is not None else 1 << 62
        self._max_bytes = max_body_bytes
        self._reset()

    def _reset(self) -> None:
        self._lists: dict[str, list[PreparedObject]] = {k: [] for k in KINDS}
        self._size = 2
        self._total = 0

    def _close(self) -> TrackBatch:
        batch = TrackBatch._from_parts(self._lists, self._size)
        self._reset()
        return batch

    def add(self, obj: PreparedObject) -> TrackBatch | None:
        """Add one object; return a batch when one is complete, else ``None``."""
        array = self._lists.get(obj.kind)
        if array is None:
            raise ValueError(f"unknown object kind {obj.kind!r}; expected one of {KINDS}")
        done = None
        size = len(obj.data)
        extra = size + 1 if array else size + _ARRAY_OVERHEAD[obj.kind] + (self._size > 2)
        if self._total and (len(array) >= self._per_array or self._size + extra > self._max_bytes):
            done = self._close()
            array = self._lists[obj.kind]
            extra = size + _ARRAY_OVERHEAD[obj.kind]
        array.append(obj)
        self._size += extra
        self._total += 1
        if done is None and (
            self._total >= self._combined
            or self._size >= self._max_bytes
            or (
                len(array) >= self._per_array and all(len(a) >= self._per_array for a in self._lists.values())
            )
        ):
            done = self._close()
        return done

    def flush(self) -> TrackBatch | None:
        """Return the partly filled batch, if any, and start afresh."""
        return self._close() if self._total else None


def pack(
    objects: Iterable[PreparedObject], rule: BatchRule, max_body_bytes: int = MAX_BODY_BYTES
) -> Iterator[TrackBatch]:
    """Lazily pack ``objects`` into batches, preserving their order within each array."""
    packer = TrackPacker(rule, max_body_bytes)
    for obj in objects:
        batch = packer.add(obj)
        if batch is not None:
            yield batch
    last = packer.flush()
    if last is not None:
        yield last


@dataclass(frozen=True)
class TrackResponse:
    """A /users/track answer: counts of queued objects and the per-object ("minor") errors."""

    status: int
    message: str
    processed: dict[str, int]
    errors: list[tuple[Kind | None, int | None, str]]
    attempts: int


def parse_track_response(status: int, content: bytes, attempts: int) -> TrackResponse | None:
    """Parse a /users/track body; ``None`` if it is not a JSON object."""
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    processed: dict[str, int] = {}
    for name in KINDS:
        count = doc.get(f"{name}_processed")
        if isinstance(count, int):
            processed[name] = count
    errors: list[tuple[Kind | None, int | None, str]] = []
    for entry in doc.get("errors") or ():
        if not isinstance(entry, dict):
            errors.append((None, None, str(entry)))
            continue
        array, index = entry.get("input_array"), entry.get("index")
        kind: Kind | None = array if array in KINDS else None
        if not isinstance(index, int) or isinstance(index, bool):
            index = None
        text = entry.get("type") or entry.get("message") or "unknown error"
        errors.append((kind, index, str(text)))
    return TrackResponse(status, str(doc.get("message", "")), processed, errors, attempts)
