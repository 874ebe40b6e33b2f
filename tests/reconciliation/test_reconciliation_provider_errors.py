"""The nightly audit against Stripe refusing the key (401/403) or one object (404)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import AccessAudit, AccessStatus, Account
from reconciliation.models import Flag, RunOutcome, RunStatus
from reconciliation.services.runs import reconciliation_run
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db


def _accounts(stripe_fake):
    paying = AccountFactory(stripe_customer_id="cus_paying")
    stripe_fake.add_customer("cus_paying")
    stripe_fake.add_subscription("sub_paying", customer="cus_paying")
    lapsed = AccountFactory(stripe_customer_id="cus_lapsed")  # would start a grace period
    return paying, lapsed


@pytest.mark.parametrize(
    ("status", "words"),
    [(401, "STRIPE_API_KEY is rejected"), (403, "rak_subscriptions_read")],
)
def test_a_refused_key_fails_the_run_at_once_changes_nothing_and_shows_on_the_overview(
    stripe_fake, admin_client_, status, words
):
    _accounts(stripe_fake)
    stripe_fake.fail("/v1/subscriptions", status=status, times=5)

    run = reconciliation_run(dry_run=False, triggered_by="system:test")

    assert run.status == RunStatus.FAILED
    assert "STRIPE_API_KEY" in run.errors and words in run.errors
    assert len(stripe_fake.requests) == 1  # not retried
    assert set(Account.objects.values_list("access_status", flat=True)) == {AccessStatus.ACTIVE}
    assert not AccessAudit.objects.exists() and not Flag.objects.exists()
    assert not RunOutcome.objects.exists()
    page = admin_client_.get(reverse("overview")).content.decode()
    assert "STRIPE_API_KEY" in page and words in page


def test_a_restricted_key_refused_on_customer_lookups_also_fails_the_run(stripe_fake):
    AccountFactory(stripe_customer_id="", email="new@example.com")
    stripe_fake.add_subscription("sub_unknown", customer="cus_unknown")
    stripe_fake.fail("/v1/customers", status=403, times=5)

    run = reconciliation_run(dry_run=False, triggered_by="system:test")

    assert run.status == RunStatus.FAILED and "STRIPE_API_KEY" in run.errors
    assert not Account.objects.exclude(stripe_customer_id="").exists()


def test_a_404_for_one_customer_is_recorded_against_it_and_the_run_goes_on(stripe_fake):
    paying, _ = _accounts(stripe_fake)
    stripe_fake.add_subscription("sub_orphan", customer="cus_deleted_meanwhile")
    AccountFactory(stripe_customer_id="", email="waiting@example.com")

    run = reconciliation_run(dry_run=False, triggered_by="system:test")

    assert run.status in (RunStatus.APPLIED, RunStatus.HALTED)
    assert "cus_deleted_meanwhile" in run.errors
    assert "No such customer" in run.errors
    paying.refresh_from_db()
    assert paying.access_status == AccessStatus.ACTIVE
