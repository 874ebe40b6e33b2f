"""An approved revocation never sits unnoticed: a queue that refuses it fails the request, and
one whose task was lost becomes retryable (found in review)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import RevocationRequest, RevocationStatus
from accounts.services.revocation import (
    RevocationError,
    revocation_approve,
    revocation_request,
    revocation_retry,
)
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db


def test_broker_refusing_the_task_marks_the_request_failed(support_user, admin_user):
    # django-q2 reads its configuration once, at import: point it at a Redis broker nobody
    # listens on, so the enqueue fails after the approval has committed.
    import django_q.conf

    conf = django_q.conf.Conf
    saved = (conf.SYNC, conf.ORM, getattr(conf, "REDIS", None))
    conf.SYNC, conf.ORM, conf.REDIS = False, None, "redis://127.0.0.1:6391/0"
    try:
        request = revocation_request(
            account=AccountFactory(), requested_by=support_user, reason="chargeback"
        )
        result = revocation_approve(revocation_id=request.pk, approver=admin_user)
    finally:
        conf.SYNC, conf.ORM, conf.REDIS = saved
    assert result.status == RevocationStatus.FAILED
    assert "could not queue the revocation" in result.last_error


def test_an_approved_request_whose_task_was_lost_can_be_retried(support_user, admin_user):
    account = AccountFactory()
    request = revocation_request(account=account, requested_by=support_user, reason="fraud")
    RevocationRequest.objects.filter(pk=request.pk).update(
        status=RevocationStatus.APPROVED, decided_by=admin_user, decided_at=timezone.now()
    )
    with pytest.raises(RevocationError, match="failed or stalled"):
        revocation_retry(revocation_id=request.pk, actor=admin_user)  # too early to tell
    RevocationRequest.objects.filter(pk=request.pk).update(
        decided_at=timezone.now() - timedelta(minutes=11)
    )
    assert RevocationRequest.objects.get(pk=request.pk).is_stalled
    result = revocation_retry(revocation_id=request.pk, actor=admin_user)  # runs inline in tests
    account.refresh_from_db()
    assert result.status == RevocationStatus.COMPLETED
    assert account.access_status == "revoked"
