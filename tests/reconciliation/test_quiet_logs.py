"""The SDK's per-request INFO lines are off at the default level (issue 13 item 5): a night at
1M subscriptions would otherwise write some 20,000 of them."""

import logging

import pytest

from reconciliation import gateway


@pytest.mark.django_db
def test_the_sdk_writes_no_line_per_request_at_the_default_level(stripe_fake, caplog):
    stripe_fake.add_subscription("sub_quiet", customer="cus_quiet", status="active")
    caplog.set_level(logging.INFO)  # the root logger at INFO, as JANITOR_LOG_LEVEL's default
    pages = list(gateway.subscription_pages(status="all", limit=100))
    assert [s["id"] for page in pages for s in page] == ["sub_quiet"]
    assert len(stripe_fake.requests) >= 1  # a real HTTP request was made
    assert [r.getMessage() for r in caplog.records if r.name.startswith("stripe")] == []
