"""User profiles and their identifier indexes. Not thread-safe: :class:`Workspace` locks."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._countries import normalize_country

EXPORT_STANDARD = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "gender",
    "dob",
    "country",
    "home_city",
    "language",
    "time_zone",
    "email_subscribe",
    "push_subscribe",
    "push_tokens",
)


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 with a ``Z``."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(slots=True, eq=False)
class User:
    """One profile. ``aliases`` maps alias_label -> alias_name (one alias per label)."""

    braze_id: str
    external_id: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    standard: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    subscriptions: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    purchases: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    seq: int = 0

    def alias_list(self) -> list[dict[str, str]]:
        return [{"alias_name": n, "alias_label": lab} for lab, n in self.aliases.items()]

    def view(self) -> dict[str, Any]:
        """Inspection view (shares nested objects: serialize it under the workspace lock)."""
        return {
            "braze_id": self.braze_id,
            "external_id": self.external_id,
            "user_aliases": self.alias_list(),
            "standard_attributes": self.standard,
            "custom_attributes": self.custom,
            "subscription_groups": self.subscriptions,
            "events": self.events,
            "purchases": self.purchases,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }

    def export_view(self, fields: Iterable[str] | None) -> dict[str, Any]:
        """The /users/export/ids shape, restricted to ``fields`` when given."""
        out: dict[str, Any] = {"braze_id": self.braze_id}
        if self.external_id is not None:
            out["external_id"] = self.external_id
        if self.aliases:
            out["user_aliases"] = self.alias_list()
        for key in EXPORT_STANDARD:
            if key in self.standard:
                out[key] = self.standard[key]
        out["custom_attributes"] = self.custom
        created = datetime.fromtimestamp(self.created_at, timezone.utc)
        out["created_at"] = created.strftime("%Y-%m-%d %H:%M:%S.") + (
            f"{created.microsecond // 1000:03d} UTC"
        )
        if self.events:
            out["custom_events"] = _summary(self.events, "name")
        if self.purchases:
            out["purchases"] = _summary(self.purchases, "product_id")
            out["total_revenue"] = round(sum(p["price"] * p.get("quantity", 1) for p in self.purchases), 2)
        if fields is not None:
            wanted = set(fields)
            out = {k: v for k, v in out.items() if k in wanted}
        return out

    def record(self) -> dict[str, Any]:
        """Persistence record (events and purchases are saved globally)."""
        return {
            "braze_id": self.braze_id,
            "external_id": self.external_id,
            "aliases": self.aliases,
            "standard": self.standard,
            "custom": self.custom,
            "subscriptions": self.subscriptions,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "seq": self.seq,
        }


def _summary(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        entry = out.setdefault(item[key], {"name": item[key], "first": item["time"], "count": 0})
        entry["last"] = item["time"]
        entry["count"] += 1
    return list(out.values())


class Directory:
    """All live users plus indexes by external_id, alias, email and phone."""

    def __init__(self) -> None:
        self.by_id: dict[str, User] = {}
        self.by_external: dict[str, User] = {}
        self.by_alias: dict[tuple[str, str], User] = {}  # (label, name)
        self.by_email: dict[str, list[User]] = {}
        self.by_phone: dict[str, list[User]] = {}
        self.seq = 0
        self._random = os.urandom(5).hex()
        self._counter = int.from_bytes(os.urandom(3), "big")

    def create(
        self,
        *,
        external_id: str | None = None,
        alias: tuple[str, str] | None = None,
        email: str | None = None,
        phone: str | None = None,
    ) -> User:
        now = time.time()
        user = User(self._new_id(now), created_at=now, updated_at=now)
        self.by_id[user.braze_id] = user
        if external_id is not None:
            user.external_id = external_id
            self.by_external[external_id] = user
        if alias is not None:
            self.add_alias(user, *alias)
        if email is not None:
            self.set_standard(user, "email", email)
        if phone is not None:
            self.set_standard(user, "phone", phone)
        self.seq += 1
        user.seq = self.seq
        return user

    def _new_id(self, now: float) -> str:
        """24 hex characters shaped like a MongoDB ObjectId: time, random, counter."""
        while True:
            self._counter = (self._counter + 1) & 0xFFFFFF
            braze_id = f"{int(now) & 0xFFFFFFFF:08x}{self._random}{self._counter:06x}"
            if braze_id not in self.by_id:
                return braze_id

    def touch(self, user: User) -> None:
        self.seq += 1
        user.seq = self.seq
        user.updated_at = time.time()

    def find(self, kind: str, value: Any) -> User | None:
        """Resolve an identifier (see ``_validate.identify``) to a live user."""
        if kind == "external_id":
            return self.by_external.get(value)
        if kind == "user_alias":
            return self.by_alias.get(value)
        if kind == "braze_id":
            return self.by_id.get(value)
        index = self.by_email if kind == "email" else self.by_phone
        return best(index.get(value, ()))

    def set_external_id(self, user: User, external_id: str) -> None:
        if user.external_id is not None:
            self.by_external.pop(user.external_id, None)
        user.external_id = external_id
        self.by_external[external_id] = user

    def add_alias(self, user: User, label: str, name: str) -> bool:
        """Give ``user`` the alias unless it has one for that label or the alias is taken."""
        if label in user.aliases or (label, name) in self.by_alias:
            return False
        user.aliases[label] = name
        self.by_alias[(label, name)] = user
        return True

    def rename_alias(self, label: str, old: str, new: str) -> bool:
        user = self.by_alias.get((label, old))
        if user is None or (label, new) in self.by_alias:
            return False
        del self.by_alias[(label, old)]
        user.aliases[label] = new
        self.by_alias[(label, new)] = user
        return True

    def set_standard(self, user: User, key: str, value: Any) -> None:
        """Set or (``None``) unset a standard field, keeping email/phone indexes current."""
        if key == "country" and value is not None:
            value = normalize_country(value)
        if key in ("email", "phone"):
            index = self.by_email if key == "email" else self.by_phone
            old = user.standard.get(key)
            if old == value:
                return
            if old is not None:
                _unindex(index, old, user)
            if value is not None:
                index.setdefault(value, []).append(user)
        if value is None:
            user.standard.pop(key, None)
        else:
            user.standard[key] = value

    def remove(self, user: User) -> None:
        del self.by_id[user.braze_id]
        if user.external_id is not None:
            self.by_external.pop(user.external_id, None)
        for label, name in user.aliases.items():
            self.by_alias.pop((label, name), None)
        for key, index in (("email", self.by_email), ("phone", self.by_phone)):
            if key in user.standard:
                _unindex(index, user.standard[key], user)

    def load(self, rec: dict[str, Any]) -> User:
        """Re-create a user from :meth:`User.record` output."""
        user = User(
            rec["braze_id"],
            subscriptions=dict(rec.get("subscriptions", {})),
            custom=dict(rec.get("custom", {})),
            created_at=float(rec.get("created_at", 0.0)),
        )
        self.by_id[user.braze_id] = user
        if rec.get("external_id") is not None:
            self.set_external_id(user, rec["external_id"])
        for label, name in rec.get("aliases", {}).items():
            self.add_alias(user, label, name)
        for key, value in rec.get("standard", {}).items():
            self.set_standard(user, key, value)
        user.updated_at = float(rec.get("updated_at", user.created_at))
        user.seq = int(rec.get("seq", 0))
        self.seq = max(self.seq, user.seq)
        return user


def best(users: Iterable[User]) -> User | None:
    """Most recently updated user with an external_id, else the most recently updated one."""
    found: User | None = None
    for user in users:
        if found is None or (user.external_id is not None, user.seq) > (
            found.external_id is not None,
            found.seq,
        ):
            found = user
    return found


def _unindex(index: dict[str, list[User]], value: str, user: User) -> None:
    users = index.get(value)
    if users is not None:
        users[:] = [u for u in users if u is not user]
        if not users:
            del index[value]


def prioritize(users: Iterable[User], order: Iterable[str]) -> User | None:
    """Apply a /users/delete ``prioritization``; ``None`` unless exactly one user remains."""
    candidates = list(users)
    for rule in order:
        if len(candidates) <= 1:
            break
        if rule == "identified":
            narrowed = [u for u in candidates if u.external_id is not None]
        elif rule == "unidentified":
            narrowed = [u for u in candidates if u.external_id is None]
        elif rule == "most_recently_updated":
            narrowed = [max(candidates, key=lambda u: u.seq)]
        else:
            narrowed = candidates
        candidates = narrowed or candidates
    return candidates[0] if len(candidates) == 1 else None
