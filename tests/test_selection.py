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
    "braze_newsletter_mirror",
    "braze_order_placed",
    "braze_order_purchases",
    "braze_vip_flags",
]
ATTRIBUTES = ["braze_customer_attributes", "braze_newsletter_mirror", "braze_vip_flags"]
ORDERS = ["braze_order_placed", "braze_order_purchases"]


@pytest.mark.parametrize(
    ("select", "exclude", "expected"),
    [
        ((), (), ALL),
        (("braze_vip_flags",), (), ["braze_vip_flags"]),
        (("exposure:braze_vip*",), (), ["braze_vip_flags"]),
        (("braze_*",), ("braze_vip_flags",), ALL[:4]),
        (("tag:newsletter",), (), ["braze_newsletter_mirror"]),
        (("tag:braze",), ("tag:crm",), ALL[1:]),
        (("tag:braze,tag:segments",), (), ["braze_vip_flags"]),  # intersection
        (("tag:crm tag:segments",), (), ["braze_customer_attributes", "braze_vip_flags"]),  # union
        (("tag:orders",), (), ORDERS),
        (("path:models/exposures.yml",), (), ALL),
        (("path:models",), (), ALL),
        (("fqn:jaffle_dinmo.braze_vip_flags",), (), ["braze_vip_flags"]),
        (("high_value_customers+",), (), ["braze_vip_flags"]),  # downstream of a model
        (("customers+",), (), ATTRIBUTES),  # customers feeds every attribute model
        (("orders+",), (), ALL),  # orders feeds customers and the order models
        (("order_items+",), (), ["braze_order_purchases"]),
        (("customers+,tag:segments",), (), ["braze_vip_flags"]),
        (
            ("raw_orders+",),
            ("newsletter_customers+",),
            ["braze_customer_attributes", *ORDERS, "braze_vip_flags"],
        ),
    ],
)
def test_dbt_selection(manifest, select, exclude, expected) -> None:  # type: ignore[no-untyped-def]
    assert names(manifest, select, exclude) == expected


def test_selection_problems(manifest) -> None:  # type: ignore[no-untyped-def]
    _, problems = select_activations(manifest, ["nope", "bogus:x", "customers"], [])
    keys = {p.key for p in problems}
    assert keys == {"nope", "bogus:x", "customers"}
