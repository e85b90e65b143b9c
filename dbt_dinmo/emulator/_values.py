"""Custom attribute value semantics and their data-point cost (braze-api.md 3.5 and 11.2).

Values reaching this module were validated by :mod:`._validate`.
"""

from __future__ import annotations

from typing import Any

from ._validate import ARRAY_OPS, OBJECT_ARRAY_OPS

#: Standard fields that cost no data points (section 11.2).
FREE_STANDARD = frozenset({"email_subscribe", "push_subscribe", "subscription_groups", "push_tokens"})


def count_keys(value: Any) -> int:
    """Every key of every object inside ``value`` (recursively)."""
    if isinstance(value, dict):
        if value.keys() == {"$time"}:
            return 0
        return sum(1 + count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_keys(v) for v in value)
    return 0


def dedupe(values: list[Any], cap: int) -> list[Any]:
    """De-duplicate keeping each value's last position; keep the newest ``cap`` values."""
    seen: dict[Any, None] = {}
    for v in values:
        seen.pop(v, None)
        seen[v] = None
    out = list(seen)
    return out[-cap:] if len(out) > cap else out


def deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Merge ``src`` into ``dst`` in place (``_merge_objects: true``)."""
    for k, v in src.items():
        cur = dst.get(k)
        if isinstance(v, dict) and isinstance(cur, dict) and v.keys() != {"$time"}:
            deep_merge(cur, v)
        else:
            dst[k] = v


def _is_object_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _array_ops(current: Any, ops: dict[str, Any], cap: int) -> tuple[list[Any], int]:
    arr = list(current) if isinstance(current, list) and not _is_object_array(current) else []
    cost = 0
    for v in ops.get("add", ()):
        if v in arr:
            arr.remove(v)
        arr.append(v)
        cost += 1
    if len(arr) > cap:
        del arr[: len(arr) - cap]
    removed = ops.get("remove", ())
    if removed:
        gone = set(removed)
        arr = [v for v in arr if v not in gone]
        cost += len(removed)
    return arr, cost


def _object_array_ops(current: Any, ops: dict[str, Any], merge: bool) -> tuple[list[Any], int]:
    arr: list[Any] = list(current) if _is_object_array(current) else []
    cost = 0
    for obj in ops.get("$add", ()):
        arr.append(obj)
        cost += max(count_keys(obj), 1)
    for spec in ops.get("$remove", ()):
        key, val = spec.get("$identifier_key"), spec.get("$identifier_value")
        arr = [o for o in arr if o.get(key) != val]
        cost += 1
    for spec in ops.get("$update", ()):
        key, val = spec.get("$identifier_key"), spec.get("$identifier_value")
        new = spec.get("$new_object")
        if not isinstance(new, dict):
            continue
        for i, obj in enumerate(arr):
            if obj.get(key) == val:
                if merge:
                    deep_merge(obj, new)
                else:
                    arr[i] = new
        cost += max(count_keys(new), 1)
    return arr, cost


def apply_custom(store: dict[str, Any], key: str, value: Any, *, merge: bool, cap: int) -> int:
    """Apply one custom attribute to ``store``; return its data-point cost.

    Scalars, ``null``, ``{"inc": n}`` and whole arrays cost 1; ``add``/``remove`` cost 1 per value;
    nested objects and arrays of objects cost 1 per key (at every depth).
    """
    if value is None:
        store.pop(key, None)
        return 1
    if isinstance(value, list):
        if _is_object_array(value):
            store[key] = value
            return max(count_keys(value), 1)
        store[key] = dedupe(value, cap)
        return 1
    if not isinstance(value, dict):
        store[key] = value
        return 1
    keys = value.keys()
    if keys == {"inc"}:
        current = store.get(key)
        base = current if isinstance(current, int | float) and not isinstance(current, bool) else 0
        store[key] = base + value["inc"]
        return 1
    if keys and keys <= ARRAY_OPS:
        store[key], cost = _array_ops(store.get(key), value, cap)
        return cost
    if keys and keys <= OBJECT_ARRAY_OPS:
        store[key], cost = _object_array_ops(store.get(key), value, merge)
        return cost
    if keys == {"$time"}:
        store[key] = value["$time"]
        return 1
    current = store.get(key)
    if merge and isinstance(current, dict):
        deep_merge(current, value)
    else:
        store[key] = value
    return max(count_keys(value), 1)
