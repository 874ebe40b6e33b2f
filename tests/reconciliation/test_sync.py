"""manage.py sync_stripe: backfill the mirror and link customers, against the local fake."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from reconciliation.models import Subscription
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db


def _sync() -> str:
    out = StringIO()
    call_command("sync_stripe", stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def provider(stripe_fake):
    known = AccountFactory()
    by_metadata = AccountFactory(stripe_customer_id="")
    by_email = AccountFactory(stripe_customer_id="", email="Mixed.Case@Example.com")
    taken = AccountFactory(email="taken@example.com")
    stripe_fake.add_customer(known.stripe_customer_id, email=known.email)
    stripe_fake.add_subscription(customer=known.stripe_customer_id, status="active")
    stripe_fake.add_customer("cus_meta", metadata={"account_id": by_metadata.public_id})
    stripe_fake.add_subscription(customer="cus_meta", status="trialing")
    stripe_fake.add_customer("cus_mail", email="mixed.case@example.COM")
    stripe_fake.add_subscription(customer="cus_mail", status="past_due", legacy_shape=True)
    stripe_fake.add_customer("cus_stranger", email="stranger@example.com")
    stripe_fake.add_subscription(customer="cus_stranger", status="canceled")
    # Same email as an account already linked to another customer: not ours to guess.
    stripe_fake.add_customer("cus_second", email="taken@example.com")
    stripe_fake.add_subscription(customer="cus_second", status="active")
    return {"known": known, "meta": by_metadata, "mail": by_email, "taken": taken}


@pytest.mark.smoke
def test_sync_backfills_the_mirror_links_and_reports(provider, stripe_fake):
    output = _sync()

    assert Subscription.objects.count() == 5
    provider["meta"].refresh_from_db()
    provider["mail"].refresh_from_db()
    assert provider["meta"].stripe_customer_id == "cus_meta"
    assert provider["mail"].stripe_customer_id == "cus_mail"
    linked = dict(Subscription.objects.values_list("customer_id", "account_id"))
    assert linked["cus_meta"] == provider["meta"].pk
    assert linked["cus_mail"] == provider["mail"].pk
    assert linked[provider["known"].stripe_customer_id] == provider["known"].pk
    assert linked["cus_stranger"] is None and linked["cus_second"] is None
    legacy = Subscription.objects.get(customer_id="cus_mail")
    assert (legacy.status, legacy.amount, legacy.interval) == ("past_due", 1500, "month")
    assert f"cus_meta -> {provider['meta'].public_id} (by metadata.account_id)" in output
    assert f"cus_mail -> {provider['mail'].public_id} (by email)" in output
    assert "Unmatched: 1\n  cus_stranger" in output
    assert "Ambiguous: 1\n  cus_second:" in output
    assert stripe_fake.requests_to("/v1/subscriptions")[0].query == {
        "status": "all",
        "limit": "100",
        "expand[0]": "data.customer",
    }
    # The listing carried every customer: linking asked for none of them (issue 13).
    assert stripe_fake.requests_to("/v1/customers/") == []


def test_running_sync_again_changes_nothing(provider):
    _sync()
    before = list(Subscription.objects.order_by("pk").values_list("pk", "updated_at", "account"))

    output = _sync()

    assert "0 mirror rows created or changed" in output
    assert "Linked: 0" in output
    after = list(Subscription.objects.order_by("pk").values_list("pk", "updated_at", "account"))
    assert after == before


def test_sync_pages_through_everything(stripe_fake):
    stripe_fake.add_subscriptions_bulk(230)
    output = _sync()
    assert "Read 3 pages, 230 subscriptions" in output
    assert Subscription.objects.count() == 230
    assert [r.query.get("starting_after") for r in stripe_fake.requests_to("/v1/subscriptions")][
        1:
    ] == ["sub_bench_0000130", "sub_bench_0000030"]


def test_a_listing_failure_is_reported_and_keeps_what_was_read(stripe_fake):
    stripe_fake.add_subscriptions_bulk(230)
    stripe_fake.fail("/v1/subscriptions", status=500, times=3, after=1)
    with pytest.raises(CommandError, match="listing failed"):
        _sync()
    assert Subscription.objects.count() == 100
