"""dispute_apply: upsert from Stripe dispute objects, order-safe, linking accounts, flags."""

import copy
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from reconciliation.models import Dispute, Flag, FlagKind, FlagStatus
from reconciliation.services.disputes import DisputeCharge, dispute_apply
from sandbox.fixtures import stripe_fixture
from tests.factories import AccountFactory, SubscriptionFactory, WebhookEventFactory


def dispute_obj(id="dp_test1", *, status="needs_response", customer=None, **extra):
    """A dispute as Stripe renders it, from Stripe's fixture: the charge by id, or expanded
    (as `expand=["charge"]` returns it) when a customer is given."""
    now = int(time.time())
    obj = stripe_fixture("dispute")
    charge = "ch_1"
    if customer:
        charge = stripe_fixture("charge")
        charge.update(id="ch_1", customer=customer)
    obj.update(
        id=id,
        amount=4200,
        currency="eur",
        charge=charge,
        reason="fraudulent",
        status=status,
        created=now,
        metadata={},
    )
    obj["evidence_details"].update(due_by=now + 7 * 86400, submission_count=0)
    obj.update(extra)
    return obj


def event_at(seconds_ago: int, obj: dict, type="charge.dispute.updated"):
    return WebhookEventFactory(
        type=type,
        created=timezone.now() - timedelta(seconds=seconds_ago),
        payload={"type": type, "data": {"object": obj}},
    )


@pytest.mark.smoke
@pytest.mark.django_db
def test_new_dispute_is_mirrored_linked_and_flagged():
    account = AccountFactory(stripe_customer_id="cus_disp1")
    obj = dispute_obj(customer="cus_disp1")
    event = event_at(60, obj, "charge.dispute.created")
    dispute = dispute_apply(obj=obj, event=event)
    dispute.refresh_from_db()
    assert (dispute.provider_id, dispute.account, dispute.customer_id) == (
        "dp_test1",
        account,
        "cus_disp1",
    )
    assert (dispute.amount, dispute.currency, dispute.reason, dispute.status) == (
        4200,
        "eur",
        "fraudulent",
        "needs_response",
    )
    assert dispute.charge_id == "ch_1"
    assert dispute.due_by.timestamp() == obj["evidence_details"]["due_by"]
    assert dispute.provider_updated_at == event.created
    flag = Flag.objects.get(account=account, kind=FlagKind.DISPUTED, status=FlagStatus.OPEN)
    assert flag.opened_by_event == event and "dp_test1" in flag.reason


@pytest.mark.django_db
def test_applying_the_same_event_twice_changes_nothing():
    account = AccountFactory(stripe_customer_id="cus_disp2")
    obj = dispute_obj(customer="cus_disp2")
    event = event_at(30, obj)
    dispute_apply(obj=obj, event=event)
    dispute_apply(obj=obj, event=event)
    assert Dispute.objects.count() == 1
    assert Flag.objects.filter(account=account).count() == 1


@pytest.mark.smoke
@pytest.mark.django_db
def test_an_older_event_does_not_roll_back():
    account = AccountFactory(stripe_customer_id="cus_disp3")
    closed = dispute_obj(customer="cus_disp3", status="lost")
    dispute_apply(obj=closed, event=event_at(10, closed, "charge.dispute.closed"))
    opened = dispute_obj(customer="cus_disp3", status="needs_response")
    # The "created" event is delivered late.
    dispute = dispute_apply(obj=opened, event=event_at(100, opened, "charge.dispute.created"))
    dispute.refresh_from_db()
    assert dispute.status == "lost"
    assert Flag.objects.filter(account=account, kind=FlagKind.CHARGEBACK_LOST).count() == 1
    # A lost dispute seen first never opened the "disputed" flag, and the late event did not.
    assert not Flag.objects.filter(account=account, kind=FlagKind.DISPUTED).exists()


@pytest.mark.django_db
def test_same_second_tie_does_not_reopen_a_closed_dispute():
    AccountFactory(stripe_customer_id="cus_tie")
    when = timezone.now().replace(microsecond=0)
    lost = dispute_obj(customer="cus_tie", status="lost")
    dispute_apply(obj=lost, event={"created": int(when.timestamp())})
    reopened = dispute_obj(customer="cus_tie", status="under_review")
    dispute = dispute_apply(obj=reopened, event={"created": int(when.timestamp())})
    assert Dispute.objects.get(pk=dispute.pk).status == "lost"


@pytest.mark.smoke
@pytest.mark.django_db
def test_becoming_lost_opens_chargeback_lost_once():
    account = AccountFactory(stripe_customer_id="cus_disp4")
    obj = dispute_obj(customer="cus_disp4")
    dispute_apply(obj=obj, event=event_at(300, obj, "charge.dispute.created"))
    review = copy.deepcopy(obj) | {"status": "under_review"}
    dispute_apply(obj=review, event=event_at(200, review))
    assert not Flag.objects.filter(kind=FlagKind.CHARGEBACK_LOST).exists()
    lost = copy.deepcopy(obj) | {"status": "lost"}
    lost_event = event_at(100, lost, "charge.dispute.closed")
    dispute_apply(obj=lost, event=lost_event)
    flag = Flag.objects.get(account=account, kind=FlagKind.CHARGEBACK_LOST)
    assert flag.opened_by_event == lost_event
    # Staff resolve it; a replay of the same closed event must not reopen it.
    flag.status, flag.resolution, flag.resolved_at = "resolved", "Refunded", timezone.now()
    flag.save()
    dispute_apply(obj=lost, event=lost_event)
    assert not Flag.objects.filter(kind=FlagKind.CHARGEBACK_LOST, status="open").exists()


@pytest.mark.django_db
def test_account_found_through_metadata_or_subscription_mirror():
    by_meta = AccountFactory()
    dispute = dispute_apply(
        obj=dispute_obj("dp_meta", metadata={"public_id": by_meta.public_id}), event=None
    )
    assert dispute.account == by_meta
    subscribed = AccountFactory(stripe_customer_id="")
    SubscriptionFactory(account=subscribed, customer_id="cus_only_in_mirror")
    # Stripe's dispute names no customer: the lookup through its charge found this one.
    dispute = dispute_apply(
        obj=dispute_obj("dp_sub"),
        event=None,
        charge=DisputeCharge(charge_id="ch_1", customer_id="cus_only_in_mirror"),
    )
    assert dispute.account == subscribed
    assert dispute.customer_id == "cus_only_in_mirror"


@pytest.mark.django_db
def test_unknown_customer_stays_unlinked_and_links_later():
    obj = dispute_obj("dp_unknown", customer="cus_nobody")
    dispute = dispute_apply(obj=obj, event=event_at(100, obj))
    assert dispute.account is None and dispute.customer_id == "cus_nobody"
    assert not Flag.objects.exists()
    # The customer is imported later; the next event links the dispute and flags it.
    account = AccountFactory(stripe_customer_id="cus_nobody")
    dispute = dispute_apply(obj=obj, event=event_at(50, obj))
    assert dispute.account == account
    assert Flag.objects.filter(account=account, kind=FlagKind.DISPUTED).count() == 1


@pytest.mark.django_db
def test_no_deadline_and_non_dispute_objects():
    obj = dispute_obj("dp_nodue", evidence_details={"due_by": 0, "submission_count": 1})
    dispute = dispute_apply(obj=obj)
    assert dispute.due_by is None and dispute.submission_count == 1
    with pytest.raises(ValueError):
        dispute_apply(obj={"id": "sub_123", "object": "subscription"})
