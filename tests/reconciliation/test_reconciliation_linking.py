"""The audit decides from the same subscriptions webhooks do, and an empty listing halts it
(found in review)."""

import pytest

from accounts.models import AccessStatus
from reconciliation.models import Flag, RunStatus
from reconciliation.services.runs import reconciliation_run
from tests.factories import AccountFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_brake(settings):
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0


def test_a_subscription_linked_by_metadata_counts_for_its_account(stripe_fake):
    account = AccountFactory(stripe_customer_id="cus_old")
    stripe_fake.add_subscription("sub_old", customer="cus_old", status="canceled")
    stripe_fake.add_subscription(
        "sub_new", customer="cus_new", status="active", metadata={"account_id": account.public_id}
    )
    # The new subscription was linked to the account by a webhook (metadata.account_id).
    SubscriptionFactory(provider_id="sub_new", account=account, customer_id="cus_new")
    run = reconciliation_run(dry_run=False, triggered_by="test")
    account.refresh_from_db()
    assert run.status == RunStatus.APPLIED
    assert account.access_status == AccessStatus.ACTIVE
    assert not Flag.objects.filter(account=account).exists()


def test_an_empty_listing_halts_instead_of_flagging_everyone(stripe_fake):
    accounts = AccountFactory.create_batch(3)
    for account in accounts:
        SubscriptionFactory(account=account)  # the mirror knows their subscriptions
    run = reconciliation_run(dry_run=False, triggered_by="test")  # the provider lists nothing
    assert run.status == RunStatus.HALTED
    assert "listed no subscriptions" in run.halt_reason
    assert not Flag.objects.exists()
    assert {a.access_status for a in accounts} == {AccessStatus.ACTIVE}


def test_linked_subscriptions_count_in_every_batch_not_only_the_first(stripe_fake, monkeypatch):
    """The audit reads accounts 2,000 at a time and looks up linked subscriptions by id range:
    with batches of 2, every account below sits in its own range, gaps in the ids among them."""
    monkeypatch.setattr("reconciliation.services.runs.decide.ACCOUNT_BATCH", 2)
    linked, unlinked = [], []
    for n in range(5):
        AccountFactory(members=0).delete()  # a gap in the ids between customers
        account = AccountFactory(stripe_customer_id=f"cus_old{n}")
        stripe_fake.add_subscription(f"sub_old{n}", customer=f"cus_old{n}", status="canceled")
        if n % 2 == 0:
            stripe_fake.add_subscription(f"sub_new{n}", customer=f"cus_new{n}", status="active")
            SubscriptionFactory(
                provider_id=f"sub_new{n}", account=account, customer_id=f"cus_new{n}"
            )
            linked.append(account)
        else:
            unlinked.append(account)

    run = reconciliation_run(dry_run=False, triggered_by="test")

    assert run.status == RunStatus.APPLIED
    for account in linked:
        account.refresh_from_db()
        assert account.access_status == AccessStatus.ACTIVE, account.email
    for account in unlinked:
        account.refresh_from_db()
        assert account.access_status == AccessStatus.GRACE_PERIOD, account.email


def test_linked_elsewhere_keeps_to_the_batch_and_to_other_customer_ids():
    """The range scan also meets accounts outside the batch (staff, ids past a concurrent
    insert): only the batch's accounts come back, and only subscriptions under another id."""
    from reconciliation.services.runs.decide import _statuses_linked_elsewhere

    before = AccountFactory(stripe_customer_id="cus_before")
    own = AccountFactory(stripe_customer_id="cus_own")
    staff = AccountFactory(stripe_customer_id="")  # outside the batch given below
    linked = AccountFactory(stripe_customer_id="")
    SubscriptionFactory(account=before, customer_id="cus_elsewhere0", status="active")
    SubscriptionFactory(account=own, customer_id="cus_own", status="canceled")
    SubscriptionFactory(account=own, customer_id="cus_other", status="past_due")
    SubscriptionFactory(account=staff, customer_id="cus_staff", status="active")
    SubscriptionFactory(account=linked, customer_id="cus_linked", status="trialing")

    found = _statuses_linked_elsewhere(
        after_id=before.pk,
        own_customer={own.pk: "cus_own", linked.pk: ""},
    )

    assert found == {own.pk: frozenset({"past_due"}), linked.pk: frozenset({"trialing"})}
