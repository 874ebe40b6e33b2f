"""Revocation requests and the staged revocation they trigger once approved; restoring access."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import (
    AccessAudit,
    AccessStatus,
    Account,
    ApiToken,
    RevocationRequest,
    RevocationStatus,
    User,
)
from accounts.services.access_status import access_status_change
from accounts.services.sessions import sessions_revoke_account
from janitor.errors import ErrorKind, JanitorError
from janitor.services import notify
from janitor.services.schedules import minute_schedules_ensure
from products.models import SessionRevocation
from products.services.session_revocations import (
    session_revocation_rows,
    session_revocation_summary,
    session_revocations_reask,
    session_revocations_request,
)
from products.session_store import (
    SessionOwner,
    product_session_store_configured,
    product_sessions_delete,
)

logger = logging.getLogger(__name__)

OPEN_STATUSES = (RevocationStatus.PENDING, RevocationStatus.APPROVED, RevocationStatus.FAILED)

STEP_PENDING = "1_revoked_pending"
# Janitor's own sessions (and, in direct mode, the product's keys) ended, while the products
# that hold sessions have not all confirmed yet. Only written when some product was asked.
STEP_SESSIONS_LOCAL = "2_local_sessions_ended"
STEP_SESSIONS = "2_sessions_ended"
STEP_REVOKED = "3_revoked"
STEP_AUDIT = "4_audited"
STEP_LABELS = {
    STEP_PENDING: "access_status = revoked_pending (new logins refused)",
    STEP_SESSIONS_LOCAL: (
        "Janitor's own sessions ended; waiting for every product that holds sessions to confirm"
    ),
    STEP_SESSIONS: (
        "every member's sessions deleted from the session store, session versions bumped, "
        "every product that holds sessions confirmed"
    ),
    STEP_REVOKED: "access_status = revoked, is_active = false (no member can sign in)",
    STEP_AUDIT: "audit row written",
}


class RevocationError(JanitorError):
    """A request or decision the rules refuse; the message is fit to show to staff."""


def _source(revocation: RevocationRequest) -> str:
    return f"revocation:{revocation.pk}"


def revocation_request(
    *,
    account: Account,
    requested_by: User,
    reason: str,
    reference: str = "",
    announce: bool = True,
) -> RevocationRequest:
    """Open a revocation request for `account`; it waits for an Admin's approval (the other
    Admins are told, unless `announce` is off: the shell's incident path approves at once)."""
    if not requested_by.has_perm("accounts.request_revocation"):
        raise RevocationError("Your role cannot request revocations.")
    if not reason.strip():
        raise RevocationError("A reason is required.")
    account.refresh_from_db(fields=["access_status", "is_active"])
    if account.access_status in {AccessStatus.REVOKED, AccessStatus.REVOKED_PENDING}:
        raise RevocationError("This account is already revoked or being revoked.")
    try:
        with transaction.atomic():
            revocation = RevocationRequest.objects.create(
                account=account,
                requested_by=requested_by,
                reason=reason.strip(),
                reference=reference.strip(),
            )
            if announce:
                notify.revocation_waiting(revocation=revocation)
            return revocation
    except IntegrityError:
        # The partial unique index: one open request per account.
        raise RevocationError("This account already has an open revocation request.") from None


def _decide(
    *, revocation_id: int, approver: User, to_status: str, comment: str
) -> RevocationRequest:
    if not approver.has_perm("accounts.approve_revocation"):
        raise RevocationError("Only an Admin can approve or reject revocations.")
    with transaction.atomic():
        # The row lock serialises concurrent decisions: the second one sees the first's result.
        revocation = RevocationRequest.objects.select_for_update().get(pk=revocation_id)
        if revocation.status != RevocationStatus.PENDING:
            raise RevocationError(
                f"This request is already {revocation.get_status_display().lower()}."
            )
        if revocation.requested_by_id == approver.pk:
            raise RevocationError("You requested this revocation: another Admin must decide it.")
        # After the lookup: an unknown request is DoesNotExist (a 404), not a "say why".
        if to_status == RevocationStatus.REJECTED and not comment.strip():
            raise RevocationError("Say why the request is rejected.")
        revocation.status = to_status
        revocation.decided_by = approver
        revocation.decided_at = timezone.now()
        revocation.decision_comment = comment.strip()
        revocation.save(update_fields=["status", "decided_by", "decided_at", "decision_comment"])
    return revocation


def revocation_approve(
    *, revocation_id: int, approver: User, comment: str = ""
) -> RevocationRequest:
    """Approve a pending request (not one's own) and queue the staged revocation, once."""
    revocation = _decide(
        revocation_id=revocation_id,
        approver=approver,
        to_status=RevocationStatus.APPROVED,
        comment=comment,
    )
    _enqueue(revocation)
    revocation.refresh_from_db()
    return revocation


def revocation_reject(*, revocation_id: int, approver: User, comment: str) -> RevocationRequest:
    """Reject a pending request; the account keeps its access. A comment says why."""
    with transaction.atomic():
        revocation = _decide(
            revocation_id=revocation_id,
            approver=approver,
            to_status=RevocationStatus.REJECTED,
            comment=comment,
        )
        notify.revocation_decided(revocation=revocation)
    return revocation


def _history_entry(action: str, actor: User, **extra: object) -> dict[str, object]:
    return {"action": action, "by": actor.email, "at": timezone.now().isoformat(), **extra}


def revocation_retry(
    *, revocation_id: int, actor: User, enqueue: bool = True, via: str = "dashboard"
) -> RevocationRequest:
    """Run a failed (or stalled: approved, its task lost) staged revocation again from where it
    stopped (queued, or by the caller). Who retried, when and from where is kept in the
    request's history and carried into the final step's audit row."""
    if not actor.has_perm("accounts.approve_revocation"):
        raise RevocationError("Only an Admin can retry a revocation.")
    with transaction.atomic():
        revocation = RevocationRequest.objects.select_for_update().get(pk=revocation_id)
        _refuse_while_purging(revocation)
        if revocation.status != RevocationStatus.FAILED and not revocation.is_stalled:
            raise RevocationError("Only a failed or stalled revocation can be retried.")
        was = "stalled" if revocation.status == RevocationStatus.APPROVED else "failed"
        revocation.status = RevocationStatus.APPROVED
        # The products that have not confirmed are asked again, with a new deadline, in the
        # retry's own transaction.
        asked_again = session_revocations_reask(revocation=revocation, now=timezone.now())
        extra: dict[str, object] = {"asked_again": asked_again} if asked_again else {}
        revocation.history = [
            *(revocation.history or []),
            _history_entry("retry", actor, via=via, was=was, **extra),
        ]
        revocation.save(update_fields=["status", "history"])
    if enqueue:
        _enqueue(revocation)
    revocation.refresh_from_db()
    return revocation


def _refuse_while_purging(revocation: RevocationRequest) -> None:
    if revocation.is_purging:
        assert revocation.purge_started_at is not None  # is_purging
        raise RevocationError(
            "Step 2 is ending this account's sessions right now (since "
            f"{revocation.purge_started_at:%H:%M:%S} UTC): wait for it, then look again."
        )


def revocation_abandon(*, revocation_id: int, actor: User, reason: str) -> RevocationRequest:
    """Give up a failed or stalled revocation: the account gets back the access it had before
    step 1, through the audited transition, and the request is closed as abandoned.

    A revocation that reached step 3 (revoked) is complete, not abandonable: restore it instead.
    """
    if not actor.has_perm("accounts.approve_revocation"):
        raise RevocationError("Only an Admin can abandon a revocation.")
    with transaction.atomic():
        revocation = RevocationRequest.objects.select_for_update().get(pk=revocation_id)
        if not reason.strip():
            raise RevocationError("Say why the revocation is abandoned.")
        _refuse_while_purging(revocation)
        if revocation.status != RevocationStatus.FAILED and not revocation.is_stalled:
            raise RevocationError("Only a failed or stalled revocation can be abandoned.")
        account = Account.objects.select_for_update().get(pk=revocation.account_id)
        if account.access_status == AccessStatus.REVOKED:
            raise RevocationError(
                "The account is already revoked: restore its access instead of abandoning."
            )
        before = (revocation.steps or {}).get(STEP_PENDING, {})
        previous = before.get("previous_status") or AccessStatus.ACTIVE
        audit_id = None
        if account.access_status == AccessStatus.REVOKED_PENDING:
            grace_ends_at = None
            if previous == AccessStatus.GRACE_PERIOD:
                stored = before.get("previous_grace_ends_at")
                grace_ends_at = datetime.fromisoformat(stored) if stored else timezone.now()
            audit = access_status_change(
                account=account,
                to_status=previous,
                actor=actor.email,
                actor_user=actor,
                reason=f"Revocation abandoned: {reason.strip()}",
                reference=revocation.reference,
                source=_source(revocation),
                grace_ends_at=grace_ends_at,
                # What the steps already did stays on the record: a member signed out by
                # step 2 keeps access back but lost their sessions.
                details={
                    "request_id": revocation.pk,
                    "abandoned": True,
                    "steps_done": sorted(revocation.steps or {}),
                    "sessions_removed": revocation.sessions_removed or 0,
                },
            )
            audit_id = audit.pk
        revocation.status = RevocationStatus.ABANDONED
        revocation.completed_at = timezone.now()
        revocation.history = [
            *(revocation.history or []),
            _history_entry(
                "abandon", actor, reason=reason.strip(), restored=previous, audit_id=audit_id
            ),
        ]
        revocation.save(update_fields=["status", "completed_at", "history"])
    return revocation


def revocation_run_now(
    *,
    account: Account,
    actor: User,
    reason: str,
    reference: str = "",
    on_step: Callable[[str, dict[str, Any]], None] | None = None,
) -> RevocationRequest:
    """The incident path (manage.py revoke_access): record an approved request, run it inline.

    Shell access stands in for the second person, so the actor must be an Admin and the
    request says it came from the shell.
    """
    if not (actor.is_staff and actor.is_active and actor.has_perm("accounts.approve_revocation")):
        raise RevocationError(f"{actor.email} is not an Admin: only Admins revoke from the shell.")
    revocation = revocation_request(
        account=account, requested_by=actor, reason=reason, reference=reference, announce=False
    )
    RevocationRequest.objects.filter(pk=revocation.pk).update(
        status=RevocationStatus.APPROVED,
        decided_at=timezone.now(),
        decision_comment="Run from the shell (manage.py revoke_access).",
    )
    return revocation_run(revocation_id=revocation.pk, on_step=on_step)


def _enqueue(revocation: RevocationRequest) -> None:
    """Queue the staged run; if the queue cannot take it, the request becomes failed (and
    retryable) instead of staying approved with nothing running."""
    from django_q.tasks import async_task

    try:
        async_task(
            "accounts.tasks.revocation_run_task",
            revocation.pk,
            task_name=f"revocation-{revocation.pk}-{revocation.attempts + 1}",
            group="revocation",
        )
    except Exception as exc:  # broker down: say so where an admin will see it
        RevocationRequest.objects.filter(pk=revocation.pk, status=RevocationStatus.APPROVED).update(
            status=RevocationStatus.FAILED,
            last_error=f"could not queue the revocation: {exc.__class__.__name__}: {exc}"[:2000],
        )


def _enqueue_resume(revocation_id: int) -> None:
    """Continue a revocation that waited for the products, now (the last one confirmed). If the
    queue cannot take it, the periodic check (revocations_waiting_check) continues it."""
    from django_q.tasks import async_task

    try:
        async_task(
            "accounts.tasks.revocation_resume_task",
            revocation_id,
            task_name=f"revocation-{revocation_id}-confirmed",
            group="revocation",
        )
    except Exception:  # broker down: the schedule's next check picks it up
        logger.warning(
            "could not queue the continuation of revocation %s", revocation_id, exc_info=True
        )


def revocation_run(
    *,
    revocation_id: int,
    on_step: Callable[[str, dict[str, Any]], None] | None = None,
    resume: bool = False,
) -> RevocationRequest:
    """The staged revocation of docs/design.md, for an approved request.

    Each step is skipped when already done, so a retry resumes where a failure stopped.
    A failure leaves the account revoked_pending and the request failed with the error.
    While products that hold sessions have not all confirmed, the run stops and the request
    stays approved (waiting); `resume` continues it (a confirmation, the periodic check)
    without counting a new attempt.
    """
    with transaction.atomic():
        revocation = (
            RevocationRequest.objects.select_related("account", "requested_by", "decided_by")
            .select_for_update(of=("self",))
            .get(pk=revocation_id)
        )
        if revocation.status != RevocationStatus.APPROVED:
            return revocation  # already run, rejected, or waiting: a redelivered task is a no-op
        update_fields = ["reported_at"]
        if not resume:
            revocation.attempts += 1
            revocation.last_error = ""
            update_fields += ["attempts", "last_error"]
        revocation.reported_at = timezone.now()
        revocation.save(update_fields=update_fields)

    for step in (revocation_step_pending, revocation_step_sessions, revocation_step_revoke):
        try:
            done = step(revocation=revocation)
        except NoLongerApproved:
            # Abandoned (or finished by another run of a retried task) meanwhile: the request
            # says what happened; this run stops without touching it.
            revocation.refresh_from_db()
            return revocation
        except AwaitingConfirmation as waiting:
            # Step 2 is not done until every product confirms: the request stays approved;
            # a confirmation or the periodic check continues it.
            revocation.refresh_from_db()
            if on_step:
                for name in waiting.done:
                    on_step(name, revocation.steps[name])
                on_step("waiting", {"waiting_for": waiting.waiting_for})
            return revocation
        except ConfirmationOverdue:
            # Already marked failed, under the row lock that saw the deadline pass.
            revocation.refresh_from_db()
            notify.revocation_stuck(revocation=revocation, why="failed")
            if on_step:
                on_step("failed", {"error": revocation.last_error})
            return revocation
        except Exception as exc:  # any failure: record it, stay revoked_pending, allow retry
            marked = RevocationRequest.objects.filter(
                pk=revocation.pk, status=RevocationStatus.APPROVED
            ).update(
                status=RevocationStatus.FAILED,
                last_error=f"{step.__name__}: {exc.__class__.__name__}: {exc}"[:2000],
                purge_started_at=None,
            )
            revocation.refresh_from_db()
            if not marked:
                return revocation
            notify.revocation_stuck(revocation=revocation, why="failed")
            if on_step:
                on_step("failed", {"error": revocation.last_error})
            return revocation
        if on_step:
            for name in done:
                on_step(name, revocation.steps[name])
    return revocation


class NoLongerApproved(Exception):
    """The request left "approved" while a staged run was on it (abandoned, or completed by
    a second run after a retry): the run stops."""


class AwaitingConfirmation(Exception):
    """Step 2 waits for products that hold sessions to confirm they ended them."""

    def __init__(self, waiting_for: list[str], done: list[str]):
        super().__init__(", ".join(waiting_for))
        self.waiting_for = waiting_for
        self.done = done  # steps this run completed before it began to wait


class ConfirmationOverdue(Exception):
    """A product did not confirm before its deadline: the request is now failed (retryable)."""


def _still_approved(revocation: RevocationRequest) -> None:
    """Lock the request (inside the caller's transaction), check it is still approved, and
    take the steps another run may have done since: decide at the moment of writing."""
    current = (
        RevocationRequest.objects.select_for_update()
        .only("status", "steps", "sessions_removed", "purge_started_at")
        .get(pk=revocation.pk)
    )
    if current.status != RevocationStatus.APPROVED:
        raise NoLongerApproved(current.status)
    revocation.steps = dict(current.steps or {})
    revocation.sessions_removed = current.sessions_removed
    revocation.purge_started_at = current.purge_started_at


def _record_step(
    revocation: RevocationRequest,
    name: str,
    started: float,
    also: tuple[str, ...] = (),
    ms: float | None = None,
    **extra: object,
) -> None:
    """Keep a step's time: `started` is taken just before the step's own work, and the time is
    read before this bookkeeping write (or given as `ms` when measured inside a call)."""
    if ms is None:
        ms = round((time.perf_counter() - started) * 1000, 2)
    revocation.reported_at = timezone.now()
    revocation.steps[name] = {"at": revocation.reported_at.isoformat(), "ms": ms, **extra}
    revocation.save(update_fields=["steps", "reported_at", *also])


def _audit_fields(revocation: RevocationRequest) -> dict[str, Any]:
    return {
        "actor": revocation.requested_by.email,
        "actor_user": revocation.requested_by,
        "approver": revocation.decided_by,
        "reason": revocation.reason,
        "reference": revocation.reference,
        "source": _source(revocation),
    }


def revocation_step_pending(*, revocation: RevocationRequest) -> list[str]:
    """Step 1: revoked_pending, so new logins are refused at once (committed on its own)."""
    with transaction.atomic():
        _still_approved(revocation)
        if STEP_PENDING in revocation.steps:
            return []
        started = time.perf_counter()
        account = Account.objects.select_for_update().get(pk=revocation.account_id)
        previous = {
            "previous_status": account.access_status,
            "previous_grace_ends_at": account.grace_ends_at.isoformat()
            if account.grace_ends_at
            else None,
        }
        if account.access_status not in {AccessStatus.REVOKED_PENDING, AccessStatus.REVOKED}:
            access_status_change(
                account=account,
                to_status=AccessStatus.REVOKED_PENDING,
                details={"request_id": revocation.pk, "step": STEP_PENDING},
                **_audit_fields(revocation),
            )
        else:
            previous["previous_status"] = ""  # already pending: nothing of ours to give back
        _record_step(
            revocation,
            STEP_PENDING,
            started,
            previous_status=previous["previous_status"],
            previous_grace_ends_at=previous["previous_grace_ends_at"],
        )
    return [STEP_PENDING]


def _session_owners(account_id: int) -> list[SessionOwner]:
    return [
        SessionOwner(user_public_id=public_id, email=email, account_public_id=account_public_id)
        for public_id, email, account_public_id in User.objects.filter(account_id=account_id)
        .order_by("pk")
        .values_list("public_id", "email", "account__public_id")
    ]


def revocation_step_sessions(*, revocation: RevocationRequest) -> list[str]:
    """Step 2: end every session. Janitor's own: delete every indexed session and bump the
    session version (kills the rest); in direct mode, the product's session keys too. Each
    product endpoint that holds sessions is asked (an access.sessions_revoke event) and the
    step is done only when every one has confirmed; until then AwaitingConfirmation, and past
    a product's deadline the request fails retryable (ConfirmationOverdue)."""
    with transaction.atomic():
        _still_approved(revocation)
        if STEP_SESSIONS in revocation.steps:
            return []
        # Alive: a slow purge of many sessions must not look like a lost task.
        revocation.reported_at = timezone.now()
        RevocationRequest.objects.filter(pk=revocation.pk).update(
            reported_at=revocation.reported_at
        )
        # Asked first, so the products end theirs while Janitor ends its own. Idempotent: a
        # product asked by an earlier run is not asked again (a retry re-asks, see retry).
        asked = session_revocations_request(revocation=revocation, now=revocation.reported_at)
    done: list[str] = []
    if STEP_SESSIONS_LOCAL not in revocation.steps:
        done = _sessions_end_local(revocation, wait=bool(asked))
        if STEP_SESSIONS in done:
            return done  # nobody to wait for: step 2 is complete, as it always was
    return done + _sessions_confirmed(revocation, done=done)


def _sessions_end_local(revocation: RevocationRequest, *, wait: bool) -> list[str]:
    """End Janitor's own sessions (and the product's keys in direct mode), then record it: as
    the whole step 2 when no product was asked, as the local part otherwise.

    Claimed under the request's row lock (purge_started_at), done outside any transaction,
    recorded under the lock again. While it runs an Admin's abandon or retry is refused
    (is_purging): before, an abandon of a purge slow enough to look stalled gave the account
    its access back while the purge went on to sign every member out, with nothing recorded.
    Outside a transaction, the purge holds no lock anything else waits on (a product's
    confirmation, the embedded default's one writer) however long the product's Redis takes.
    """
    with transaction.atomic():
        _still_approved(revocation)
        if STEP_SESSIONS_LOCAL in revocation.steps or STEP_SESSIONS in revocation.steps:
            return []  # another run of this request recorded it meanwhile
        if revocation.is_purging:
            return []  # another run is ending them right now; it records them
        revocation.purge_started_at = timezone.now()
        RevocationRequest.objects.filter(pk=revocation.pk).update(
            purge_started_at=revocation.purge_started_at, reported_at=revocation.purge_started_at
        )
    started = time.perf_counter()
    try:
        per_member = sessions_revoke_account(account=revocation.account)
        direct: dict[str, int] | None = None
        if product_session_store_configured():
            direct = product_sessions_delete(owners=_session_owners(revocation.account_id))
    except Exception:
        # Nothing recorded: the claim goes, so a retry may run at once.
        RevocationRequest.objects.filter(pk=revocation.pk).update(purge_started_at=None)
        raise
    ms = round((time.perf_counter() - started) * 1000, 2)
    removed = sum(per_member.values())
    given_up: NoLongerApproved | None = None
    with transaction.atomic():
        try:
            _still_approved(revocation)
        except NoLongerApproved as gone:
            given_up = gone
        else:
            name = _sessions_local_record(
                revocation, wait=wait, per_member=per_member, direct=direct, started=started, ms=ms
            )
    if given_up is not None:
        # Given up after the claim ran out (a purge longer than a task may run): the request
        # says what the purge did, since it did it (after that transaction, not rolled back
        # with it).
        RevocationRequest.objects.filter(pk=revocation.pk).update(
            purge_started_at=None, sessions_removed=(revocation.sessions_removed or 0) + removed
        )
        logger.warning(
            "revocation %s: %s session(s) ended after it was no longer approved",
            revocation.pk,
            removed,
        )
        raise given_up
    return [name]


def _sessions_local_record(
    revocation: RevocationRequest,
    *,
    wait: bool,
    per_member: dict[int, int],
    direct: dict[str, int] | None,
    started: float,
    ms: float,
) -> str:
    """Record what the purge ended (under the request's lock, in the caller's transaction)."""
    removed = sum(per_member.values())
    revocation.purge_started_at = None
    # Every member's session hash changes: a session the index never saw dies too.
    User.objects.filter(account_id=revocation.account_id).update(
        session_version=F("session_version") + 1
    )
    revocation.sessions_removed = (revocation.sessions_removed or 0) + removed
    # Members' emails, not ids: the audit row must say who lost which sessions.
    emails = dict(User.objects.filter(pk__in=list(per_member)).values_list("pk", "email"))
    ended = (revocation.steps.get(STEP_SESSIONS) or {}).get("per_member") or {}
    for pk, count in per_member.items():
        if count:
            ended[emails.get(pk, str(pk))] = ended.get(emails.get(pk, str(pk)), 0) + count
    extra: dict[str, Any] = {}
    if direct is not None:
        extra["product_keys_deleted"] = sum(direct.values())
        extra["product_keys_per_member"] = {pid: n for pid, n in direct.items() if n}
    name = STEP_SESSIONS_LOCAL if wait else STEP_SESSIONS
    _record_step(
        revocation,
        name,
        started,
        ms=ms,
        sessions_removed=removed,
        members=len(per_member),
        per_member=ended,
        also=("sessions_removed", "purge_started_at"),
        **extra,
    )
    return name


def _sessions_confirmed(revocation: RevocationRequest, *, done: list[str]) -> list[str]:
    """Decide, under the request's row lock, whether every product asked has confirmed: then
    step 2 is recorded; past a deadline the request is marked failed in the same transaction;
    otherwise the run waits. (Raised after the transaction commits, never inside it.)"""
    with transaction.atomic():
        _still_approved(revocation)
        if STEP_SESSIONS in revocation.steps:
            return []
        now = timezone.now()
        revocation.reported_at = now  # alive: waiting is not stalling
        if STEP_SESSIONS_LOCAL not in revocation.steps:
            # Another run is ending the local sessions right now; it decides after that.
            waiting_for: list[str] | None = []
            overdue_error = ""
        else:
            waiting_for, overdue_error = _sessions_decide(revocation, now)
        if overdue_error:
            revocation.status = RevocationStatus.FAILED
            revocation.last_error = overdue_error[:2000]
            revocation.save(update_fields=["status", "last_error", "reported_at"])
        elif waiting_for is not None:
            RevocationRequest.objects.filter(pk=revocation.pk).update(reported_at=now)
        else:
            revocation.save(update_fields=["steps", "reported_at"])
    if overdue_error:
        raise ConfirmationOverdue(overdue_error)
    if waiting_for is not None:
        raise AwaitingConfirmation(waiting_for, done)
    return [STEP_SESSIONS]


def _sessions_decide(revocation: RevocationRequest, now: datetime) -> tuple[list[str] | None, str]:
    """(products still waited for, or None when step 2 is complete and now recorded in
    revocation.steps; the failure when a deadline passed, else "")."""
    rows = session_revocation_rows(revocation=revocation)
    waiting = [row for row in rows if row.is_waited_for]
    if waiting:
        seconds = settings.JANITOR_REVOCATION_CONFIRM_SECONDS
        overdue = [row for row in waiting if now >= row.deadline]
        error = "; ".join(
            f"waiting for {row.endpoint.name}: no confirmation in {seconds} s" for row in overdue
        )
        return [row.endpoint.name for row in waiting], error
    local = revocation.steps[STEP_SESSIONS_LOCAL]
    confirmed = [row for row in rows if row.confirmed_at is not None]
    not_waited = [row.endpoint.name for row in rows if row.confirmed_at is None]
    extra: dict[str, Any] = {
        key: local[key]
        for key in ("product_keys_deleted", "product_keys_per_member")
        if key in local
    }
    if not_waited:
        # Disabled, or no longer holding sessions, since it was asked: not waited for.
        extra["products_not_waited_for"] = not_waited
    revocation.steps[STEP_SESSIONS] = {
        "at": now.isoformat(),
        "ms": local.get("ms", 0),
        "sessions_removed": local.get("sessions_removed", 0),
        "members": local.get("members", 0),
        "per_member": local.get("per_member", {}),
        "products": [session_revocation_summary(row) for row in confirmed],
        "product_sessions_ended": sum(row.sessions_ended or 0 for row in confirmed),
        **extra,
    }
    return None, ""


def _flags_resolve_revoked(revocation: RevocationRequest) -> int:
    """Close the account's open flags: support has nothing left to work on a revoked account."""
    from reconciliation.services.flags import flags_resolve_revoked

    decider = revocation.decided_by or revocation.requested_by
    return flags_resolve_revoked(
        account=revocation.account,
        resolution=f"Account revoked (revocation request #{revocation.pk}).",
        actor=decider.email,
        author=decider,
    )


def revocation_step_revoke(*, revocation: RevocationRequest) -> list[str]:
    """Steps 3 and 4: revoked + inactive, and the audit row that carries the whole story.

    One transaction, so the account is never revoked without its audit row (nor the reverse).
    Step 3's time is the status write alone, step 4's the audit insert alone (measured inside
    access_status_change). Completing also resolves the account's open flags.
    """
    with transaction.atomic():
        _still_approved(revocation)
        if STEP_AUDIT in revocation.steps:
            return []
        account = Account.objects.select_for_update().get(pk=revocation.account_id)
        timings: dict[str, float] = {"status_ms": 0.0, "audit_ms": 0.0}
        audit_id = None
        if account.access_status != AccessStatus.REVOKED:
            audit = access_status_change(
                account=account,
                to_status=AccessStatus.REVOKED,
                details={
                    "request_id": revocation.pk,
                    "requested_by": revocation.requested_by.email,
                    "approved_by": revocation.decided_by.email if revocation.decided_by else "",
                    "requested_at": revocation.created_at.isoformat(),
                    "approved_at": revocation.decided_at.isoformat()
                    if revocation.decided_at
                    else "",
                    "decision_comment": revocation.decision_comment,
                    "sessions_removed": revocation.sessions_removed or 0,
                    "sessions_ended_per_member": (
                        (revocation.steps.get(STEP_SESSIONS) or {}).get("per_member") or {}
                    ),
                    # Which products confirmed they ended their sessions, when, and how many;
                    # and the product's keys Janitor deleted itself (direct mode).
                    "product_sessions": (revocation.steps.get(STEP_SESSIONS) or {}).get(
                        "products", []
                    ),
                    "product_keys_deleted": (revocation.steps.get(STEP_SESSIONS) or {}).get(
                        "product_keys_deleted"
                    ),
                    "attempts": revocation.attempts,
                    "retries": [
                        entry
                        for entry in (revocation.history or [])
                        if entry.get("action") == "retry"
                    ],
                    "steps": dict(revocation.steps),
                },
                timings=timings,
                **_audit_fields(revocation),
            )
            audit_id = audit.pk
        now = timezone.now().isoformat()
        revocation.steps[STEP_REVOKED] = {"at": now, "ms": timings["status_ms"]}
        revocation.steps[STEP_AUDIT] = {"at": now, "ms": timings["audit_ms"], "audit_id": audit_id}
        flags_closed = _flags_resolve_revoked(revocation)
        if flags_closed:
            revocation.steps[STEP_AUDIT]["flags_resolved"] = flags_closed
        revocation.status = RevocationStatus.COMPLETED
        revocation.completed_at = timezone.now()
        revocation.reported_at = revocation.completed_at
        revocation.save(update_fields=["steps", "status", "completed_at", "reported_at"])
        notify.revocation_decided(revocation=revocation)
    return [STEP_REVOKED, STEP_AUDIT]


def access_restore(
    *, account: Account, actor: User, reason: str, reference: str = ""
) -> AccessAudit:
    """Admin only: give a revoked account its access back, audited. Its members can sign in
    again (each one's own enabled switch still applies)."""
    if not actor.has_perm("accounts.restore_access"):
        raise RevocationError("Only an Admin can restore access.")
    if not reason.strip():
        raise RevocationError("A reason is required.")
    account.refresh_from_db(fields=["access_status", "is_active"])
    if account.access_status != AccessStatus.REVOKED:
        raise RevocationError("Only a revoked account can be restored.")
    last = (
        RevocationRequest.objects.filter(account=account, status=RevocationStatus.COMPLETED)
        .order_by("-completed_at")
        .first()
    )
    return access_status_change(
        account=account,
        to_status=AccessStatus.ACTIVE,
        actor=actor.email,
        actor_user=actor,
        reason=reason,
        reference=reference,
        source=_source(last) if last else "restore",
        details={"restored_from_request": last.pk if last else None},
    )


class SessionConfirmationNotFound(LookupError):
    """No such revocation, or it never asked this token's product: a 404 (the same answer for
    both, so a product learns nothing of revocations that are not its own)."""


class SessionConfirmationRefused(JanitorError):
    """The revocation no longer waits for a confirmation (completed or abandoned): a 409."""

    kind = ErrorKind.CONFLICT


@dataclass(frozen=True)
class SessionConfirmation:
    revocation_id: int
    # Products the revocation still waits for after this confirmation, by name.
    waiting_for: list[str]
    # False when this product had already confirmed: a repeated confirmation changes nothing.
    recorded: bool


def revocation_sessions_confirm(
    *, revocation_id: int, token: ApiToken, sessions_ended: int | None = None
) -> SessionConfirmation:
    """A product says it ended the account's sessions for this revocation (POST
    /api/v1/revocations/<id>/confirm with its endpoint's token). Recorded once; when it was the
    last one awaited, the staged revocation continues at once through the queue. A late
    confirmation on a failed request is recorded too, so its retry passes step 2."""
    with transaction.atomic():
        # The same lock the staged run decides under: a confirmation and a deadline never race.
        revocation = RevocationRequest.objects.select_for_update().filter(pk=revocation_id).first()
        rows = (
            list(
                SessionRevocation.objects.select_for_update(of=("self",))
                .filter(revocation=revocation, endpoint__token=token)
                .select_related("endpoint")
            )
            if revocation is not None
            else []
        )
        if revocation is None or not rows:
            raise SessionConfirmationNotFound(
                f"Revocation {revocation_id} did not ask this token's product to end sessions."
            )
        unconfirmed = [row for row in rows if row.confirmed_at is None]
        if unconfirmed:
            if revocation.status not in (RevocationStatus.APPROVED, RevocationStatus.FAILED):
                raise SessionConfirmationRefused(
                    f"Revocation {revocation_id} is "
                    f"{revocation.get_status_display().lower()}: it no longer waits for a "
                    "confirmation."
                )
            now = timezone.now()
            for row in unconfirmed:
                row.confirmed_at = now
                row.sessions_ended = sessions_ended
            SessionRevocation.objects.bulk_update(unconfirmed, ["confirmed_at", "sessions_ended"])
        waiting_for = [
            row.endpoint.name
            for row in session_revocation_rows(revocation=revocation)
            if row.is_waited_for
        ]
        resume = (
            bool(unconfirmed)
            and revocation.status == RevocationStatus.APPROVED
            and not waiting_for
            and STEP_SESSIONS not in (revocation.steps or {})
        )
    if resume:
        _enqueue_resume(revocation.pk)
    return SessionConfirmation(
        revocation_id=revocation.pk, waiting_for=waiting_for, recorded=bool(unconfirmed)
    )


def revocations_waiting_check() -> int:
    """Every minute: continue each approved revocation that waits for products to confirm, so
    it completes (a confirmation whose continuation was lost), keeps waiting (and shows it is
    alive), or fails once a deadline has passed. Returns how many were checked."""
    ids = list(
        RevocationRequest.objects.filter(
            status=RevocationStatus.APPROVED, session_revocations__isnull=False
        )
        .exclude(steps__has_key=STEP_SESSIONS)
        .values_list("pk", flat=True)
        .distinct()
        .order_by("pk")
    )
    for revocation_id in ids:
        revocation_run(revocation_id=revocation_id, resume=True)
    return len(ids)


REVOCATION_WAITING_SCHEDULE = (
    "revocations: waiting for products",
    "accounts.tasks.revocations_waiting_task",
    1,
)


def revocation_schedules_ensure() -> list[str]:
    """Create or correct the schedule that re-checks revocations waiting for products."""
    return minute_schedules_ensure([REVOCATION_WAITING_SCHEDULE])
