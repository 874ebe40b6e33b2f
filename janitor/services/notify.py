"""What each event tells whom: one function per occasion, called in the writer's transaction.

Finance hears of disputes; Admins of what waits on them or broke; Support gets a morning
digest; a revocation's requester hears how it ended; a customer hears of a grace period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccessStatus, Account, RevocationRequest, RevocationStatus, User
from janitor.models import Notice, NoticeKind
from janitor.services.notifications import (
    Target,
    dashboard_link,
    notice_publish,
    person_target,
)

if TYPE_CHECKING:
    from reconciliation.models import Dispute, ReconciliationRun

DISPUTE_DUE_WITHIN = timedelta(hours=48)
OPEN_DISPUTE_STATUSES = ("needs_response", "warning_needs_response")


def _money(amount: int, currency: str) -> str:
    return f"{amount / 100:,.2f} {currency.upper()}"


def _usage_line(account: Account | None) -> str:
    if account is None:
        return "Usage: the dispute is not linked to an account yet."
    from reconciliation.selectors.evidence import evidence_summary

    usage = evidence_summary(account=account, days=30)
    if not usage.has_activity or usage.last_seen is None:
        return "Usage in the last 30 days: none recorded."
    ago = timezone.now() - usage.last_seen
    return (
        f"Usage in the last 30 days: {usage.activity_count} requests on {usage.active_days} "
        f"day(s) from {usage.distinct_ips} address(es), {usage.logins} login(s); last activity "
        f"{_ago(ago)} ago."
    )


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{max(seconds // 60, 1)} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} day(s)"


def _due(due_by: datetime | None) -> str:
    return f"{due_by:%Y-%m-%d %H:%M} UTC" if due_by else "no due date"


# --- Finance --------------------------------------------------------------------------------


def dispute_opened(*, dispute: Dispute) -> None:
    account = dispute.account
    who = f"{account.email} ({account.public_id})" if account else "no linked account yet"
    notice_publish(
        kind=NoticeKind.DISPUTE_NEW,
        audience="finance",
        key=dispute.provider_id,
        subject=f"New dispute: {_money(dispute.amount, dispute.currency)} from {who}",
        body=(
            f"Dispute {dispute.provider_id}: {_money(dispute.amount, dispute.currency)}, "
            f"reason {dispute.reason or 'not given'}.\nAccount: {who}.\n"
            f"{_usage_line(account)}\nEvidence due: {_due(dispute.due_by)}."
        ),
        link=dashboard_link(reverse("dispute_detail", args=[dispute.provider_id])),
    )


def evidence_submitted(*, dispute: Dispute, actor: User) -> None:
    notice_publish(
        kind=NoticeKind.EVIDENCE_SUBMITTED,
        audience="finance",
        key=f"{dispute.provider_id}:{dispute.submission_count}",
        subject=f"Evidence submitted for dispute {dispute.provider_id}",
        body=(
            f"{actor.email} submitted the evidence for dispute {dispute.provider_id} "
            f"({_money(dispute.amount, dispute.currency)}). Stripe status: {dispute.status}."
        ),
        link=dashboard_link(reverse("dispute_detail", args=[dispute.provider_id])),
    )


def disputes_due_check(*, now: datetime | None = None) -> int:
    """Finance: each open dispute due within 48 hours with no evidence staged, once."""
    from reconciliation.models import Dispute

    now = now or timezone.now()
    due = Dispute.objects.filter(
        status__in=OPEN_DISPUTE_STATUSES,
        staged_at__isnull=True,
        due_by__gt=now,
        due_by__lte=now + DISPUTE_DUE_WITHIN,
    ).select_related("account")
    sent = 0
    for dispute in due:
        assert dispute.due_by is not None  # due_by__gt filtered out every NULL
        left = dispute.due_by - now
        sent += bool(
            notice_publish(
                kind=NoticeKind.DISPUTE_DUE,
                audience="finance",
                key=dispute.provider_id,
                subject=f"Dispute {dispute.provider_id} is due in {_ago(left)}: no evidence staged",
                body=(
                    f"Dispute {dispute.provider_id} "
                    f"({_money(dispute.amount, dispute.currency)}, "
                    f"{dispute.account.email if dispute.account else 'no linked account'}) is due "
                    f"{_due(dispute.due_by)} and has no evidence staged."
                ),
                link=dashboard_link(reverse("dispute_detail", args=[dispute.provider_id])),
            )
        )
    return sent


# --- Admins ---------------------------------------------------------------------------------


def revocation_waiting(*, revocation: RevocationRequest) -> None:
    notice_publish(
        kind=NoticeKind.REVOCATION_WAITING,
        audience="admins",
        key=str(revocation.pk),
        exclude=revocation.requested_by,
        subject=f"Revocation of {revocation.account.email} waits for your approval",
        body=(
            f"{revocation.requested_by.email} asks to revoke {revocation.account.email} "
            f"({revocation.account.public_id}): {revocation.reason}"
            + (f" (reference {revocation.reference})" if revocation.reference else "")
            + ". An Admin other than the requester approves or rejects it."
        ),
        link=dashboard_link(reverse("revocation_list")),
    )


def revocation_stuck(*, revocation: RevocationRequest, why: str) -> None:
    notice_publish(
        kind=NoticeKind.REVOCATION_STUCK,
        audience="admins",
        key=f"{revocation.pk}:{why}:{revocation.attempts}",
        subject=f"Revocation of {revocation.account.email} {why}",
        body=(
            f"The staged revocation #{revocation.pk} of {revocation.account.email} {why}"
            + (f": {revocation.last_error}" if revocation.last_error else "")
            + ". The account stays refused at login; retry it or abandon it on Revocations."
        ),
        link=dashboard_link(reverse("revocation_list")),
    )


def revocations_stalled_check() -> int:
    sent = 0
    approved = RevocationRequest.objects.filter(status=RevocationStatus.APPROVED).select_related(
        "account"
    )
    for revocation in approved:
        if revocation.is_stalled:
            revocation_stuck(revocation=revocation, why="stalled")
            sent += 1
    return sent


def run_halted(*, run: ReconciliationRun) -> None:
    counts = run.counts or {}
    shown = ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, int) and v)
    notice_publish(
        kind=NoticeKind.RUN_HALTED,
        audience="admins",
        # One notice per occasion: the halt, then an apply that stopped part way (each stop a
        # new one), not one per run for ever.
        key=f"{run.pk}:{run.status}:{(run.progress or {}).get('updated_at', '')}",
        subject=f"Reconciliation run #{run.pk} {run.get_status_display().lower()}",
        body=(
            f"Run #{run.pk} ended {run.get_status_display().lower()}: "
            f"{run.halt_reason or run.errors or 'no reason recorded'}\n"
            f"Counts: {shown or 'none'}."
        ),
        link=dashboard_link(reverse("reconciliation_run_detail", args=[run.pk])),
    )


def webhooks_dead_check() -> int:
    """Admins: webhooks dead-lettered since the last batch, in one notice."""
    from reconciliation.models import WebhookAttempt

    last = (
        Notice.objects.filter(kind=NoticeKind.WEBHOOKS_DEAD)
        .order_by("-created_at", "-id")
        .values_list("dedup_key", flat=True)
        .first()
    )
    after = int(last.split(":")[1]) if last else 0
    attempts = list(
        WebhookAttempt.objects.filter(outcome="dead", pk__gt=after)
        .select_related("event")
        .order_by("pk")[:200]
    )
    if not attempts:
        return 0
    upto = attempts[-1].pk
    lines = [f"{a.event.provider_event_id} {a.event.type}: {a.error[:200]}" for a in attempts]
    notice_publish(
        kind=NoticeKind.WEBHOOKS_DEAD,
        audience="admins",
        key=str(upto),
        subject=f"{len(attempts)} webhook event(s) dead-lettered",
        body="Gave up after every retry; replay them from Webhooks once the cause is fixed:\n"
        + "\n".join(lines),
        link=dashboard_link(reverse("webhook_list") + "?status=dead"),
    )
    return len(attempts)


def provider_key_refused(*, status: int | None, message: str, where: str) -> None:
    """Admins, once a day: Stripe refused the key (401 wrong key, 403 missing permission)."""
    day = timezone.now().date().isoformat()
    notice_publish(
        kind=NoticeKind.PROVIDER_KEY,
        audience="admins",
        key=f"{day}:{status}",
        subject=f"Stripe refused STRIPE_API_KEY ({status})",
        body=(
            f"{where}: Stripe answered {status}: {message}\nCheck STRIPE_API_KEY (a wrong, "
            "revoked or restricted key; a restricted key needs read access to subscriptions, "
            "customers, charges and disputes, and write access to disputes and files)."
        ),
        link=dashboard_link(reverse("overview")),
    )


# --- Support and requesters -----------------------------------------------------------------


def revocation_decided(*, revocation: RevocationRequest) -> None:
    """The requester hears how their request ended (completed or rejected)."""
    requester = revocation.requested_by
    if revocation.decided_by_id is None:
        return  # run from the shell by the requester: they saw it end
    ended = revocation.get_status_display().lower()
    comment = f" Comment: {revocation.decision_comment}" if revocation.decision_comment else ""
    notice_publish(
        kind=NoticeKind.REVOCATION_DECIDED,
        audience="staff",
        key=f"{revocation.pk}:{revocation.status}",
        targets=[person_target(requester)],
        subject=f"Your revocation request for {revocation.account.email}: {ended}",
        body=(
            f"Revocation request #{revocation.pk} for {revocation.account.email} is {ended}"
            + (f" by {revocation.decided_by.email}" if revocation.decided_by else "")
            + f".{comment}"
        ),
        link=dashboard_link(reverse("revocation_list")),
    )


def support_digest(*, now: datetime | None = None) -> int:
    """Support's morning digest: grace periods ending today, new flags by kind, assignments."""
    from reconciliation.models import Flag, FlagKind, FlagStatus

    now = now or timezone.now()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    ending = Account.objects.filter(
        access_status=AccessStatus.GRACE_PERIOD,
        grace_ends_at__gte=start,
        grace_ends_at__lt=start + timedelta(days=1),
    ).order_by("grace_ends_at")
    ending_lines = [f"  {u.email}: ends {u.grace_ends_at:%H:%M} UTC" for u in ending[:50]]
    new = dict(
        Flag.objects.filter(opened_at__gte=now - timedelta(days=1))
        .values_list("kind")
        .annotate(n=Count("id"))
        .values_list("kind", "n")
    )
    labels = dict(FlagKind.choices)
    new_lines = [f"  {labels.get(kind, kind)}: {n}" for kind, n in sorted(new.items())]
    assigned = (
        Flag.objects.filter(status=FlagStatus.OPEN, assignee__isnull=False)
        .values_list("assignee__email")
        .annotate(n=Count("id"))
        .order_by("assignee__email")
    )
    assigned_lines = [f"  {email}: {n}" for email, n in assigned]
    unassigned = Flag.objects.filter(status=FlagStatus.OPEN, assignee__isnull=True).count()
    body = "\n".join(
        [
            f"Grace periods ending today ({ending.count()}):",
            *(ending_lines or ["  none"]),
            "New flags in the last 24 hours:",
            *(new_lines or ["  none"]),
            "Open flags assigned:",
            *(assigned_lines or ["  none"]),
            f"  unassigned: {unassigned}",
        ]
    )
    return len(
        notice_publish(
            kind=NoticeKind.SUPPORT_DIGEST,
            audience="support",
            key=start.date().isoformat(),
            subject=f"Janitor morning digest, {start:%Y-%m-%d}",
            body=body,
            link=dashboard_link(reverse("review_queue")),
        )
    )


# --- Customers ------------------------------------------------------------------------------


def grace_started(*, account: Account) -> None:
    """The customer hears there is a payment issue, with where to fix it (queued, recorded)."""
    link = settings.JANITOR_BILLING_URL
    # The account's billing contact; an account without one is told through its first member.
    email = account.email or (
        account.members.order_by("pk").values_list("email", flat=True).first() or ""
    )
    if settings.JANITOR_BILLING_PORTAL_RETURN_URL and account.stripe_customer_id:
        from reconciliation.services.billing import billing_link

        # A link to Janitor that opens a fresh portal session: sessions themselves expire.
        link = billing_link(customer_id=account.stripe_customer_id)
    notice_publish(
        kind=NoticeKind.GRACE_STARTED,
        audience="customer",
        key=f"{account.pk}:{account.grace_ends_at:%Y%m%d%H%M%S}",
        targets=[Target(f"mailto:{email}", email, None)] if email else [],
        subject="There seems to be an issue with your payment",
        body=(
            f"Hello {account.name or email},\n\n"
            "There seems to be an issue with your payment. Your access continues until "
            f"{account.grace_ends_at:%Y-%m-%d}; please update your payment details before then."
        ),
        link=link,
    )
