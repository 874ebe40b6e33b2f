"""The staged revocation end to end: request, approval, every session ended, audit, restore."""

import threading
import time

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.backends import ACCESS_REFUSED_MESSAGE
from accounts.models import AccessAudit, AccessStatus, RevocationRequest, RevocationStatus
from accounts.services import sessions as session_index
from accounts.services.revocation import (
    STEP_AUDIT,
    STEP_PENDING,
    STEP_REVOKED,
    STEP_SESSIONS,
    RevocationError,
    access_restore,
    revocation_approve,
    revocation_reject,
    revocation_request,
    revocation_run,
    revocation_step_pending,
)
from tests.accounts.browsing import session_exists, sign_in
from tests.factories import PASSWORD, UserFactory

DEAD_REDIS = "redis://127.0.0.1:6390/0"


def _signed_in(client: Client) -> bool:
    response = client.get(reverse("customer_home"))
    return response.status_code == 200


def _approved_request(customer, support_user, admin_user) -> RevocationRequest:
    """An approved request whose steps have not run (approval without the queue)."""
    revocation = revocation_request(
        account=customer.account, requested_by=support_user, reason="Chargeback fraud"
    )
    RevocationRequest.objects.filter(pk=revocation.pk).update(
        status=RevocationStatus.APPROVED, decided_by=admin_user
    )
    return RevocationRequest.objects.select_related("account", "requested_by", "decided_by").get(
        pk=revocation.pk
    )


@pytest.mark.smoke
def test_five_live_sessions_all_end_after_approval(customer, support_user, admin_user):
    clients = [sign_in(customer) for _ in range(5)]
    keys = [c.cookies[settings.SESSION_COOKIE_NAME].value for c in clients]
    assert len(set(keys)) == 5
    assert sorted(session_index.session_keys_for(user=customer)) == sorted(keys)

    revocation = revocation_request(
        account=customer.account,
        requested_by=support_user,
        reason="Chargeback lost, card reported stolen",
        reference="Chargeback Case #12345",
    )
    admin = Client()
    admin.force_login(admin_user)
    response = admin.post(reverse("revocation_approve", args=[revocation.pk]), {"comment": "ok"})
    assert response.status_code == 302

    revocation.refresh_from_db()
    customer.refresh_from_db()
    assert revocation.status == RevocationStatus.COMPLETED
    assert revocation.sessions_removed == 5
    assert sorted(revocation.steps) == [STEP_PENDING, STEP_SESSIONS, STEP_REVOKED, STEP_AUDIT]
    assert customer.access_status == AccessStatus.REVOKED
    assert customer.account.is_active is False and not customer.can_log_in
    assert customer.session_version == 1
    assert not any(session_exists(key) for key in keys)
    for client in clients:
        response = client.get(reverse("customer_home"))
        assert response.status_code == 302
        assert response.url == reverse("customer_login")
    assert session_index.session_keys_for(user=customer) == []


@pytest.mark.smoke
def test_between_steps_existing_session_works_but_new_login_refused(
    customer, support_user, admin_user
):
    existing = sign_in(customer)
    revocation = _approved_request(customer, support_user, admin_user)

    assert revocation_step_pending(revocation=revocation) == [STEP_PENDING]
    customer.refresh_from_db()
    assert customer.access_status == AccessStatus.REVOKED_PENDING

    assert _signed_in(existing), "sessions are kept until step 2"
    for password in (PASSWORD, "a-wrong-password"):
        response = Client().post(
            reverse("customer_login"), {"username": customer.email, "password": password}
        )
        assert response.status_code == 200
        # Only the right password learns why (a wrong one gets the generic error).
        assert (ACCESS_REFUSED_MESSAGE in response.content.decode()) is (password == PASSWORD)

    revocation_run(revocation_id=revocation.pk)
    revocation.refresh_from_db()
    assert revocation.status == RevocationStatus.COMPLETED
    assert not _signed_in(existing)


@pytest.mark.smoke
def test_the_requester_cannot_approve_their_own_request(customer, admin_user):
    revocation = revocation_request(
        account=customer.account, requested_by=admin_user, reason="Fraud"
    )
    with pytest.raises(RevocationError, match="another Admin"):
        revocation_approve(revocation_id=revocation.pk, approver=admin_user)
    revocation.refresh_from_db()
    customer.refresh_from_db()
    assert revocation.status == RevocationStatus.PENDING
    assert revocation.decided_by is None
    assert customer.access_status == AccessStatus.ACTIVE


def test_self_approval_through_the_page_is_refused(customer, admin_user, admin_client_):
    revocation = revocation_request(
        account=customer.account, requested_by=admin_user, reason="Fraud"
    )
    response = admin_client_.post(
        reverse("revocation_approve", args=[revocation.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "another Admin must decide it" in response.content.decode()
    revocation.refresh_from_db()
    assert revocation.status == RevocationStatus.PENDING


def test_support_and_finance_cannot_approve(customer, support_user, finance_user):
    revocation = revocation_request(
        account=customer.account, requested_by=support_user, reason="Fraud"
    )
    with pytest.raises(RevocationError, match="Only an Admin"):
        revocation_approve(revocation_id=revocation.pk, approver=finance_user)
    revocation.refresh_from_db()
    assert revocation.status == RevocationStatus.PENDING


def test_a_reason_is_required_and_one_open_request_per_account(customer, support_user):
    with pytest.raises(RevocationError, match="reason"):
        revocation_request(account=customer.account, requested_by=support_user, reason="   ")
    revocation_request(account=customer.account, requested_by=support_user, reason="Fraud")
    with pytest.raises(RevocationError, match="already has an open"):
        revocation_request(account=customer.account, requested_by=support_user, reason="Again")
    assert RevocationRequest.objects.filter(account=customer.account).count() == 1


def test_reject_needs_a_comment_and_leaves_access_alone(customer, support_user, admin_user):
    revocation = revocation_request(
        account=customer.account, requested_by=support_user, reason="Fraud"
    )
    with pytest.raises(RevocationError, match="why"):
        revocation_reject(revocation_id=revocation.pk, approver=admin_user, comment=" ")
    rejected = revocation_reject(
        revocation_id=revocation.pk, approver=admin_user, comment="Customer paid in full"
    )
    customer.refresh_from_db()
    assert rejected.status == RevocationStatus.REJECTED
    assert rejected.decision_comment == "Customer paid in full"
    assert customer.access_status == AccessStatus.ACTIVE
    assert not AccessAudit.objects.filter(account=customer.account).exists()
    with pytest.raises(RevocationError, match="already rejected"):
        revocation_approve(revocation_id=revocation.pk, approver=admin_user)


def test_a_redelivered_task_does_nothing(customer, support_user, admin_user):
    revocation = revocation_request(
        account=customer.account, requested_by=support_user, reason="Fraud"
    )
    revocation_approve(revocation_id=revocation.pk, approver=admin_user)
    again = revocation_run(revocation_id=revocation.pk)
    assert again.status == RevocationStatus.COMPLETED
    assert again.attempts == 1
    assert AccessAudit.objects.filter(account=customer.account).count() == 2


@pytest.mark.smoke
def test_every_change_has_exactly_one_audit_row(customer, support_user, admin_user):
    sign_in(customer)
    sign_in(customer)
    revocation = revocation_request(
        account=customer.account,
        requested_by=support_user,
        reason="Chargeback fraud",
        reference="Chargeback Case #12345",
    )
    revocation_approve(revocation_id=revocation.pk, approver=admin_user, comment="Confirmed")
    access_restore(
        account=customer.account, actor=admin_user, reason="Bank reversed the chargeback"
    )

    rows = list(AccessAudit.objects.filter(account=customer.account).order_by("at", "id"))
    assert [(r.from_status, r.to_status) for r in rows] == [
        (AccessStatus.ACTIVE, AccessStatus.REVOKED_PENDING),
        (AccessStatus.REVOKED_PENDING, AccessStatus.REVOKED),
        (AccessStatus.REVOKED, AccessStatus.ACTIVE),
    ]
    source = f"revocation:{revocation.pk}"
    assert [r.source for r in rows] == [source, source, source]
    final = rows[1]
    assert final.actor == support_user.email
    assert final.actor_user == support_user
    assert final.approver == admin_user
    assert final.reason == "Chargeback fraud"
    assert final.reference == "Chargeback Case #12345"
    assert final.details["sessions_removed"] == 2
    assert final.details["requested_by"] == support_user.email
    assert final.details["approved_by"] == admin_user.email
    # The audit row carries the steps done before it; steps 3 and 4 are timed on the request.
    assert set(final.details["steps"]) == {STEP_PENDING, STEP_SESSIONS}
    assert all("ms" in step and "at" in step for step in final.details["steps"].values())
    revocation.refresh_from_db()
    assert set(revocation.steps) == {STEP_PENDING, STEP_SESSIONS, STEP_REVOKED, STEP_AUDIT}
    assert rows[2].actor == admin_user.email and rows[2].actor_user == admin_user


@pytest.mark.smoke
def test_restore_brings_login_back(customer, support_user, admin_user):
    revocation = revocation_request(
        account=customer.account, requested_by=support_user, reason="Fraud"
    )
    revocation_approve(revocation_id=revocation.pk, approver=admin_user)
    response = Client().post(
        reverse("customer_login"), {"username": customer.email, "password": PASSWORD}
    )
    assert ACCESS_REFUSED_MESSAGE in response.content.decode()

    with pytest.raises(RevocationError, match="reason"):
        access_restore(account=customer.account, actor=admin_user, reason="")
    with pytest.raises(RevocationError, match="Only an Admin"):
        access_restore(account=customer.account, actor=support_user, reason="Paid")
    access_restore(account=customer.account, actor=admin_user, reason="Paid in full")

    customer.refresh_from_db()
    assert customer.access_status == AccessStatus.ACTIVE
    assert customer.is_active is True
    client = sign_in(customer)
    assert customer.email in client.get(reverse("customer_home")).content.decode()


@pytest.mark.redis
def test_redis_down_in_step_two_leaves_pending_and_retry_completes(
    settings, customer, support_user, admin_user, admin_client_
):
    existing = sign_in(customer)
    revocation = revocation_request(
        account=customer.account, requested_by=support_user, reason="Fraud"
    )

    live = settings.REDIS_URL
    settings.REDIS_URL = DEAD_REDIS  # the session index now points at a Redis that is down
    approved = revocation_approve(revocation_id=revocation.pk, approver=admin_user)
    settings.REDIS_URL = live  # Redis is back

    customer.refresh_from_db()
    assert approved.status == RevocationStatus.FAILED
    assert "ConnectionError" in approved.last_error
    assert STEP_PENDING in approved.steps and STEP_SESSIONS not in approved.steps
    assert customer.access_status == AccessStatus.REVOKED_PENDING
    assert customer.is_active is True
    assert _signed_in(existing), "step 2 did not run: the session is still there"
    assert AccessAudit.objects.filter(account=customer.account).count() == 1

    page = admin_client_.get(reverse("revocation_list")).content.decode()
    assert reverse("revocation_retry", args=[revocation.pk]) in page

    response = admin_client_.post(reverse("revocation_retry", args=[revocation.pk]))
    assert response.status_code == 302
    revocation.refresh_from_db()
    customer.refresh_from_db()
    assert revocation.status == RevocationStatus.COMPLETED
    assert revocation.attempts == 2
    assert revocation.sessions_removed == 1
    assert customer.access_status == AccessStatus.REVOKED
    assert not _signed_in(existing)
    rows = AccessAudit.objects.filter(account=customer.account).order_by("id")
    assert [r.to_status for r in rows] == [AccessStatus.REVOKED_PENDING, AccessStatus.REVOKED]
    assert rows[1].details["attempts"] == 2


@pytest.mark.redis
def test_sessions_live_in_redis_and_the_index_is_a_redis_set(customer):
    client = sign_in(customer)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    redis = session_index._redis()
    index = f"{settings.CACHE_KEY_PREFIX}:sessions:user:{customer.pk}"
    assert redis.smembers(index) == {key.encode()}
    assert redis.exists(session_index._session_store_key(key)) == 1
    assert 0 < redis.ttl(index) <= settings.SESSION_COOKIE_AGE


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals_run_the_revocation_once(transactional_db):
    from tests.factories import StaffFactory

    customer = UserFactory()
    support_user = StaffFactory(role="Support")
    admin_user = StaffFactory(role="Admin")
    other_admin = StaffFactory(role="Admin", email="admin-two@janitor.test")
    revocation = revocation_request(
        account=customer.account, requested_by=support_user, reason="Fraud"
    )
    outcomes: list[str] = []

    def approve(approver):
        try:
            result = revocation_approve(revocation_id=revocation.pk, approver=approver)
            outcomes.append(f"ran:{result.status}")
        except RevocationError as exc:
            outcomes.append(f"refused:{exc}")
        finally:
            connection.close()

    from django.db import transaction

    # Hold the request row so both approvals queue on it and truly overlap.
    with transaction.atomic():
        RevocationRequest.objects.select_for_update().get(pk=revocation.pk)
        threads = [threading.Thread(target=approve, args=(a,)) for a in (admin_user, other_admin)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(o.split(":")[0] for o in outcomes) == ["ran", "refused"], outcomes
    revocation.refresh_from_db()
    assert revocation.status == RevocationStatus.COMPLETED
    assert revocation.attempts == 1
    assert AccessAudit.objects.filter(account=customer.account).count() == 2


def test_revoke_access_command_runs_the_staged_service(customer, admin_user, capsys):
    sign_in(customer)
    call_command(
        "revoke_access",
        customer.public_id,
        "--reason",
        "Account takeover",
        "--reference",
        "INC-7",
        "--actor",
        admin_user.email,
    )
    out = capsys.readouterr().out
    for step in (STEP_PENDING, STEP_SESSIONS, STEP_REVOKED, STEP_AUDIT):
        assert f"step {step}" in out
    assert "1 session(s) ended" in out
    customer.refresh_from_db()
    assert customer.access_status == AccessStatus.REVOKED
    revocation = RevocationRequest.objects.get(account=customer.account)
    assert revocation.status == RevocationStatus.COMPLETED
    assert revocation.requested_by == admin_user and revocation.decided_by is None
    final = AccessAudit.objects.get(account=customer.account, to_status=AccessStatus.REVOKED)
    assert final.reference == "INC-7" and final.details["sessions_removed"] == 1


def test_revoke_access_command_refuses_without_reason_or_admin(customer, support_user, admin_user):
    with pytest.raises(CommandError, match="reason is required"):
        call_command("revoke_access", customer.public_id, "--actor", admin_user.email)
    with pytest.raises(CommandError, match="not an Admin"):
        call_command(
            "revoke_access", customer.public_id, "--reason", "x", "--actor", support_user.email
        )
    customer.refresh_from_db()
    assert customer.access_status == AccessStatus.ACTIVE
    assert not RevocationRequest.objects.exists()


@pytest.mark.redis
def test_revoke_access_command_retry_after_failure(settings, customer, admin_user, capsys):
    sign_in(customer)
    live = settings.REDIS_URL
    settings.REDIS_URL = DEAD_REDIS
    with pytest.raises(CommandError, match="--retry"):
        call_command(
            "revoke_access", customer.public_id, "--reason", "x", "--actor", admin_user.email
        )
    settings.REDIS_URL = live
    customer.refresh_from_db()
    assert customer.access_status == AccessStatus.REVOKED_PENDING
    call_command("revoke_access", customer.public_id, "--retry", "--actor", admin_user.email)
    customer.refresh_from_db()
    assert customer.access_status == AccessStatus.REVOKED
    assert "1 session(s) ended" in capsys.readouterr().out


def test_a_revoked_account_cannot_be_requested_again(customer, support_user, admin_user):
    revocation = revocation_request(
        account=customer.account, requested_by=support_user, reason="Fraud"
    )
    revocation_approve(revocation_id=revocation.pk, approver=admin_user)
    with pytest.raises(RevocationError, match="already revoked"):
        revocation_request(account=customer.account, requested_by=support_user, reason="Again")


def test_other_customers_keep_their_sessions(customer, support_user, admin_user):
    bystander = UserFactory()
    bystander_client = sign_in(bystander)
    sign_in(customer)
    revocation = revocation_request(
        account=customer.account, requested_by=support_user, reason="Fraud"
    )
    revocation_approve(revocation_id=revocation.pk, approver=admin_user)
    assert _signed_in(bystander_client)
    bystander.refresh_from_db()
    assert bystander.session_version == 0
