"""The data model's promises: an append-only audit, and the rules kept as database constraints."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import AccessAudit, AccessComp, RevocationRequest
from accounts.services.access_status import AccessTransitionError, access_status_change
from reconciliation.models import Flag, FlagKind
from tests.factories import AccountFactory, FlagFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def _audit_row():
    account = AccountFactory()
    return access_status_change(
        account=account,
        to_status="grace_period",
        actor="system:test",
        reason="test",
        grace_ends_at=timezone.now(),
    )


@pytest.mark.smoke
def test_audit_model_refuses_update_and_delete():
    row = _audit_row()
    row.reason = "rewritten"
    with pytest.raises(PermissionError):
        row.save()
    with pytest.raises(PermissionError):
        row.delete()
    with pytest.raises(PermissionError):
        AccessAudit.objects.filter(pk=row.pk).update(reason="x")
    with pytest.raises(PermissionError):
        AccessAudit.objects.all().delete()
    assert AccessAudit.objects.get(pk=row.pk).reason == "test"


@pytest.mark.smoke
@pytest.mark.parametrize(
    "bad",
    [
        {"access_status": "revoked", "is_active": True},
        {"access_status": "active", "is_active": False},
        {"access_status": "grace_period", "grace_ends_at": None},
        {"access_status": "superuser"},
    ],
)
def test_account_constraints_keep_the_state_table(bad):
    account = AccountFactory()
    for name, value in bad.items():
        setattr(account, name, value)
    with pytest.raises(IntegrityError), transaction.atomic():
        account.save()


def test_emails_and_customer_ids_are_unique():
    AccountFactory(email="Same@Example.com", stripe_customer_id="cus_same")
    with pytest.raises(IntegrityError), transaction.atomic():
        AccountFactory(email="same@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        AccountFactory(stripe_customer_id="cus_same")
    AccountFactory(stripe_customer_id="")
    AccountFactory(stripe_customer_id="")  # "not linked" is not a duplicate


def test_one_open_flag_per_account_and_kind():
    flag = FlagFactory(kind=FlagKind.MANUAL_GRANT)
    with pytest.raises(IntegrityError), transaction.atomic():
        FlagFactory(account=flag.account, kind=FlagKind.MANUAL_GRANT)
    Flag.objects.filter(pk=flag.pk).update(
        status="resolved", resolution="ok", resolved_at=timezone.now()
    )
    FlagFactory(account=flag.account, kind=FlagKind.MANUAL_GRANT)  # a new one may open


def test_revocation_cannot_be_self_approved_and_one_open_per_account(support_user):
    account = AccountFactory()
    request = RevocationRequest.objects.create(
        account=account, requested_by=support_user, reason="chargeback"
    )
    request.decided_by = support_user
    with pytest.raises(IntegrityError), transaction.atomic():
        request.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        RevocationRequest.objects.create(account=account, requested_by=support_user, reason="2")


def test_other_check_constraints():
    with pytest.raises(IntegrityError), transaction.atomic():
        SubscriptionFactory(status="sort_of_active")
    with pytest.raises(IntegrityError), transaction.atomic():
        SubscriptionFactory(amount=-1)
    account = AccountFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        AccessComp.objects.create(
            account=account, reason="", expires_at=timezone.now() + timedelta(days=1)
        )


def test_access_change_refuses_automation_revoking_and_unknown_moves():
    account = AccountFactory()
    with pytest.raises(AccessTransitionError, match="Automation never revokes"):
        access_status_change(
            account=account, to_status="revoked_pending", actor="system:audit", reason="x"
        )
    with pytest.raises(AccessTransitionError, match="not an allowed"):
        access_status_change(account=account, to_status="revoked", actor="a@b.c", reason="x")
    assert not AccessAudit.objects.filter(account=account).exists()
