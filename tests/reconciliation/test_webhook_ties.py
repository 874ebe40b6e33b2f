"""Ordering limits of Stripe's whole-second event times, and re-fetched views."""

import time

import pytest

from accounts.models import AccessStatus
from reconciliation.models import Subscription, WebhookStatus
from reconciliation.services.webhooks import webhook_event_process, webhook_event_store
from sandbox.stripe_fake import event_object, invoice_object
from tests.factories import AccountFactory
from tests.reconciliation.webhook_support import sub_obj

pytestmark = pytest.mark.django_db


def _process(event: dict) -> str:
    row = webhook_event_store(event=event)
    return webhook_event_process(event_id=row.pk)


def test_same_second_events_in_reverse_order_end_in_the_providers_view(stripe_fake):
    """created(incomplete) and updated(active) in one second, delivered newest first."""
    account = AccountFactory(stripe_customer_id="cus_tie")
    stripe_fake.add_subscription("sub_tie", customer="cus_tie", status="active")
    second = int(time.time())
    updated = event_object(
        "customer.subscription.updated", sub_obj("sub_tie", "cus_tie"), created=second
    )
    created = event_object(
        "customer.subscription.created", sub_obj("sub_tie", "cus_tie", "incomplete"), created=second
    )
    assert _process(updated) == WebhookStatus.PROCESSED
    assert _process(created) == WebhookStatus.PROCESSED
    assert Subscription.objects.get(provider_id="sub_tie").status == "active"
    account.refresh_from_db()
    assert account.access_status == AccessStatus.ACTIVE
    # The tie was settled by asking the provider, once.
    assert len(stripe_fake.requests_to("/v1/subscriptions/sub_tie", "GET")) == 1


def test_refetched_invoice_view_does_not_hide_a_later_event(stripe_fake):
    """An invoice event re-fetches the subscription; that view is as of the fetch, so an event
    stamped between the invoice and the fetch must not overwrite it."""
    account = AccountFactory(stripe_customer_id="cus_inv2")
    stripe_fake.add_subscription("sub_inv2", customer="cus_inv2", status="active")
    t0 = int(time.time()) - 60
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_inv2",
        "subscription": "sub_inv2",
    }
    assert _process(event_object("invoice.payment_failed", invoice, created=t0)) == "processed"
    late = event_object(
        "customer.subscription.updated",
        sub_obj("sub_inv2", "cus_inv2", "past_due"),
        created=t0 + 10,
    )
    _process(late)
    assert Subscription.objects.get(provider_id="sub_inv2").status == "active"
    account.refresh_from_db()
    assert account.access_status == AccessStatus.ACTIVE


def test_a_change_in_the_same_second_as_a_reconciliation_fetch_is_not_dropped(stripe_fake):
    """The audit stamps mirror rows with its fetch time (sub-second); Stripe's event for a
    cancellation later in that second carries the whole second, which looks older. Found by
    the invariant test: it must be settled by asking the provider, not dropped as stale."""
    from datetime import UTC, datetime

    account = AccountFactory(stripe_customer_id="cus_same")
    stripe_fake.add_subscription("sub_same", customer="cus_same", status="canceled")
    second = int(time.time()) - 2  # the audit read the subscription two seconds ago
    Subscription.objects.create(
        provider_id="sub_same",
        account=account,
        customer_id="cus_same",
        status="active",
        provider_updated_at=datetime.fromtimestamp(second + 0.6, tz=UTC),  # the audit's fetch
    )
    deleted = event_object(
        "customer.subscription.deleted", sub_obj("sub_same", "cus_same", "canceled"), created=second
    )
    assert _process(deleted) == WebhookStatus.PROCESSED
    assert Subscription.objects.get(provider_id="sub_same").status == "canceled"
    account.refresh_from_db()
    assert account.access_status == AccessStatus.GRACE_PERIOD


def test_a_tie_written_by_another_worker_after_the_prefetch_is_settled_by_the_provider(
    stripe_fake, monkeypatch
):
    """created(incomplete) and updated(active) of one second on two workers: A's prefetch saw
    no tie, B applied `updated` meanwhile, and A then wrote `incomplete` over it (a grace
    period and a payment email for a paying customer; found in review). The tie is decided
    again under the mirror's lock: A writes nothing and retries, and the retry asks Stripe."""
    from reconciliation.services.webhooks import processing

    account = AccountFactory(stripe_customer_id="cus_race")
    stripe_fake.add_subscription("sub_race", customer="cus_race", status="active")
    second = int(time.time())
    created = webhook_event_store(
        event=event_object(
            "customer.subscription.created",
            sub_obj("sub_race", "cus_race", "incomplete"),
            created=second,
        )
    )
    updated = webhook_event_store(
        event=event_object(
            "customer.subscription.updated",
            sub_obj("sub_race", "cus_race", "active"),
            created=second,
        )
    )
    real_prefetch = processing._prefetch

    def other_worker_applies_updated_meanwhile(event):
        found = real_prefetch(event)
        if event.pk == created.pk and not hasattr(other_worker_applies_updated_meanwhile, "done"):
            other_worker_applies_updated_meanwhile.done = True  # type: ignore[attr-defined]
            assert webhook_event_process(event_id=updated.pk) == WebhookStatus.PROCESSED
        return found

    monkeypatch.setattr(processing, "_prefetch", other_worker_applies_updated_meanwhile)
    assert webhook_event_process(event_id=created.pk) == WebhookStatus.FAILED
    assert Subscription.objects.get(provider_id="sub_race").status == "active"
    account.refresh_from_db()
    assert account.access_status == AccessStatus.ACTIVE
    # The retry's prefetch sees the tie and asks the provider.
    assert webhook_event_process(event_id=created.pk) == WebhookStatus.PROCESSED
    assert Subscription.objects.get(provider_id="sub_race").status == "active"
    assert len(stripe_fake.requests_to("/v1/subscriptions/sub_race", "GET")) == 1


def test_a_fetched_view_does_not_overwrite_an_event_of_its_second_written_since_the_fetch(
    stripe_fake, monkeypatch
):
    """An invoice event fetches the subscription (active, read at T.3); an event of second T
    (canceled at T.7) is applied by another worker while the fetch is in flight. The fetched
    view, stamped T.3, looked newer than T.0 and put the cancellation back to active."""
    from datetime import UTC, datetime, timedelta

    from reconciliation.services.webhooks import processing

    account = AccountFactory(stripe_customer_id="cus_inv3")
    stripe_fake.add_subscription("sub_inv3", customer="cus_inv3", status="active")
    Subscription.objects.create(
        provider_id="sub_inv3",
        account=account,
        customer_id="cus_inv3",
        status="active",
        provider_updated_at=datetime.now(UTC) - timedelta(minutes=5),
    )
    now = int(time.time())
    invoice = invoice_object(  # Stripe's fixture: the subscription under parent, not top-level
        id="in_3",
        customer="cus_inv3",
        subscription="sub_inv3",
        amount=1000,
        currency="usd",
        created=now - 1,
        period_start=now - 86_400,
        period_end=now + 86_400 * 29,
    )
    paid = webhook_event_store(event=event_object("invoice.paid", invoice, created=now - 1))
    real_fetch = processing._fetch_subscription

    def fetch_then_other_worker_cancels(subscription_id):
        view, fetched_at = real_fetch(subscription_id)
        # The cancellation happens later in the second the fetch was asked in: its event
        # carries that whole second, and another worker applies it before this one writes.
        canceled = webhook_event_store(
            event=event_object(
                "customer.subscription.deleted",
                sub_obj("sub_inv3", "cus_inv3", "canceled"),
                created=int(fetched_at.timestamp()),
            )
        )
        assert webhook_event_process(event_id=canceled.pk) == WebhookStatus.PROCESSED
        return view, fetched_at

    monkeypatch.setattr(processing, "_fetch_subscription", fetch_then_other_worker_cancels)
    assert webhook_event_process(event_id=paid.pk) == WebhookStatus.FAILED
    assert Subscription.objects.get(provider_id="sub_inv3").status == "canceled"
