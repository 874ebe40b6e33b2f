"""Readable values: labels from one place, overdue grace, Stripe links, linked overview numbers."""

from datetime import timedelta

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccessStatus
from janitor.labels import label, provider_error_plain, stripe_dashboard_url
from reconciliation.models import FlagNote, ReconciliationRun, RunStatus
from tests.factories import (
    AccountFactory,
    DisputeFactory,
    FlagFactory,
    WebhookEventFactory,
)

pytestmark = pytest.mark.django_db


def test_labels_come_from_one_place_and_unknown_values_still_read_as_words():
    assert label("needs_response", "dispute_status") == "Needs response"
    assert label("subscription_canceled", "dispute_reason") == "Subscription canceled"
    assert label("listing_cpu", "run_phase") == "Reading Stripe's pages (CPU)"
    assert label("grace_period", "access_status") == "Grace period"
    assert label("brand_new_status", "dispute_status") == "Brand new status"
    assert label("", "dispute_status") == ""


def test_stripe_links_follow_the_keys_mode(settings):
    settings.STRIPE_API_KEY = "sk_test_123"
    assert stripe_dashboard_url("cus_1") == "https://dashboard.stripe.com/test/customers/cus_1"
    assert stripe_dashboard_url("dp_1") == "https://dashboard.stripe.com/test/disputes/dp_1"
    settings.STRIPE_API_KEY = "rk_live_123"
    assert stripe_dashboard_url("ch_1") == "https://dashboard.stripe.com/payments/ch_1"
    assert stripe_dashboard_url("evt_1") == "https://dashboard.stripe.com/events/evt_1"
    assert stripe_dashboard_url("nothing_1") == ""


def test_a_stripe_id_links_to_the_dashboard_and_to_the_account(settings):
    settings.STRIPE_API_KEY = "sk_test_123"
    html = Template("{% load readable %}{% stripe_id value %}").render(Context({"value": "sub_42"}))
    assert 'href="https://dashboard.stripe.com/test/subscriptions/sub_42"' in html
    assert f'href="{reverse("account_list")}?q=sub_42"' in html


def test_provider_errors_read_in_plain_words_with_what_to_do():
    assert "Ask an Admin to set STRIPE_API_KEY" in provider_error_plain("STRIPE_API_KEY is not set")
    assert "could not be reached" in provider_error_plain("APIConnectionError")
    assert provider_error_plain("something else") == ""


def test_overdue_grace_shows_as_overdue_with_how_long(support_client):
    account = AccountFactory(
        access_status=AccessStatus.GRACE_PERIOD,
        grace_ends_at=timezone.now() - timedelta(hours=5, minutes=2),
    )
    FlagFactory(account=account, kind="payment_failed")
    page = support_client.get(reverse("account_detail", args=[account.public_id]))
    assert "Overdue by 5 hours" in page.content.decode()
    queue = support_client.get(reverse("review_queue")).content.decode()
    assert "Overdue by 5 hours" in queue


def test_the_account_page_shows_flag_notes_and_links_to_the_queue_row(support_client, support_user):
    flag = FlagFactory()
    FlagNote.objects.create(flag=flag, author=support_user, body="Called the customer.")
    html = support_client.get(reverse("account_detail", args=[flag.account.public_id])).content
    html = html.decode()
    assert "Called the customer." in html
    assert f'href="{reverse("flag_row", args=[flag.pk])}"' in html


def test_an_unchanged_status_in_the_history_does_not_read_as_a_change(support_client):
    from accounts.models import AccessAudit

    account = AccountFactory(
        access_status=AccessStatus.GRACE_PERIOD, grace_ends_at=timezone.now() + timedelta(days=3)
    )
    AccessAudit.objects.create(
        account=account,
        actor="support@janitor.test",
        from_status="grace_period",
        to_status="grace_period",
        reason="Extended",
    )
    html = support_client.get(reverse("account_detail", args=[account.public_id])).content.decode()
    assert "grace_period → grace_period" not in html and "grace extended" in html


def test_overview_numbers_link_to_their_filtered_lists(support_client):
    AccountFactory(access_status=AccessStatus.GRACE_PERIOD, grace_ends_at=timezone.now())
    FlagFactory(kind="payment_failed")
    WebhookEventFactory(status="dead")
    html = support_client.get(reverse("overview")).content.decode()
    assert f'href="{reverse("account_list")}?status=grace_period"' in html
    assert f'href="{reverse("review_queue")}?kind=payment_failed"' in html
    assert f'href="{reverse("webhook_list")}?status=dead"' in html


def test_finance_overview_lists_disputes_due_within_seven_days(finance_client):
    soon = DisputeFactory(provider_id="dp_soon", due_by=timezone.now() + timedelta(days=2))
    DisputeFactory(provider_id="dp_later", due_by=timezone.now() + timedelta(days=12))
    DisputeFactory(provider_id="dp_won", status="won", due_by=timezone.now() + timedelta(days=1))
    html = finance_client.get(reverse("overview")).content.decode()
    assert "Disputes due within 7 days" in html
    assert "dp_soon" in html and "dp_later" not in html and "dp_won" not in html
    assert soon.account.email in html
    listed = finance_client.get(reverse("dispute_list"), {"status": "due_soon"}).content.decode()
    assert "dp_soon" in listed and "dp_later" not in listed


def test_a_run_that_read_nothing_is_a_warning(support_client):
    run = ReconciliationRun.objects.create(
        status=RunStatus.FAILED,
        subscriptions_read=0,
        finished_at=timezone.now(),
        errors="GatewayError: STRIPE_API_KEY is not set",
    )
    for url in (
        reverse("overview"),
        reverse("reconciliation_runs"),
        reverse("reconciliation_run_detail", args=[run.pk]),
    ):
        html = support_client.get(url).content.decode()
        assert "data-read-nothing" in html, url
    detail = support_client.get(reverse("reconciliation_run_detail", args=[run.pk])).content
    assert "Ask an Admin to set STRIPE_API_KEY" in detail.decode()


def test_the_dispute_page_offers_both_exports_to_finance(finance_client):
    dispute = DisputeFactory(reason="subscription_canceled")
    html = finance_client.get(reverse("dispute_detail", args=[dispute.provider_id])).content
    html = html.decode()
    assert 'id="download-pdf"' in html and 'id="download-csv"' in html
    assert "Subscription canceled" in html and "Needs response" in html
    assert "subscription_canceled" not in html.replace('class="badge', "")


def test_webhook_and_revocation_pages_poll_until_settled(admin_client_, second_admin):
    pending = WebhookEventFactory(status="pending")
    done = WebhookEventFactory(status="processed")
    url = reverse("webhook_detail", args=[pending.pk])
    assert 'hx-trigger="every 2s"' in admin_client_.get(url).content.decode()
    fragment = admin_client_.get(url, headers={"HX-Request": "true", "HX-Target": "webhook-event"})
    assert "<html" not in fragment.content.decode()
    html = admin_client_.get(reverse("webhook_detail", args=[done.pk])).content.decode()
    assert 'hx-trigger="every 2s"' not in html
    assert "Not processed yet" not in html
