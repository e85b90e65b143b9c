"""The pure, thread-safe workspace model: users, events, purchases, deletions and counters.

Every public method takes the workspace lock. Inspection methods return deep copies, so
callers on other threads never see objects the server is still mutating.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import orjson

from . import _operations as ops
from ._counters import ARRAYS, Counters
from ._users import Directory, User, iso
from ._validate import (
    META_KEYS,
    STANDARD_CHECKS,
    Ident,
    Invalid,
    check_attributes,
    check_event,
    check_purchase,
)
from ._values import FREE_STANDARD, apply_custom

STATE_VERSION = 1
_SPECIAL_STANDARD = frozenset({"email", "phone", "country", "subscription_groups"})
_SCALARS = frozenset({str, int, float, bool})
_T = TypeVar("_T")


def _copy(value: _T) -> _T:
    """A deep copy (via JSON) that no other thread can mutate."""
    copied: _T = orjson.loads(orjson.dumps(value))
    return copied


class TrackResult(NamedTuple):
    """Outcome of one /users/track body."""

    processed: dict[str, int]  # per array that was sent: objects that passed validation
    errors: list[dict[str, Any]]  # minor errors {"type", "input_array", "index"}
    skipped: int  # valid objects that matched no user and could not create one
    data_points: int


class Workspace:
    """One emulated Braze workspace. See the module docstring for the threading rules."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.version = 0  # bumped on every state change (drives persistence)
        self._clear()

    def _clear(self) -> None:
        self._dir = Directory()
        self._events: list[dict[str, Any]] = []
        self._purchases: list[dict[str, Any]] = []
        self._deletions: list[dict[str, Any]] = []
        self._counts = Counters()

    # ------------------------------------------------------------------ /users/track

    def track(
        self, arrays: Mapping[str, Sequence[Any]], *, cap: int = 500, alias_events_create: bool = False
    ) -> TrackResult:
        """Validate and apply attributes, then events, then purchases (Braze's order)."""
        processed: dict[str, int] = {}
        errors: list[dict[str, Any]] = []
        skipped = points = 0
        with self._lock:
            for name in ARRAYS:
                objects = arrays.get(name)
                if objects is None:
                    continue
                counts, ok = self._counts.objects[name], 0
                for index, obj in enumerate(objects):
                    when: datetime | None = None
                    try:
                        if name == "attributes":
                            ident = check_attributes(obj)
                        else:
                            ident, when = (check_event if name == "events" else check_purchase)(obj)
                    except Invalid as exc:
                        errors.append({"type": str(exc), "input_array": name, "index": index})
                        continue
                    ok += 1
                    user = self._resolve(ident, obj, name, alias_events_create)
                    if user is None:
                        skipped += 1
                        counts["skipped"] += 1
                        continue
                    if when is None:
                        cost = self._apply_attributes(user, obj, ident[0], cap)
                    else:
                        cost = self._record(user, obj, name, when)
                    self._counts.points[name] += cost
                    points += cost
                processed[name] = ok
                counts["received"] += len(objects)
                counts["processed"] += ok
                counts["errors"] += len(objects) - ok
            self.version += 1
        return TrackResult(processed, errors, skipped, points)

    def _resolve(self, ident: Ident, obj: dict[str, Any], array: str, alias_create: bool) -> User | None:
        kind, value = ident
        user = self._dir.by_external.get(value) if kind == "external_id" else self._dir.find(kind, value)
        if user is not None:
            return user
        flag = obj.get("_update_existing_only")
        if flag is True or kind == "braze_id":
            return None
        if kind == "user_alias" and not (flag is False and (array == "attributes" or alias_create)):
            return None
        self._counts.misc["users_created"] += 1
        return self._dir.create(**{"alias" if kind == "user_alias" else kind: value})

    def _apply_attributes(self, user: User, obj: dict[str, Any], ident_kind: str, cap: int) -> int:
        merge = obj.get("_merge_objects") is True
        custom, standard = user.custom, user.standard
        cost = 0
        for key, value in obj.items():
            if key in STANDARD_CHECKS:
                if key == ident_kind:
                    continue
                if key in _SPECIAL_STANDARD:
                    if key == "subscription_groups":
                        self._track_subscriptions(user, value)
                    else:
                        self._dir.set_standard(user, key, value)
                elif value is None:
                    standard.pop(key, None)
                else:
                    standard[key] = value
                cost += key not in FREE_STANDARD
            elif key in META_KEYS:
                continue
            elif type(value) in _SCALARS:  # fast path: plain values cost 1
                custom[key] = value
                cost += 1
            else:
                cost += apply_custom(custom, key, value, merge=merge, cap=cap)
        self._dir.touch(user)
        return cost

    def _track_subscriptions(self, user: User, groups: list[dict[str, str]]) -> None:
        """Set groups on the user and on every other user sharing its email (section 3.6)."""
        email = user.standard.get("email")
        shared = self._dir.by_email.get(email, []) if email is not None else []
        users = [user, *(u for u in shared if u is not user)]
        for group in groups:
            for u in users:
                u.subscriptions[group["subscription_group_id"]] = group["subscription_state"]
            self._counts.misc["subscription_changes"] += len(users)

    def _record(self, user: User, obj: dict[str, Any], array: str, when: datetime) -> int:
        """Append an event or purchase; never de-duplicated. Future times become now."""
        stamp = obj["time"] if when.timestamp() <= time.time() else iso(time.time())
        rec: dict[str, Any] = {"braze_id": user.braze_id, "external_id": user.external_id}
        if array == "events":
            rec["name"] = obj["name"]
        else:  # one record per purchase object; quantity kept as sent
            rec.update(
                product_id=obj["product_id"],
                currency=obj["currency"].upper(),
                price=obj["price"],
                quantity=obj.get("quantity", 1),
            )
        rec["time"] = stamp
        if "app_id" in obj:
            rec["app_id"] = obj["app_id"]
        props = obj.get("properties")
        if props:
            rec["properties"] = props
        (user.events if array == "events" else user.purchases).append(rec)
        (self._events if array == "events" else self._purchases).append(rec)
        self._dir.touch(user)
        return 1 + len(props or ())

    # ------------------------------------------------------------------ other endpoints

    def delete(
        self,
        *,
        external_ids: Iterable[str] = (),
        aliases: Iterable[tuple[str, str]] = (),
        braze_ids: Iterable[str] = (),
        emails: Iterable[tuple[str, Sequence[str]]] = (),
        phones: Iterable[tuple[str, Sequence[str]]] = (),
    ) -> int:
        """Delete matching users; return how many existed (unknown identifiers are ignored).

        ``aliases`` are (label, name); ``emails``/``phones`` are (value, prioritization).
        """
        with self._lock:
            found = ops.find_for_delete(self._dir, external_ids, aliases, braze_ids, emails, phones)
            now = iso(time.time())
            for user, kind in found.values():
                self._dir.remove(user)
                self._deletions.append(
                    {
                        "braze_id": user.braze_id,
                        "external_id": user.external_id,
                        "user_aliases": user.alias_list(),
                        "email": user.standard.get("email"),
                        "phone": user.standard.get("phone"),
                        "deleted_by": kind,
                        "deleted_at": now,
                    }
                )
            self._counts.misc["users_deleted"] += len(found)
            self.version += 1
            return len(found)

    def export(
        self,
        *,
        external_ids: Sequence[str] = (),
        aliases: Sequence[tuple[str, str]] = (),
        braze_id: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """(users, invalid_user_ids) for /users/export/ids; ``fields=None`` exports all."""
        with self._lock:
            users, invalid = ops.find_for_export(self._dir, external_ids, aliases, braze_id, email, phone)
            return _copy([u.export_view(fields) for u in users]), invalid

    def set_subscriptions(
        self, groups: Iterable[ops.SubscriptionGroup], *, strict: bool = False
    ) -> list[str]:
        """Apply (group_id, state, external_ids, emails, phones) updates; never create users.

        Returns the identifiers that matched no user; with ``strict`` nothing is applied then.
        """
        with self._lock:
            plan, unknown = ops.plan_subscriptions(self._dir, groups)
            if strict and unknown:
                return unknown
            for group_id, state, targets in plan:
                for user in targets:
                    user.subscriptions[group_id] = state
                self._counts.misc["subscription_changes"] += len(targets)
            self.version += 1
            return unknown

    def new_aliases(self, entries: Iterable[tuple[str | None, str, str]]) -> int:
        """/users/alias/new: (external_id or None, label, name). Returns aliases applied."""
        with self._lock:
            done, created = ops.add_aliases(self._dir, entries)
            self._counts.misc["users_created"] += created
            self.version += 1
            return done

    def rename_aliases(self, entries: Iterable[tuple[str, str, str]]) -> int:
        """/users/alias/update: (label, old_name, new_name). Returns aliases renamed."""
        with self._lock:
            done = sum(self._dir.rename_alias(*e) for e in entries)
            self.version += 1
            return done

    def identify(self, entries: Iterable[tuple[str, tuple[str, str]]]) -> int:
        """/users/identify: (external_id, (label, name)). Returns aliases identified."""
        with self._lock:
            done = ops.identify(self._dir, entries)
            self.version += 1
            return done

    # ------------------------------------------------------------------ control plane

    def create_users(self, specs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Create users directly, without billing; returns their braze_ids.

        A spec whose external_id or alias already exists updates that user; email- or phone-only
        specs always create a new profile (handy for duplicate-email scenarios).

        Each spec: ``external_id``, ``user_alias`` ({alias_name, alias_label}), ``email`` or
        ``phone`` (at least one), and optional ``attributes`` (standard and custom together).
        Raises ``ValueError`` on an invalid spec; nothing is applied then.
        """
        prepared: list[tuple[Ident, dict[str, Any]]] = []
        for spec in specs:
            ids = {k: spec[k] for k in ("external_id", "user_alias", "email", "phone") if k in spec}
            obj = {**dict(spec.get("attributes") or {}), **ids}
            try:
                prepared.append((check_attributes(obj), obj))
            except Invalid as exc:
                raise ValueError(str(exc)) from None
        with self._lock:
            out = []
            for ident, obj in prepared:
                user = self._dir.find(*ident) if ident[0] in ("external_id", "user_alias") else None
                if user is None:
                    user = self._dir.create(**{"alias" if ident[0] == "user_alias" else ident[0]: ident[1]})
                    self._counts.misc["users_created"] += 1
                self._apply_attributes(user, obj, ident[0], 10**9)
                out.append(user.braze_id)
            self.version += 1
            return out

    def record_request(self, path: str, status: int | str) -> None:
        """Count one API request by endpoint and outcome (status code or fault name)."""
        with self._lock:
            self._counts.requests[path][str(status)] += 1

    def reset(self) -> None:
        """Forget every user, event, deletion and counter."""
        with self._lock:
            self._clear()
            self.version += 1

    # ------------------------------------------------------------------ inspection

    def __len__(self) -> int:
        with self._lock:
            return len(self._dir.by_id)

    @property
    def data_points(self) -> int:
        """Total data points billed so far."""
        with self._lock:
            return self._counts.data_points

    def users(self) -> list[dict[str, Any]]:
        """Copies of every live user (see ``User.view`` for the shape)."""
        with self._lock:
            return _copy([u.view() for u in self._dir.by_id.values()])

    def find_user(
        self,
        *,
        external_id: str | None = None,
        user_alias: Mapping[str, str] | tuple[str, str] | None = None,
        braze_id: str | None = None,
        email: str | None = None,
        phone: str | None = None,
    ) -> dict[str, Any] | None:
        """A copy of the user matching one identifier (``user_alias`` as dict or (label, name))."""
        if isinstance(user_alias, Mapping):
            user_alias = (user_alias["alias_label"], user_alias["alias_name"])
        wanted = {"external_id": external_id, "user_alias": user_alias, "braze_id": braze_id}
        wanted.update(email=email, phone=phone)
        for kind, value in wanted.items():
            if value is not None:
                with self._lock:
                    user = self._dir.find(kind, value)
                    return None if user is None else _copy(user.view())
        raise TypeError("find_user() needs one identifier")

    def events(self, external_id: str | None = None) -> list[dict[str, Any]]:
        """Every event received (including those of since-deleted users), oldest first."""
        with self._lock:
            items = [e for e in self._events if external_id in (None, e["external_id"])]
            return _copy(items)

    def purchases(self, external_id: str | None = None) -> list[dict[str, Any]]:
        """Every purchase received, oldest first."""
        with self._lock:
            items = [p for p in self._purchases if external_id in (None, p["external_id"])]
            return _copy(items)

    def deletions(self) -> list[dict[str, Any]]:
        """One record per deleted user, in deletion order."""
        with self._lock:
            return _copy(self._deletions)

    def _view_counters(self) -> dict[str, Any]:
        sizes = {"users": len(self._dir.by_id), "events": len(self._events)}
        sizes.update(purchases=len(self._purchases), deletions=len(self._deletions))
        return {**self._counts.view(), **sizes}

    def counters(self) -> dict[str, Any]:
        """Requests per endpoint and status, objects per array, data points and totals."""
        with self._lock:
            return _copy(self._view_counters())

    def snapshot_json(self, *, include_users: bool = True, external_id: str | None = None) -> bytes:
        """The GET /_emulator/workspace body, serialized under the lock."""
        with self._lock:
            users: Iterable[User] = self._dir.by_id.values()
            if external_id is not None:
                found = self._dir.by_external.get(external_id)
                users = [found] if found else []
            data: dict[str, Any] = {"counters": self._view_counters(), "deletions": self._deletions}
            if include_users:
                data["users"] = {u.braze_id: u.view() for u in users}
            return orjson.dumps(data)

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> bytes:
        """Everything needed by :meth:`load_state`, as JSON bytes."""
        with self._lock:
            return orjson.dumps(
                {
                    "version": STATE_VERSION,
                    "users": [u.record() for u in self._dir.by_id.values()],
                    "events": self._events,
                    "purchases": self._purchases,
                    "deletions": self._deletions,
                    **self._counts.state(),
                }
            )

    def load_state(self, raw: bytes) -> None:
        """Replace the workspace with a saved state."""
        state = orjson.loads(raw)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported emulator state version {state.get('version')!r}")
        with self._lock:
            self._clear()
            for rec in state["users"]:
                self._dir.load(rec)
            for array, target in (("events", self._events), ("purchases", self._purchases)):
                for rec in state.get(array, []):
                    target.append(rec)
                    user = self._dir.by_id.get(rec.get("braze_id"))
                    if user is not None:
                        (user.events if array == "events" else user.purchases).append(rec)
            self._deletions.extend(state.get("deletions", []))
            self._counts.load(state)
            self.version += 1
