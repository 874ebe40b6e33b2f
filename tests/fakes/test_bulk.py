"""Bulk subscriptions are served from a rendered template per block and status: every page must
be exactly the objects the fake's builders render, expanded or not, whatever a test changed."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from sandbox.stripe_fake import TEST_API_KEY, StripeFake

STATUSES = ("active", "trialing", "past_due", "canceled", "unpaid", "incomplete_expired")


def _list(fake: StripeFake, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{fake.base_url}/v1/subscriptions?{query}",
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


def _rendered(fake: StripeFake, id: str, expanded: bool) -> dict[str, Any]:
    sub = fake.subscription(id)
    if expanded:
        sub = {**sub, "customer": fake._customer_expanded(sub["customer"])}
    return sub


@pytest.mark.parametrize("expanded", [False, True], ids=["ids", "expanded"])
def test_bulk_page_is_the_rendered_objects(expanded: bool) -> None:
    with StripeFake() as fake:
        fake.add_subscriptions_bulk(40, status_cycle=STATUSES, created_start=1_700_000_000)
        fake.add_subscriptions_bulk(
            30,
            start=5_000_000,
            id_prefix="sub_other_",
            customer_prefix="cus_x_",
            status_cycle=("active", "canceled"),
            price_id="price_pro",
            amount=9900,
            currency="eur",
            interval="year",
        )
        fake.add_customer("cus_single", email="single@example.test")
        fake.add_subscription("sub_single", customer="cus_single")
        # A status a test set afterwards, and one moved back: both leave the template path.
        fake.set_subscription_status("sub_bench_0000007", "canceled")
        fake.set_subscription_status("sub_other_5000003", "active")
        query = "status=all&limit=100" + ("&expand[]=data.customer" if expanded else "")
        page = _list(fake, query)
        ids = [sub["id"] for sub in page["data"]]
        assert len(ids) == 71 and page["has_more"] is False
        assert page["url"] == "/v1/subscriptions" and page["object"] == "list"
        assert page["data"] == [_rendered(fake, id, expanded) for id in ids]
        # Numbers with fewer digits than the template's marker, and the next page by cursor.
        second = _list(fake, f"{query.replace('limit=100', 'limit=5')}&starting_after={ids[-6]}")
        assert [sub["id"] for sub in second["data"]] == ids[-5:]
        assert second["data"] == page["data"][-5:]
