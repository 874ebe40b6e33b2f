"""Disputes as Stripe sends them (charge by id, empty metadata) reach their account."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from reconciliation.models import Dispute, Flag, FlagKind, WebhookEvent, WebhookStatus
from reconciliation.selectors.evidence import evidence_for_account
from reconciliation.services.disputes import dispute_apply
from reconciliation.services.webhooks import webhook_event_process
from sandbox.fixtures import stripe_fixture
from tests.factories import AccountFactory, ActivityFactory, SubscriptionFactory
from tests.reconciliation.webhook_support import SECRET, body_for, post_signed

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]


def _post(client, capture, body: bytes):
    with capture(execute=True):
        response = post_signed(client, body)
    assert response.status_code == 200
    return WebhookEvent.objects.get(provider_event_id=json.loads(body)["id"])


def test_a_fixture_shaped_dispute_posted_to_the_webhook_reaches_its_account_and_its_evidence(
    client, finance_user, stripe_fake, django_capture_on_commit_callbacks
):
    # The account knows no Stripe customer yet: it is found by the customer's email.
    account = AccountFactory(email="payer@example.com", stripe_customer_id="")
    AccountFactory(email="someone-else@example.com", stripe_customer_id="cus_other")
    stripe_fake.add_customer("cus_payer", email="Payer@Example.com")
    ActivityFactory(account=account, occurred_at=timezone.now() - timedelta(days=3))
    dispute = stripe_fake.add_customer_dispute("dp_real", customer="cus_payer")
    # Stripe's shape, checked rather than assumed: a charge id and no customer anywhere.
    assert set(dispute) == set(stripe_fixture("dispute"))
    assert isinstance(dispute["charge"], str) and dispute["metadata"] == {}
    assert '"customer":' not in json.dumps({k: v for k, v in dispute.items() if k != "charge"})

    event = _post(
        client, django_capture_on_commit_callbacks, body_for("charge.dispute.created", dispute)
    )

    assert event.status == WebhookStatus.PROCESSED, event.last_error
    assert event.api_version == "2026-10-28.endive"
    stored = Dispute.objects.get(provider_id="dp_real")
    assert stored.account == account
    assert (stored.customer_id, stored.charge_id) == ("cus_payer", dispute["charge"])
    charge = stripe_fake.charges[dispute["charge"]]
    assert stored.charge_created == datetime.fromtimestamp(charge["created"], tz=UTC)
    assert stored.service_period_start is not None and stored.link_problem == ""
    account.refresh_from_db()
    assert account.stripe_customer_id == "cus_payer"  # linked by the usual rules
    assert Flag.objects.filter(account=account, kind=FlagKind.DISPUTED, status="open").exists()

    # Finance stages evidence, and the fake (holding Stripe's rules) accepts it.
    client.force_login(finance_user)
    response = client.post(reverse("dispute_stage", args=["dp_real"]))
    assert response.status_code == 302
    at_stripe = stripe_fake.disputes["dp_real"]
    assert at_stripe["evidence"]["customer_email_address"] == "payer@example.com"
    assert at_stripe["evidence"]["uncategorized_file"] in stripe_fake.files
    assert "payer@example.com" in at_stripe["evidence"]["access_activity_log"]
    assert at_stripe["evidence_details"]["submission_count"] == 0  # staged, not submitted
    assert Dispute.objects.get(provider_id="dp_real").staged_at is not None

    # And the dispute is on the account's evidence timeline.
    timeline = [entry.text for entry in evidence_for_account(account=account).timeline]
    assert any(
        "charge.dispute.created" in text and event.provider_event_id in text for text in timeline
    )


def test_a_charge_without_a_customer_leaves_the_dispute_unlinked_with_the_reason_shown(
    client, finance_user, stripe_fake, django_capture_on_commit_callbacks
):
    charge = stripe_fake.add_charge("ch_guest", customer=None)
    dispute = stripe_fake.add_dispute("dp_guest", charge=charge["id"])

    event = _post(
        client, django_capture_on_commit_callbacks, body_for("charge.dispute.created", dispute)
    )

    assert event.status == WebhookStatus.PROCESSED
    stored = Dispute.objects.get(provider_id="dp_guest")
    assert stored.account is None and stored.customer_id == ""
    assert "ch_guest has no customer" in stored.link_problem
    client.force_login(finance_user)
    page = client.get(reverse("dispute_detail", args=["dp_guest"])).content.decode()
    assert "ch_guest has no customer" in page


def test_stripe_unreachable_retries_the_lookup_on_the_queue(
    client, stripe_fake, django_capture_on_commit_callbacks
):
    account = AccountFactory(stripe_customer_id="cus_later")
    dispute = stripe_fake.add_customer_dispute("dp_retry", customer="cus_later")
    stripe_fake.fail("/v1/charges", status=503, times=1)

    event = _post(
        client, django_capture_on_commit_callbacks, body_for("charge.dispute.created", dispute)
    )

    assert event.status == WebhookStatus.FAILED and "looking up the charge" in event.last_error
    assert not Dispute.objects.filter(provider_id="dp_retry").exists()  # nothing half-applied
    assert webhook_event_process(event_id=event.pk, trigger="sweeper") == WebhookStatus.PROCESSED
    assert Dispute.objects.get(provider_id="dp_retry").account == account


def test_a_charge_stripe_does_not_know_is_recorded_on_the_dispute(stripe_fake):
    dispute = stripe_fake.add_dispute("dp_lost_charge", charge="ch_missing")
    obj = dict(dispute)
    from reconciliation.services.disputes import dispute_refresh

    stored = dispute_refresh(obj=obj)
    assert stored.account is None
    assert "Stripe has no charge ch_missing (404)" in stored.link_problem


def test_sync_stripe_links_disputes_stored_unlinked(stripe_fake):
    account = AccountFactory(stripe_customer_id="cus_backfill")
    SubscriptionFactory(account=account, customer_id="cus_backfill")
    dispute = stripe_fake.add_customer_dispute("dp_old", customer="cus_backfill")
    # Stored by an earlier version that never looked the charge up.
    dispute_apply(obj=dispute)
    assert Dispute.objects.get(provider_id="dp_old").account is None
    event = WebhookEvent.objects.create(
        provider_event_id="evt_old",
        type="charge.dispute.created",
        created=timezone.now(),
        payload={"id": "evt_old", "type": "charge.dispute.created", "data": {"object": dispute}},
        status=WebhookStatus.PROCESSED,
    )

    out = io.StringIO()
    call_command("sync_stripe", stdout=out)

    stored = Dispute.objects.get(provider_id="dp_old")
    assert stored.account == account and stored.charge_created is not None
    assert "1 linked" in out.getvalue()
    event.refresh_from_db()
    assert event.customer_id == "cus_backfill"  # now on the account's timeline
    assert Flag.objects.filter(account=account, kind=FlagKind.DISPUTED).exists()


def test_the_pdf_of_a_dispute_on_a_90_day_old_charge_covers_that_charges_period(
    client, finance_user, stripe_fake
):
    account = AccountFactory(email="old-charge@example.com", stripe_customer_id="cus_old")
    subscription_start = int(time.time()) - 200 * 86_400
    SubscriptionFactory(
        account=account,
        customer_id="cus_old",
        raw={"id": "sub_old", "object": "subscription", "start_date": subscription_start},
    )
    now = timezone.now()
    # Use inside the paid period (85 days ago), and lately.
    ActivityFactory(
        account=account, occurred_at=now - timedelta(days=85), ip_address="198.51.100.85"
    )
    ActivityFactory(account=account, occurred_at=now - timedelta(days=1), ip_address="198.51.100.1")
    dispute = stripe_fake.add_customer_dispute(
        "dp_ninety", customer="cus_old", charged_days_ago=90, period_days=30
    )
    from reconciliation.services.disputes import dispute_refresh

    stored = dispute_refresh(obj=dispute)
    period_start = stored.service_period_start
    assert (now - period_start).days in (89, 90)

    client.force_login(finance_user)
    response = client.post(
        reverse("evidence_pdf", args=[account.public_id]), {"dispute": "dp_ninety"}
    )
    assert response.status_code == 200
    pages = PdfReader(io.BytesIO(response.content)).pages
    text = " ".join(" ".join(page.extract_text() for page in pages).split())
    assert f"Window: {period_start:%Y-%m-%d}" in text
    assert f"service period {period_start:%Y-%m-%d} to {stored.service_period_end:%Y-%m-%d}" in text
    assert "198.51.100.85" in text  # the use during the paid period is in the pack
    assert "2 recorded events" in text
    start = datetime.fromtimestamp(subscription_start, tz=UTC)
    assert f"{start:%Y-%m-%d} (at stripe)" in text
    assert "Access status" in text and "Active" in text


def test_finance_can_choose_another_window_before_staging(client, finance_user, stripe_fake):
    account = AccountFactory(stripe_customer_id="cus_window")
    ActivityFactory(account=account, occurred_at=timezone.now() - timedelta(days=5))
    dispute = stripe_fake.add_customer_dispute("dp_window", customer="cus_window")
    from reconciliation.services.disputes import dispute_refresh

    dispute_refresh(obj=dispute)
    client.force_login(finance_user)
    since = (timezone.now() - timedelta(days=2)).date().isoformat()
    page = client.get(reverse("dispute_detail", args=["dp_window"]), {"since": since})
    assert "No activity recorded in this window" in page.content.decode()
    client.post(reverse("dispute_stage", args=["dp_window"]), {"since": since})
    staged = Dispute.objects.get(provider_id="dp_window").evidence_staged
    assert staged["since"].startswith(since)
    assert (
        "0 recorded accesses"
        in stripe_fake.disputes["dp_window"]["evidence"]["access_activity_log"]
    )


@pytest.mark.parametrize(
    "event_type", ["charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated"]
)
def test_every_charge_dispute_event_links_the_dispute(
    client, stripe_fake, django_capture_on_commit_callbacks, event_type
):
    account = AccountFactory(stripe_customer_id="cus_funds")
    dispute = stripe_fake.add_customer_dispute(customer="cus_funds")

    event = _post(client, django_capture_on_commit_callbacks, body_for(event_type, dispute))

    assert event.status == WebhookStatus.PROCESSED, event.last_error
    assert Dispute.objects.get(provider_id=dispute["id"]).account == account


def test_the_csv_of_a_dispute_covers_the_same_window_as_its_pdf(client, finance_user, stripe_fake):
    from reconciliation.services.disputes import dispute_refresh

    account = AccountFactory(stripe_customer_id="cus_csv")
    now = timezone.now()
    ActivityFactory(account=account, occurred_at=now - timedelta(days=85), path="/app/in-period")
    ActivityFactory(account=account, occurred_at=now - timedelta(days=150), path="/app/too-old")
    dispute = stripe_fake.add_customer_dispute("dp_csv", customer="cus_csv", charged_days_ago=90)
    dispute_refresh(obj=dispute)

    client.force_login(finance_user)
    response = client.post(reverse("evidence_csv", args=[account.public_id]), {"dispute": "dp_csv"})

    body = b"".join(response.streaming_content).decode()
    assert "/app/in-period" in body and "/app/too-old" not in body
