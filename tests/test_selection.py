from __future__ import annotations

from pathlib import Path

import pytest

from dbt_dinmo.manifest import load_manifest
from dbt_dinmo.selection import select_activations


@pytest.fixture(scope="module")
def manifest(built_sample: Path):  # type: ignore[no-untyped-def]
    return load_manifest(built_sample / "target/manifest.json")


def names(manifest, select=(), exclude=()):  # type: ignore[no-untyped-def]
    chosen, problems = select_activations(manifest, select, exclude)
    assert problems == []
    return [e.name for e in chosen]


ALL = [
    "braze_customer_attributes",
    "braze_high_value_list",
    "braze_newsletter_mirror",
    "braze_order_placed",
    "braze_order_purchases",
    "braze_vip_club_subscription",
    "braze_vip_flags",
]
SEGMENTS = ["braze_high_value_list", "braze_vip_club_subscription", "braze_vip_flags"]
ORDERS = ["braze_order_placed", "braze_order_purchases"]
CUSTOMER_FED = [a for a in ALL if a not in ORDERS]  # every activation but the order models'


@pytest.mark.parametrize(
    ("select", "exclude", "expected"),
    [
        ((), (), ALL),
        (("braze_vip_flags",), (), ["braze_vip_flags"]),
        (("exposure:braze_vip*",), (), ["braze_vip_club_subscription", "braze_vip_flags"]),
        (("braze_*",), ("braze_vip_flags",), ALL[:-1]),
        (("tag:newsletter",), (), ["braze_newsletter_mirror"]),
        (("tag:braze",), ("tag:crm",), ALL[1:]),
        (("tag:braze,tag:segments",), (), SEGMENTS),  # intersection
        (("tag:crm tag:segments",), (), ["braze_customer_attributes", *SEGMENTS]),  # union
        (("tag:orders",), (), ORDERS),
        (("path:models/exposures.yml",), (), ALL),
        (("path:models",), (), ALL),
        (("fqn:jaffle_dinmo.braze_vip_flags",), (), ["braze_vip_flags"]),
        (("high_value_customers+",), (), SEGMENTS),  # downstream of a model
        (("customers+",), (), CUSTOMER_FED),  # customers feeds every attribute and segment model
        (("orders+",), (), ALL),  # orders feeds customers and the order models
        (("order_items+",), (), ["braze_order_purchases"]),
        (("customers+,tag:segments",), (), SEGMENTS),
        (("raw_orders+",), ("newsletter_customers+",), [a for a in ALL if a != "braze_newsletter_mirror"]),
    ],
)
def test_dbt_selection(manifest, select, exclude, expected) -> None:  # type: ignore[no-untyped-def]
    assert names(manifest, select, exclude) == expected


def test_selection_problems(manifest) -> None:  # type: ignore[no-untyped-def]
    _, problems = select_activations(manifest, ["nope", "bogus:x", "customers"], [])
    keys = {p.key for p in problems}
    assert keys == {"nope", "bogus:x", "customers"}
