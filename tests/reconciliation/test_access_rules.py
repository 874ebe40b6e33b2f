"""The access rules (access_decide) and applying them (subscription_apply, outcome_apply)."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from accounts.models import AccessAudit, AccessStatus
from accounts.services.access_status import access_status_change
from reconciliation.models import Flag, FlagKind, Outcome, Subscription, SubscriptionStatus
from reconciliation.services.access_decisions import (
    access_decide,
    comp_record,
    grace_period_extend,
)
from reconciliation.services.subscriptions import subscription_apply, subscription_fields
from tests.factories import AccountFactory, SubscriptionFactory

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
STATUSES = SubscriptionStatus.values


def decide(access_status="active", subs=(), comp=False, staff=False, grace_ends_at=None):
    return access_decide(
        access_status=access_status,
        grace_ends_at=grace_ends_at,
        sub_statuses=list(subs),
        has_active_comp=comp,
        revoked_by_staff=staff,
        now=NOW,
    )


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"subs": ["active"]}, Outcome.IN_SYNC),
        ({"subs": ["canceled", "active"]}, Outcome.IN_SYNC),
        ({"subs": ["trialing"]}, Outcome.IN_SYNC),
        ({"subs": ["canceled"]}, Outcome.START_GRACE),
        ({"subs": ["canceled"], "comp": True}, Outcome.IN_SYNC),
        ({"subs": ["past_due"]}, Outcome.PAYMENT_FAILED),
        ({"subs": []}, Outcome.FLAG_MANUAL_GRANT),
        ({"subs": [], "comp": True}, Outcome.IN_SYNC),
        ({"access_status": "grace_period", "subs": ["active"]}, Outcome.END_GRACE),
        (
            {"access_status": "grace_period", "subs": ["canceled"], "grace_ends_at": NOW},
            Outcome.FLAG_GRACE_EXPIRED,
        ),
        (
            {
                "access_status": "grace_period",
                "subs": ["canceled"],
                "grace_ends_at": NOW + timedelta(days=1),
            },
            Outcome.IN_SYNC,
        ),
        ({"access_status": "revoked", "subs": ["active"]}, Outcome.REACTIVATE),
        ({"access_status": "revoked", "subs": ["active"], "staff": True}, Outcome.FLAG_MISMATCH),
        ({"access_status": "revoked", "subs": ["canceled"]}, Outcome.IN_SYNC),
        ({"access_status": "revoked_pending", "subs": ["active"]}, Outcome.FLAG_MISMATCH),
    ],
)
def test_access_decide_table(kwargs, expected):
    assert decide(**kwargs) == expected


@given(
    access_status=st.sampled_from(list(AccessStatus.values)),
    subs=st.lists(st.sampled_from(STATUSES), max_size=4),
    comp=st.booleans(),
    staff=st.booleans(),
)
def test_automation_never_revokes_nor_undoes_staff_revocation(access_status, subs, comp, staff):
    outcome = decide(
        access_status=access_status, subs=subs, comp=comp, staff=staff, grace_ends_at=NOW
    )
    assert outcome in Outcome.values
    if access_status == AccessStatus.REVOKED and staff:
        assert outcome in {Outcome.IN_SYNC, Outcome.FLAG_MISMATCH}


def test_subscription_fields_reads_current_and_legacy_shapes():
    current = {
        "id": "sub_1",
        "status": "active",
        "customer": "cus_1",
        "cancel_at_period_end": True,
        "items": {
            "data": [
                {
                    "current_period_end": 1767225600,
                    "price": {
                        "id": "price_pro",
                        "nickname": "Pro",
                        "unit_amount": 4900,
                        "currency": "eur",
                        "recurring": {"interval": "year"},
                    },
                }
            ]
        },
    }
    legacy = {
        "id": "sub_2",
        "status": "past_due",
        "customer": {"id": "cus_2"},
        "current_period_end": 1767225600,
        "plan": {
            "id": "gold",
            "nickname": "Gold",
            "amount": 999,
            "currency": "usd",
            "interval": "month",
        },
    }
    a, b = subscription_fields(current), subscription_fields(legacy)
    assert (a["price_id"], a["amount"], a["currency"], a["interval"]) == (
        "price_pro",
        4900,
        "eur",
        "year",
    )
    assert a["cancel_at_period_end"] is True
    assert a["current_period_end"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert (b["customer_id"], b["price_id"], b["amount"], b["interval"]) == (
        "cus_2",
        "gold",
        999,
        "month",
    )
    assert b["current_period_end"] == a["current_period_end"]
    with pytest.raises(ValueError, match="unknown subscription status"):
        subscription_fields({"id": "sub_3", "status": "bogus"})


def _sub(status, customer="cus_life", sub_id="sub_life"):
    return {
        "id": sub_id,
        "object": "subscription",
        "status": status,
        "customer": customer,
        "items": {
            "data": [
                {
                    "price": {
                        "id": "price_basic",
                        "unit_amount": 1500,
                        "currency": "usd",
                        "recurring": {"interval": "month"},
                    }
                }
            ]
        },
    }


@pytest.mark.django_db
@pytest.mark.smoke
def test_canceled_subscription_starts_grace_with_flag_audit_and_email(
    django_capture_on_commit_callbacks,
):
    account = AccountFactory(stripe_customer_id="cus_life")
    t0 = timezone.now()
    subscription_apply(obj=_sub("active"), provider_time=t0, actor="system:webhook", source="t")
    with django_capture_on_commit_callbacks(execute=True):
        result = subscription_apply(
            obj=_sub("canceled"),
            provider_time=t0 + timedelta(seconds=5),
            actor="system:webhook",
            source="event:evt_1",
        )
    account.refresh_from_db()
    assert result.outcome == Outcome.START_GRACE
    assert account.access_status == AccessStatus.GRACE_PERIOD
    assert account.grace_ends_at > t0 + timedelta(days=6)
    assert Flag.objects.filter(account=account, kind=FlagKind.MISSING_SUBSCRIPTION).count() == 1
    audit = AccessAudit.objects.get(account=account)
    assert (audit.from_status, audit.to_status, audit.actor) == (
        "active",
        "grace_period",
        "system:webhook",
    )
    assert len(mail.outbox) == 1 and "issue with your payment" in mail.outbox[0].subject


@pytest.mark.django_db
def test_every_order_of_a_subscription_life_ends_in_the_same_state():
    t0 = timezone.now()
    life = [("active", 0), ("active", 10), ("past_due", 20), ("canceled", 30)]
    finals = set()
    for n, order in enumerate(itertools.permutations(life)):
        account = AccountFactory(stripe_customer_id=f"cus_perm{n}")
        for status, offset in order:
            subscription_apply(
                obj=_sub(status, f"cus_perm{n}", f"sub_perm{n}"),
                provider_time=t0 + timedelta(seconds=offset),
                actor="system:webhook",
                source="t",
            )
        account.refresh_from_db()
        mirror = Subscription.objects.get(provider_id=f"sub_perm{n}")
        finals.add((mirror.status, mirror.provider_updated_at, account.access_status))
    assert finals == {("canceled", t0 + timedelta(seconds=30), AccessStatus.GRACE_PERIOD)}


@pytest.mark.django_db
def test_subscription_for_unknown_customer_waits_then_links_by_metadata():
    obj = _sub("active", customer="cus_unknown", sub_id="sub_wait")
    result = subscription_apply(obj=obj, provider_time=timezone.now(), actor="a", source="t")
    assert (
        result.account is None and Subscription.objects.get(provider_id="sub_wait").account is None
    )
    account = AccountFactory(stripe_customer_id="")
    obj["metadata"] = {"account_id": account.public_id}
    result = subscription_apply(obj=obj, provider_time=timezone.now(), actor="a", source="t")
    account.refresh_from_db()
    assert result.account == account and account.stripe_customer_id == "cus_unknown"


@pytest.mark.django_db
def test_reactivation_only_when_not_revoked_by_staff(admin_user):
    by_system = AccountFactory(access_status="revoked", is_active=False)
    by_staff = AccountFactory()
    access_status_change(
        account=by_staff,
        to_status="revoked_pending",
        actor=admin_user.email,
        actor_user=admin_user,
        reason="chargeback",
    )
    access_status_change(
        account=by_staff,
        to_status="revoked",
        actor=admin_user.email,
        actor_user=admin_user,
        reason="chargeback",
    )
    for account in (by_system, by_staff):
        subscription_apply(
            obj=_sub("active", account.stripe_customer_id, f"sub_{account.pk}"),
            provider_time=timezone.now(),
            actor="system:audit",
            source="t",
        )
        account.refresh_from_db()
    assert by_system.access_status == "active" and by_system.is_active
    assert Flag.objects.filter(account=by_system, kind=FlagKind.REACTIVATED).exists()
    assert by_staff.access_status == "revoked" and not by_staff.is_active
    assert Flag.objects.filter(account=by_staff, kind=FlagKind.PROVIDER_MISMATCH).exists()


@pytest.mark.django_db
def test_grace_extension_is_bounded_and_audited(support_user):
    account = AccountFactory()
    SubscriptionFactory(account=account, status="canceled")
    subscription_apply(
        obj=_sub("canceled", account.stripe_customer_id, "sub_x"),
        provider_time=timezone.now(),
        actor="system:audit",
        source="t",
    )
    account.refresh_from_db()
    before = account.grace_ends_at
    with pytest.raises(ValueError, match="1 to 30"):
        grace_period_extend(account=account, days=31, reason="x", actor_user=support_user)
    grace_period_extend(
        account=account, days=3, reason="customer on holiday", actor_user=support_user
    )
    account.refresh_from_db()
    assert account.grace_ends_at == before + timedelta(days=3)
    assert AccessAudit.objects.filter(account=account, actor=support_user.email).count() == 1


@pytest.mark.django_db
def test_comp_suppresses_manual_grant_flag(support_user):
    account = AccountFactory()
    with pytest.raises(ValueError, match="future"):
        comp_record(
            account=account, reason="partner", expires_at=timezone.now(), granted_by=support_user
        )
    comp_record(
        account=account,
        reason="partner",
        expires_at=timezone.now() + timedelta(days=30),
        granted_by=support_user,
    )
    from reconciliation.services.access_decisions import account_access_sync

    assert account_access_sync(account=account, actor="system:audit", source="t") == "in_sync"
    assert not Flag.objects.filter(account=account).exists()
