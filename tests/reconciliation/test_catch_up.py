"""The catch-up: events the endpoint never received are listed from Stripe and ingested."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AccessStatus
from reconciliation.models import WebhookEvent, WebhookStatus
from reconciliation.services.webhooks import (
    HANDLED_TYPES,
    WEBHOOK_CATCH_UP_OVERLAP_SECONDS,
    webhook_events_catch_up,
)
from reconciliation.tasks import webhook_events_catch_up_task
from tests.factories import AccountFactory
from tests.reconciliation.webhook_support import SECRET, body_for, post_signed, sub_obj


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]


@pytest.mark.smoke
@pytest.mark.django_db
def test_catch_up_ingests_an_event_the_endpoint_never_received(
    client, stripe_fake, django_capture_on_commit_callbacks
):
    account = AccountFactory(stripe_customer_id="cus_missed")
    now = int(time.time())
    delivered = stripe_fake.add_event(
        "customer.subscription.created", sub_obj("sub_missed", "cus_missed"), created=now - 120
    )
    # Stripe sent this one, our endpoint answered it: stored once already.
    with django_capture_on_commit_callbacks(execute=True):
        body = body_for(
            "customer.subscription.created",
            delivered["data"]["object"],
            id=delivered["id"],
            created=delivered["created"],
        )
        assert post_signed(client, body).status_code == 200
    # This one never arrived (endpoint down, Stripe gave up): older, but inside the overlap.
    missed = stripe_fake.add_event(
        "customer.subscription.updated",
        sub_obj("sub_missed", "cus_missed", "past_due"),
        created=now - 60,
    )
    too_old = stripe_fake.add_event(
        "customer.subscription.updated",
        sub_obj("sub_other", "cus_other"),
        created=now - 120 - WEBHOOK_CATCH_UP_OVERLAP_SECONDS - 10,
    )

    with django_capture_on_commit_callbacks(execute=True) as enqueued:
        result = webhook_events_catch_up()
    assert (result.listed, result.stored) == (2, 1)
    assert [c.__qualname__.split(".")[0] for c in enqueued].count("webhook_event_store") == 1
    ingested = WebhookEvent.objects.get(provider_event_id=missed["id"])
    assert (ingested.source, ingested.status) == ("catch_up", WebhookStatus.PROCESSED)
    assert not WebhookEvent.objects.filter(provider_event_id=too_old["id"]).exists()
    account.refresh_from_db()
    assert account.access_status == AccessStatus.GRACE_PERIOD  # the missed past_due applied

    listing = stripe_fake.requests_to("/v1/events", "GET")[0]
    since = now - 120 - WEBHOOK_CATCH_UP_OVERLAP_SECONDS
    assert listing.query["created[gte]"] == str(since)
    assert {v for k, v in listing.query.items() if k.startswith("types")} == HANDLED_TYPES


@pytest.mark.django_db
def test_catch_up_twice_stores_nothing_new(stripe_fake, django_capture_on_commit_callbacks):
    stripe_fake.add_event(
        "invoice.paid", {"id": "in_1", "object": "invoice"}, created=int(time.time())
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_events_catch_up().stored == 1
    with django_capture_on_commit_callbacks(execute=True) as second:
        again = webhook_events_catch_up()
    assert (again.listed, again.stored, second) == (1, 0, [])
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db
def test_catch_up_pages_through_many_events(stripe_fake, django_capture_on_commit_callbacks):
    now = int(time.time())
    for n in range(150):
        stripe_fake.add_event("balance.available", {"object": "balance"}, created=now - n)
        stripe_fake.add_event(
            "customer.deleted", {"id": f"cus_gone{n}", "object": "customer"}, created=now - n
        )
    with django_capture_on_commit_callbacks(execute=True):
        result = webhook_events_catch_up(since=timezone.now() - timedelta(hours=1))
    assert (result.listed, result.stored) == (150, 150)  # unhandled types are not asked for
    assert len(stripe_fake.requests_to("/v1/events")) == 2
    assert WebhookEvent.objects.filter(status=WebhookStatus.IGNORED).count() == 150


@pytest.mark.django_db
def test_catch_up_never_asks_past_stripes_30_days(stripe_fake):
    webhook_events_catch_up(since=timezone.now() - timedelta(days=90))
    asked = int(stripe_fake.requests_to("/v1/events")[0].query["created[gte]"])
    assert time.time() - asked < 30 * 86_400


@pytest.mark.django_db
def test_catch_up_task_reports(stripe_fake):
    assert webhook_events_catch_up_task()["stored"] == 0


@pytest.mark.django_db
def test_catch_up_without_a_stripe_key_skips_quietly(settings):
    from reconciliation.services.webhooks import webhook_events_catch_up

    settings.STRIPE_API_KEY = ""
    result = webhook_events_catch_up()
    assert (result.listed, result.stored) == (0, 0)
