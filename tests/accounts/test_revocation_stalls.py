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


def _approved_request(account, support_user, admin_user):
    request = revocation_request(account=account, requested_by=support_user, reason="fraud")
    RevocationRequest.objects.filter(pk=request.pk).update(
        status=RevocationStatus.APPROVED, decided_by=admin_user, decided_at=timezone.now()
    )
    return request


def test_an_abandon_or_retry_is_refused_while_step_two_ends_the_sessions(
    settings, monkeypatch, customer, support_user, admin_user, second_admin
):
    """A purge that outlives the stall time looked stalled, and an Admin's abandon gave the
    account its access back while the purge went on to end every member's sessions with
    nothing recorded (found in review). While step 2 ends the sessions the request is not
    stalled, an abandon or retry is refused with why, and what the purge did is recorded."""
    from accounts.models import AccessStatus
    from accounts.services import revocation as service
    from tests.accounts.browsing import session_exists, sign_in

    key = sign_in(customer).cookies[settings.SESSION_COOKIE_NAME].value
    request = _approved_request(customer.account, support_user, admin_user)
    settings.JANITOR_REVOCATION_STALL_SECONDS = 0  # any pause would look stalled
    refusals: list[str] = []
    real_purge = service.sessions_revoke_account

    def slow_purge(*, account):
        during = RevocationRequest.objects.get(pk=request.pk)
        assert during.is_purging and not during.is_stalled
        for act in (
            lambda: service.revocation_abandon(
                revocation_id=request.pk, actor=second_admin, reason="wrong account"
            ),
            lambda: service.revocation_retry(revocation_id=request.pk, actor=second_admin),
        ):
            with pytest.raises(RevocationError, match="ending this account's sessions") as why:
                act()
            refusals.append(str(why.value))
        return real_purge(account=account)

    monkeypatch.setattr(service, "sessions_revoke_account", slow_purge)
    done = service.revocation_run(revocation_id=request.pk)

    assert len(refusals) == 2
    assert done.status == RevocationStatus.COMPLETED
    assert done.purge_started_at is None and done.sessions_removed == 1
    assert not session_exists(key)
    customer.account.refresh_from_db()
    assert customer.account.access_status == AccessStatus.REVOKED


def test_a_purge_that_failed_leaves_the_request_retryable_at_once(
    monkeypatch, customer, support_user, admin_user
):
    from accounts.services import revocation as service

    request = _approved_request(customer.account, support_user, admin_user)

    def redis_down(*, account):
        raise ConnectionError("the session store is down")

    monkeypatch.setattr(service, "sessions_revoke_account", redis_down)
    failed = service.revocation_run(revocation_id=request.pk)
    assert failed.status == RevocationStatus.FAILED
    assert failed.purge_started_at is None and not failed.is_purging
    monkeypatch.undo()
    assert revocation_retry(revocation_id=request.pk, actor=admin_user).status == (
        RevocationStatus.COMPLETED
    )


def test_a_claim_older_than_any_task_can_run_no_longer_holds_an_abandon_back(
    settings, customer, support_user, admin_user, second_admin
):
    """A worker killed mid-purge leaves its claim: past the longest a task may run, the
    request is stalled again and an Admin can abandon it."""
    from accounts.services.revocation import revocation_abandon

    request = _approved_request(customer.account, support_user, admin_user)
    longest = settings.Q_CLUSTER["timeout"] + 60
    RevocationRequest.objects.filter(pk=request.pk).update(
        purge_started_at=timezone.now() - timedelta(seconds=longest + 5),
        decided_at=timezone.now() - timedelta(minutes=30),
    )
    stale = RevocationRequest.objects.get(pk=request.pk)
    assert not stale.is_purging and stale.is_stalled
    assert revocation_abandon(
        revocation_id=request.pk, actor=second_admin, reason="worker died"
    ).status == (RevocationStatus.ABANDONED)


def test_a_purge_that_outlived_its_claim_still_says_what_it_ended(
    settings, monkeypatch, customer, support_user, admin_user
):
    """Abandoned after the claim lapsed (a purge longer than a task may run): the run stops,
    and the request keeps the count of the sessions the purge ended anyway (it was written in
    the transaction the refusal rolled back)."""
    from accounts.services import revocation as service
    from tests.accounts.browsing import sign_in

    sign_in(customer)
    request = _approved_request(customer.account, support_user, admin_user)
    real_purge = service.sessions_revoke_account

    def purge_then_given_up(*, account):
        ended = real_purge(account=account)
        RevocationRequest.objects.filter(pk=request.pk).update(status=RevocationStatus.ABANDONED)
        return ended

    monkeypatch.setattr(service, "sessions_revoke_account", purge_then_given_up)
    stopped = service.revocation_run(revocation_id=request.pk)
    assert stopped.status == RevocationStatus.ABANDONED
    assert stopped.sessions_removed == 1 and stopped.purge_started_at is None
