"""Shared /users/track requests across a destination's activations (runner._SharedSender)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from dbt_dinmo.braze import BatchResult, PreparedObject
from dbt_dinmo.runner import _SharedSender


class FakeSync:
    """Just what the sender touches: objects, flush, on_batch, done, the destination's rule."""

    def __init__(self, name: str, kind: str, count: int, rule: str = "75_per_array") -> None:
        self.name, self.kind = name, kind
        self.a = SimpleNamespace(destination=SimpleNamespace(batch_rule=rule))
        self.res = SimpleNamespace(requests=0)
        self.done = False
        self.flushes = 0
        self.acked: list[Any] = []
        array = {"attributes": "attributes", "events": "events", "purchases": "purchases"}[kind]
        self._objects = iter([PreparedObject(array, b"{}", f"{name}{i}") for i in range(count)])  # type: ignore[arg-type]

    def objects(self) -> Iterator[PreparedObject]:
        return self._objects

    def flush(self) -> None:
        self.flushes += 1

    def on_batch(self, accepted: list[Any], rejected: list[Any], failed: list[Any]) -> None:
        self.acked.extend(accepted)


def owners(batch: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in batch.objects:
        name = obj.ref[1].rstrip("0123456789")
        counts[f"{name}:{obj.kind}"] = counts.get(f"{name}:{obj.kind}", 0) + 1
    return counts


def test_rounds_mix_kinds_and_keep_attribute_activations_apart() -> None:
    attrs_a = FakeSync("a", "attributes", 100)
    attrs_b = FakeSync("b", "attributes", 10)
    events = FakeSync("e", "events", 120)
    purchases = FakeSync("p", "purchases", 200)
    sender = _SharedSender([attrs_a, attrs_b, events, purchases])  # type: ignore[list-item]
    riders = [events, purchases]
    first = list(sender.batches(attrs_a, riders))  # type: ignore[arg-type]
    assert owners(first[0]) == {"a:attributes": 75, "e:events": 75, "p:purchases": 75}
    # a's last 25 attributes, topped up with riders until that request is full
    assert owners(first[1])["a:attributes"] == 25 and sum(owners(first[1]).values()) > 25
    assert all("b:attributes" not in owners(b) for b in first)  # b waits for its own round
    second = list(sender.batches(attrs_b, riders))  # type: ignore[arg-type]
    assert all("a:attributes" not in owners(b) for b in second)
    assert sum(owners(b).get("b:attributes", 0) for b in second) == 10
    last = list(sender.batches(None, riders))  # type: ignore[arg-type]
    sent = [o.ref[1] for b in first + second + last for o in b.objects]
    assert len(sent) == len(set(sent)) == 100 + 10 + 120 + 200  # each object exactly once
    assert len(first + second + last) < 3 + 1 + 2 + 3  # fewer requests than one activation at a time
    assert events.flushes >= len(first) + len(second) + len(last)  # journaled before each request


def test_answers_go_back_to_their_owner() -> None:
    attrs = FakeSync("a", "attributes", 3)
    events = FakeSync("e", "events", 2)
    sender = _SharedSender([attrs, events])  # type: ignore[list-item]
    [batch] = list(sender.batches(attrs, [events]))  # type: ignore[arg-type]
    accepted = [o for o in batch.objects if o.ref[1] != "a1"]
    rejected = [(o, "bad") for o in batch.objects if o.ref[1] == "a1"]
    sender.dispatch(BatchResult(batch, accepted, rejected, 1, None))
    assert attrs.acked == ["a0", "a2"] and events.acked == ["e0", "e1"]
    assert attrs.res.requests == events.res.requests == 1


def test_a_single_activation_is_sent_untagged() -> None:
    events = FakeSync("e", "events", 80, rule="50_combined")
    sender = _SharedSender([events])  # type: ignore[list-item]
    batches = list(sender.batches(None, [events]))  # type: ignore[arg-type]
    assert [len(b) for b in batches] == [50, 30]
    assert batches[0].objects[0].ref == "e0"
