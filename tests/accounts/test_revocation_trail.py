"""The revocation trail is complete (issue 11): each step timed around itself, retries recorded,
stalls shown, a failed or stalled revocation abandonable, and completion closes the account's
flags."""

import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccessAudit, AccessStatus, RevocationRequest, RevocationStatus
from accounts.services import revocation as revocation_service
from accounts.services.revocation import (
    STEP_AUDIT,
    STEP_PENDING,
    STEP_REVOKED,
    STEP_SESSIONS,
    RevocationError,
    revocation_abandon,
    revocation_approve,
    revocation_request,
)
from janitor.selectors import overview_get
from reconciliation.models import Flag, FlagKind, FlagNote, FlagStatus
from tests.factories import AccountFactory, FlagFactory

pytestmark = pytest.mark.django_db


def _approved(account, support_user, admin_user):
    request = revocation_request(account=account, requested_by=support_user, reason="Chargeback")
    return revocation_approve(revocation_id=request.pk, approver=admin_user)


def _sessions_fail(monkeypatch, times=1):
    calls = {"n": 0}
    real = revocation_service.sessions_revoke_account

    def flaky(*, account):
        calls["n"] += 1
        if calls["n"] <= times:
            raise ConnectionError("Redis is down")
        return real(account=account)

    monkeypatch.setattr(revocation_service, "sessions_revoke_account", flaky)


def test_each_step_is_timed_around_itself(support_user, admin_user, monkeypatch):
    real_sessions = revocation_service.sessions_revoke_account
    real_create = AccessAudit.objects.create

    def slow_sessions(*, account):
        time.sleep(0.4)
        return real_sessions(account=account)

    def slow_audit_insert(**kwargs):
        if kwargs.get("to_status") == AccessStatus.REVOKED:
            time.sleep(0.6)
        return real_create(**kwargs)

    monkeypatch.setattr(revocation_service, "sessions_revoke_account", slow_sessions)
    monkeypatch.setattr(AccessAudit.objects, "create", slow_audit_insert)

    done = _approved(AccountFactory(), support_user, admin_user)

    steps = done.steps
    assert done.status == RevocationStatus.COMPLETED
    # Sleeps well above a loaded machine's query times, so the bounds cannot flake.
    assert steps[STEP_SESSIONS]["ms"] >= 400
    # Step 3 is the status write alone: neither step 2's (0.4 s) nor step 4's (0.6 s) is in it.
    assert steps[STEP_REVOKED]["ms"] < 400
    assert steps[STEP_AUDIT]["ms"] >= 600
    assert steps[STEP_PENDING]["ms"] < 400


def test_a_dashboard_retry_records_who_and_when(
    support_user, admin_user, second_admin, admin_client_, monkeypatch
):
    account = AccountFactory()
    _sessions_fail(monkeypatch)
    failed = _approved(account, support_user, admin_user)
    assert failed.status == RevocationStatus.FAILED

    response = admin_client_.post(reverse("revocation_retry", args=[failed.pk]))
    assert response.status_code == 302

    done = RevocationRequest.objects.get(pk=failed.pk)
    assert done.status == RevocationStatus.COMPLETED
    [entry] = done.history
    assert entry["action"] == "retry" and entry["via"] == "dashboard" and entry["was"] == "failed"
    assert entry["by"] == admin_user.email
    assert timezone.now() - timezone.datetime.fromisoformat(entry["at"]) < timedelta(minutes=1)
    final = AccessAudit.objects.get(account=account, to_status=AccessStatus.REVOKED)
    assert [r["by"] for r in final.details["retries"]] == [admin_user.email]


def test_a_shell_retry_records_who(support_user, admin_user, monkeypatch):
    account = AccountFactory()
    _sessions_fail(monkeypatch)
    failed = _approved(account, support_user, admin_user)
    call_command(
        "revoke_access",
        account.public_id,
        "--retry",
        "--actor",
        admin_user.email,
        stdout=StringIO(),
    )
    done = RevocationRequest.objects.get(pk=failed.pk)
    assert done.status == RevocationStatus.COMPLETED
    assert [(e["by"], e["via"]) for e in done.history] == [(admin_user.email, "shell")]
    final = AccessAudit.objects.get(account=account, to_status=AccessStatus.REVOKED)
    assert final.details["retries"][0]["via"] == "shell"


def _lost_task(account, support_user, admin_user, *, ago):
    request = revocation_request(account=account, requested_by=support_user, reason="Fraud")
    RevocationRequest.objects.filter(pk=request.pk).update(
        status=RevocationStatus.APPROVED, decided_by=admin_user, decided_at=timezone.now() - ago
    )
    return RevocationRequest.objects.get(pk=request.pk)


def test_a_silent_task_shows_as_stalled_with_retry_and_abandon(
    support_user, admin_user, admin_client_, settings
):
    settings.JANITOR_REVOCATION_STALL_SECONDS = 120
    fresh = _lost_task(AccountFactory(), support_user, admin_user, ago=timedelta(seconds=30))
    lost = _lost_task(AccountFactory(), support_user, admin_user, ago=timedelta(seconds=130))
    assert not fresh.is_stalled and lost.is_stalled

    page = admin_client_.get(reverse("revocation_list")).content.decode()
    assert f'data-testid="retry-{lost.pk}"' in page
    assert f'data-testid="abandon-{lost.pk}"' in page
    assert f'data-testid="retry-{fresh.pk}"' not in page
    assert "Stalled: no word from its task" in page


def test_abandoning_a_failed_revocation_restores_the_previous_access(
    support_user, admin_user, second_admin, admin_client_, monkeypatch
):
    grace_end = timezone.now() + timedelta(days=3)
    account = AccountFactory(access_status=AccessStatus.GRACE_PERIOD, grace_ends_at=grace_end)
    _sessions_fail(monkeypatch, times=5)
    failed = _approved(account, support_user, admin_user)
    account.refresh_from_db()
    assert account.access_status == AccessStatus.REVOKED_PENDING

    refused = admin_client_.post(reverse("revocation_abandon", args=[failed.pk]), {"comment": " "})
    assert refused.status_code == 302
    assert RevocationRequest.objects.get(pk=failed.pk).status == RevocationStatus.FAILED

    admin_client_.post(
        reverse("revocation_abandon", args=[failed.pk]), {"comment": "Customer paid in full"}
    )

    account.refresh_from_db()
    abandoned = RevocationRequest.objects.get(pk=failed.pk)
    assert abandoned.status == RevocationStatus.ABANDONED
    assert account.access_status == AccessStatus.GRACE_PERIOD
    assert account.grace_ends_at == grace_end
    audit = AccessAudit.objects.filter(account=account).order_by("-at", "-id").first()
    assert (audit.from_status, audit.to_status) == (
        AccessStatus.REVOKED_PENDING,
        AccessStatus.GRACE_PERIOD,
    )
    assert audit.actor == admin_user.email and audit.actor_user == admin_user
    assert "Customer paid in full" in audit.reason
    assert abandoned.history[-1]["action"] == "abandon"
    # The Revocations page keeps it in its history, with who gave it up and why.
    history = admin_client_.get(reverse("revocation_list")).content.decode()
    section = history[history.index('id="revocation-history"') :]
    assert "Abandoned, access restored" in section
    assert "Customer paid in full" in section
    # The account may open a new request later: the abandoned one is closed.
    revocation_request(account=account, requested_by=support_user, reason="Again")


def test_a_completed_or_pending_revocation_cannot_be_abandoned(support_user, admin_user):
    done = _approved(AccountFactory(), support_user, admin_user)
    with pytest.raises(RevocationError, match="failed or stalled"):
        revocation_abandon(revocation_id=done.pk, actor=admin_user, reason="oops")
    pending = revocation_request(account=AccountFactory(), requested_by=support_user, reason="x")
    with pytest.raises(RevocationError, match="failed or stalled"):
        revocation_abandon(revocation_id=pending.pk, actor=admin_user, reason="oops")
    with pytest.raises(RevocationError, match="Only an Admin"):
        revocation_abandon(revocation_id=pending.pk, actor=support_user, reason="oops")


def test_automation_cannot_move_an_account_out_of_revoked_pending(support_user, admin_user):
    from accounts.services.access_status import AccessTransitionError, access_status_change

    account = AccountFactory(access_status=AccessStatus.REVOKED_PENDING)
    with pytest.raises(AccessTransitionError):
        access_status_change(
            account=account, to_status=AccessStatus.ACTIVE, actor="system:audit", reason="x"
        )


def test_completing_a_revocation_resolves_the_accounts_flags(support_user, admin_user):
    account = AccountFactory()
    other = AccountFactory()
    for kind in (FlagKind.PAYMENT_FAILED, FlagKind.DISPUTED):
        FlagFactory(account=account, kind=kind)
    FlagFactory(account=other, kind=FlagKind.PAYMENT_FAILED)
    before = overview_get().open_flags_total

    done = _approved(account, support_user, admin_user)

    flags = Flag.objects.filter(account=account)
    assert {f.status for f in flags} == {FlagStatus.RESOLVED}
    assert all(f.resolution.startswith("Account revoked") for f in flags)
    assert {f.resolved_by for f in flags} == {admin_user.email}
    assert FlagNote.objects.filter(flag__account=account, action="resolve").count() == 2
    assert Flag.objects.get(account=other).status == FlagStatus.OPEN
    assert overview_get().open_flags_total == before - 2
    assert done.steps[STEP_AUDIT]["flags_resolved"] == 2


def test_retry_without_a_failed_revocation_is_refused_in_the_shell(admin_user):
    account = AccountFactory()
    with pytest.raises(CommandError, match="no failed or stalled"):
        call_command(
            "revoke_access",
            account.public_id,
            "--retry",
            "--actor",
            admin_user.email,
            stdout=StringIO(),
        )


def test_abandoning_while_the_task_runs_stops_the_task(
    support_user, admin_user, second_admin, monkeypatch, settings
):
    """An Admin abandons a revocation the task is still working on (it looked stalled), between
    two steps: the task must stop, not mark the request failed nor revoke the restored account.
    (An abandon during the session purge itself waits for it: test_revocation_stalls.py.)"""
    settings.JANITOR_REVOCATION_STALL_SECONDS = 0
    account = AccountFactory()
    real = revocation_service.revocation_step_revoke

    def abandoned_meanwhile(*, revocation):
        revocation_abandon(revocation_id=revocation.pk, actor=second_admin, reason="Paid")
        return real(revocation=revocation)

    monkeypatch.setattr(revocation_service, "revocation_step_revoke", abandoned_meanwhile)
    result = _approved(account, support_user, admin_user)

    account.refresh_from_db()
    assert result.status == RevocationStatus.ABANDONED
    assert account.access_status == AccessStatus.ACTIVE
    moves = list(
        AccessAudit.objects.filter(account=account)
        .order_by("at", "id")
        .values_list("from_status", "to_status", "actor")
    )
    assert moves == [
        (AccessStatus.ACTIVE, AccessStatus.REVOKED_PENDING, support_user.email),
        (AccessStatus.REVOKED_PENDING, AccessStatus.ACTIVE, second_admin.email),
    ]
    assert STEP_SESSIONS in result.steps and STEP_REVOKED not in result.steps


def test_a_second_run_after_a_retry_does_not_redo_the_last_step(support_user, admin_user):
    from accounts.services.revocation import revocation_run

    done = _approved(AccountFactory(), support_user, admin_user)
    recorded = dict(done.steps)
    # A retried task that was in fact alive finishes after the first: nothing changes.
    RevocationRequest.objects.filter(pk=done.pk).update(status=RevocationStatus.APPROVED)
    again = revocation_run(revocation_id=done.pk)
    assert again.steps[STEP_AUDIT] == recorded[STEP_AUDIT]
    assert again.steps[STEP_REVOKED] == recorded[STEP_REVOKED]
