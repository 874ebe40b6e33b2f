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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_abandon_waits_for_a_session_purge_that_looks_stalled(settings, monkeypatch):
    """A purge that outlives the stall time shows the request as stalled; an Admin who abandons
    it then must not give the account its access back while the purge goes on to end every
    member's sessions with nothing recorded (found in review). The abandon waits for the purge
    under the request's row lock; whichever wins after that, what the purge did is recorded."""
    import threading
    import time

    from django.db import connection

    from accounts.models import AccessAudit, AccessStatus
    from accounts.services import revocation as service
    from tests.accounts.browsing import session_exists, sign_in
    from tests.factories import StaffFactory, UserFactory

    customer = UserFactory()
    support_user = StaffFactory(role="Support")
    admin_user = StaffFactory(role="Admin")
    other_admin = StaffFactory(role="Admin", email="admin-two@janitor.test")
    key = sign_in(customer).cookies[settings.SESSION_COOKIE_NAME].value
    request = revocation_request(
        account=customer.account, requested_by=support_user, reason="fraud"
    )
    RevocationRequest.objects.filter(pk=request.pk).update(
        status=RevocationStatus.APPROVED, decided_by=admin_user, decided_at=timezone.now()
    )
    settings.JANITOR_REVOCATION_STALL_SECONDS = 0  # every pause already looks stalled
    abandon: dict[str, object] = {}

    def abandon_now():
        try:
            abandon["result"] = service.revocation_abandon(
                revocation_id=request.pk, actor=other_admin, reason="wrong account"
            ).status
        except RevocationError as exc:
            abandon["result"] = f"refused: {exc}"
        finally:
            abandon["at"] = time.monotonic()
            connection.close()

    real_purge = service.sessions_revoke_account
    purge: dict[str, float] = {}

    def slow_purge(*, account):
        thread = threading.Thread(target=abandon_now)
        thread.start()
        thread.join(timeout=1.0)  # the Admin clicks Abandon while the purge runs
        purge["abandon_waited"] = float(thread.is_alive())
        abandon["thread"] = thread
        ended = real_purge(account=account)
        purge["done_at"] = time.monotonic()
        return ended

    monkeypatch.setattr(service, "sessions_revoke_account", slow_purge)
    service.revocation_run(revocation_id=request.pk)
    abandon["thread"].join(timeout=30)  # type: ignore[attr-defined]

    assert purge["abandon_waited"] == 1.0, abandon  # it did not go through mid-purge
    assert abandon["at"] > purge["done_at"]
    request.refresh_from_db()
    customer.account.refresh_from_db()
    assert not session_exists(key)
    # The purge is on the record whichever way the race after it went.
    assert request.sessions_removed == 1
    assert service.STEP_SESSIONS in request.steps
    if request.status == RevocationStatus.ABANDONED:
        assert customer.account.access_status == AccessStatus.ACTIVE
        row = AccessAudit.objects.filter(account=customer.account, details__abandoned=True).get()
        assert row.details["sessions_removed"] == 1
        assert service.STEP_SESSIONS in row.details["steps_done"]
    else:
        assert request.status == RevocationStatus.COMPLETED, request.status
        assert customer.account.access_status == AccessStatus.REVOKED
        assert str(abandon["result"]).startswith("refused"), abandon
