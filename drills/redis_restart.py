"""Drill: restart Redis during webhook processing and during a staged revocation."""

from __future__ import annotations

import sys

from _harness import (
    Drill,
    Load,
    Report,
    finish,
    load_options,
    outage_under_load,
    wait_until,
    webhook_drill,
)


def staff(email: str, role: str):
    from django.contrib.auth.models import Group

    from accounts.models import User

    user = User.objects.create(email=email, name=role, is_staff=True, password="!")
    user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions


def customer(email: str):
    """An active account with one member (someone who pays for themselves)."""
    from accounts.models import AccessStatus, Account, User

    account = Account.objects.create(
        email=email, name="Revoked customer", access_status=AccessStatus.ACTIVE
    )
    User.objects.create(
        public_id=account.public_id,
        email=email,
        name=account.name,
        account=account,
        password="!",
    )
    return account


def revocation_requested(role: str, tag: str):
    """A customer, and a revocation request for it by staff in `role`; returns the Admin who
    may approve it (`tag` keeps each scenario's people apart), the account and the request."""
    from accounts.services.revocation import revocation_request

    requester = staff(f"{role.lower()}{tag}@drill.test", role)
    admin = staff(f"admin{tag}@drill.test", "Admin")
    account = customer(f"revoke-me{tag}@example.test")
    request = revocation_request(account=account, requested_by=requester, reason="drill")
    return admin, account, request


def session_open(user) -> str:
    """A signed-in session for `user` in the Redis session store, indexed as a login does."""
    from django.contrib.sessions.backends.cache import SessionStore

    from accounts.services.sessions import session_index_record

    store = SessionStore()
    store["_auth_user_id"] = str(user.pk)
    store.create()
    session_index_record(user=user, session_key=store.session_key)
    return store.session_key


def trail(account) -> list[str]:
    from accounts.models import AccessAudit

    rows = AccessAudit.objects.filter(account=account).order_by("id")
    return [f"{r.from_status}->{r.to_status}" for r in rows]


def webhook_part(drill: Drill, report: Report, load: Load, args) -> None:
    after = outage_under_load(
        drill,
        load,
        args,
        server="Redis",
        how="SIGKILL, no persistence: its queue and cache are gone",
        stop=drill.redis_stop,
        start=drill.redis_start,
    )
    injected = f"Redis SIGKILLed for {args.down:.0f} s mid-stream ({args.deliveries} deliveries)"
    report.check(
        injected,
        "deliveries answered 2xx while Redis is down (the row is the truth), or retried",
        f"{after.refused} non-2xx first time, {after.resent} resent, "
        f"{after.still_refused} still refused",
        not after.still_refused,
    )
    report.check(
        injected,
        "the qcluster keeps running or is restarted; the sweeper re-sends the lost tasks",
        f"qcluster {'survived' if after.survived else 'exited and was restarted'}; "
        f"{after.sweeps} sweep(s)",
        True,
    )
    load.check(report, injected)


def revocation_failed_step(drill: Drill, report: Report) -> None:
    """Redis dies while the worker is at step 2 (ending sessions); an Admin retries."""
    from accounts.models import RevocationStatus
    from accounts.services.revocation import revocation_approve, revocation_retry
    from accounts.tasks import revocation_run_task

    admin, account, request = revocation_requested("Support", "1")
    session_open(account.members.get())
    drill.cluster_kill()  # so the drill, not a worker, plays the worker that meets the outage
    revocation_approve(revocation_id=request.pk, approver=admin)
    drill.redis_stop()
    revocation_run_task(request.pk)  # what the worker runs; step 2 needs Redis
    request.refresh_from_db()
    account.refresh_from_db()
    injected = "Redis down while the staged revocation runs (step 2: end sessions)"
    report.check(
        injected,
        "request failed at step 2, account revoked_pending (new logins refused)",
        f"request {request.status} ({request.last_error[:60]}), account {account.access_status}",
        request.status == RevocationStatus.FAILED
        and account.access_status == "revoked_pending"
        and "sessions" in request.last_error,
    )
    drill.redis_start()
    drill.cluster_start()
    revocation_retry(revocation_id=request.pk, actor=admin)
    wait_until(lambda: _status(request) == RevocationStatus.COMPLETED, 30)
    request.refresh_from_db()
    account.refresh_from_db()
    steps = trail(account)
    report.check(
        "Redis restarted, then revocation_retry by an Admin (queued)",
        "revocation completes: revoked, inactive, audit active->revoked_pending->revoked once",
        f"request {request.status} after {request.attempts} attempts, account "
        f"{account.access_status} (is_active={account.is_active}), audit {', '.join(steps)}",
        request.status == RevocationStatus.COMPLETED
        and account.access_status == "revoked"
        and not account.is_active
        and steps == ["active->revoked_pending", "revoked_pending->revoked"],
    )


def _status(request) -> str:
    from django.db import close_old_connections

    close_old_connections()
    request.refresh_from_db(fields=["status"])
    return request.status


def revocation_lost_task(drill: Drill, report: Report) -> None:
    """Redis restarts after the approval queued the task, before a worker took it."""
    from datetime import timedelta

    from django.core.management import call_command

    from accounts.models import RevocationRequest, RevocationStatus
    from accounts.services.revocation import revocation_approve

    admin, account, request = revocation_requested("Finance", "2")
    drill.cluster_kill()
    revocation_approve(revocation_id=request.pk, approver=admin)
    drill.redis_stop()
    drill.redis_start()
    drill.cluster_start()
    by_itself = wait_until(lambda: _status(request) == RevocationStatus.COMPLETED, 15)
    request.refresh_from_db()
    waited = f"after 15 s: {request.status} (stalled={request.is_stalled})"
    retry_answer = "not needed"
    if not by_itself:
        # The drill's clock jump: the request was approved longer ago than STALLED_AFTER.
        stall = getattr(RevocationRequest, "STALLED_AFTER", timedelta(minutes=10))
        RevocationRequest.objects.filter(pk=request.pk).update(
            decided_at=request.decided_at - stall - timedelta(minutes=1)
        )
        try:
            call_command(
                "revoke_access", account.public_id, "--retry", "--actor", admin.email,
                stdout=open("/dev/null", "w"),
            )  # fmt: skip
            retry_answer = "revoke_access --retry ran"
        except Exception as exc:  # the command refuses: that is what this drill reports
            retry_answer = f"revoke_access --retry refused: {exc}"
    request.refresh_from_db()
    account.refresh_from_db()
    steps = trail(account)
    report.check(
        "Redis restarted between the approval (task queued) and a worker taking it",
        "the lost task is detected (stalled) and revoke_access --retry completes the revocation",
        f"{waited}; {retry_answer} (decided_at moved back past STALLED_AFTER); request "
        f"{request.status}, account {account.access_status}, audit {', '.join(steps)}",
        request.status == RevocationStatus.COMPLETED
        and account.access_status == "revoked"
        and steps == ["active->revoked_pending", "revoked_pending->revoked"],
    )


def revocation_approved_while_down(drill: Drill, report: Report) -> None:
    """Redis is down when the Admin approves: the task cannot be queued at all."""
    from accounts.models import RevocationStatus
    from accounts.services.revocation import revocation_approve, revocation_retry

    admin, account, request = revocation_requested("Support", "3")
    drill.redis_stop()
    try:
        revocation_approve(revocation_id=request.pk, approver=admin)
        answer = "approve returned"
    except Exception as exc:  # what the Admin's click meets
        answer = f"approve raised {type(exc).__name__}"
    request.refresh_from_db()
    account.refresh_from_db()
    at_approval = f"{answer}; request {request.status}, account {account.access_status}"
    report.check(
        "Redis down when an Admin approves (the task cannot be queued)",
        "the request says so: failed (retryable) or still pending, never approved-and-idle",
        at_approval,
        request.status in {RevocationStatus.FAILED, RevocationStatus.PENDING},
    )
    drill.redis_start()
    if request.status == RevocationStatus.FAILED:
        revocation_retry(revocation_id=request.pk, actor=admin)
    wait_until(lambda: _status(request) == RevocationStatus.COMPLETED, 30)
    request.refresh_from_db()
    account.refresh_from_db()
    report.check(
        "Redis back, then revocation_retry by an Admin (queued)",
        "revocation completes",
        f"request {request.status} after {request.attempts} attempt(s), account "
        f"{account.access_status}",
        request.status == RevocationStatus.COMPLETED and account.access_status == "revoked",
    )


def main() -> int:
    parser = load_options(__doc__, deliveries=600, customers=100, rate=40.0, seed=11)
    parser.add_argument("--down", type=float, default=5.0, help="seconds Redis stays down")
    drill, report, load, args = webhook_drill(
        "Redis restarted during webhooks and a revocation", parser
    )
    drill.app_start()
    webhook_part(drill, report, load, args)
    revocation_failed_step(drill, report)
    revocation_lost_task(drill, report)
    revocation_approved_while_down(drill, report)
    return finish(report)


if __name__ == "__main__":
    sys.exit(main())
