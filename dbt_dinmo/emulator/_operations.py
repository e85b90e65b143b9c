"""Identity operations behind delete, export, subscription and alias endpoints.

Pure functions over a :class:`Directory`; the caller (``Workspace``) holds the lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._users import Directory, User, prioritize

SubscriptionGroup = tuple[str, str, Sequence[str], Sequence[str], Sequence[str]]


def find_for_delete(
    d: Directory,
    external_ids: Iterable[str],
    aliases: Iterable[tuple[str, str]],
    braze_ids: Iterable[str],
    emails: Iterable[tuple[str, Sequence[str]]],
    phones: Iterable[tuple[str, Sequence[str]]],
) -> dict[str, tuple[User, str]]:
    """braze_id -> (user, identifier kind) for every existing user named by the request."""
    found: dict[str, tuple[User, str]] = {}
    plain: tuple[tuple[str, Iterable[Any]], ...] = (
        ("external_id", external_ids),
        ("user_alias", aliases),
        ("braze_id", braze_ids),
    )
    for kind, values in plain:
        for value in values:
            user = d.find(kind, value)
            if user is not None:
                found.setdefault(user.braze_id, (user, kind))
    for kind, index, pairs in (("email", d.by_email, emails), ("phone", d.by_phone, phones)):
        for value, order in pairs:
            user = prioritize(index.get(value, ()), order)
            if user is not None:
                found.setdefault(user.braze_id, (user, kind))
    return found


def find_for_export(
    d: Directory,
    external_ids: Sequence[str],
    aliases: Sequence[tuple[str, str]],
    braze_id: str | None,
    email: str | None,
    phone: str | None,
) -> tuple[list[User], list[str]]:
    """(users found, identifiers that matched nobody) for /users/export/ids."""
    users: dict[str, User] = {}
    invalid: list[str] = []
    wanted: list[tuple[str, Any, str]] = [("external_id", e, e) for e in external_ids]
    wanted += [("user_alias", a, a[1]) for a in aliases]
    if braze_id is not None:
        wanted.append(("braze_id", braze_id, braze_id))
    for kind, value, label in wanted:
        user = d.find(kind, value)
        if user is None:
            invalid.append(label)
        else:
            users.setdefault(user.braze_id, user)
    for value, index in ((email, d.by_email), (phone, d.by_phone)):
        if value is not None:
            for user in index.get(value, ()):
                users.setdefault(user.braze_id, user)
    return list(users.values()), invalid


def plan_subscriptions(
    d: Directory, groups: Iterable[SubscriptionGroup]
) -> tuple[list[tuple[str, str, list[User]]], list[str]]:
    """((group_id, state, users) per group, unknown identifiers). Never creates users."""
    unknown: list[str] = []
    plan: list[tuple[str, str, list[User]]] = []
    for group_id, state, external_ids, emails, phones in groups:
        targets: list[User] = []
        for eid in external_ids:
            user = d.by_external.get(eid)
            if user is None:
                unknown.append(eid)
            else:
                targets.append(user)
        for index, values in ((d.by_email, emails), (d.by_phone, phones)):
            for value in values:
                matches = index.get(value, [])
                targets.extend(matches)  # a shared email/phone updates every profile
                if not matches:
                    unknown.append(value)
        plan.append((group_id, state, targets))
    return plan, unknown


def add_aliases(d: Directory, entries: Iterable[tuple[str | None, str, str]]) -> tuple[int, int]:
    """/users/alias/new entries (external_id or None, label, name) -> (applied, users created)."""
    done = created = 0
    for external_id, label, name in entries:
        if external_id is None:
            if (label, name) not in d.by_alias:
                d.create(alias=(label, name))
                done += 1
                created += 1
            continue
        user = d.by_external.get(external_id)
        if user is not None and d.add_alias(user, label, name):
            d.touch(user)
            done += 1
    return done, created


def identify(d: Directory, entries: Iterable[tuple[str, tuple[str, str]]]) -> int:
    """/users/identify: give an alias-only profile an external_id, merging when one exists."""
    done = 0
    for external_id, alias in entries:
        source = d.by_alias.get(alias)
        if source is None:
            continue
        target = d.by_external.get(external_id)
        if target is None:
            d.set_external_id(source, external_id)
            d.touch(source)
        elif target is not source:
            if alias[0] in target.aliases:
                continue  # the identified user already has an alias with that label
            merge(d, source, target)
        done += 1
    return done


def merge(d: Directory, source: User, target: User) -> None:
    """Fold ``source`` into ``target``: target values win; events and purchases move over."""
    d.remove(source)
    for key, value in source.standard.items():
        if key not in target.standard:
            d.set_standard(target, key, value)
    for mine, theirs in (
        (target.custom, source.custom),
        (target.subscriptions, source.subscriptions),
    ):
        for key, value in theirs.items():
            mine.setdefault(key, value)
    for rec in (*source.events, *source.purchases):
        rec.update(braze_id=target.braze_id, external_id=target.external_id)
    target.events.extend(source.events)
    target.purchases.extend(source.purchases)
    for label, name in source.aliases.items():
        d.add_alias(target, label, name)
    d.touch(target)
