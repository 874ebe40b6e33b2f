"""Privacy writes: the daily retention purge and a customer's erasure on request.

Both span the product's accounts (activity, the access changes feed), the provider's records
(webhook bodies, subscription and dispute objects) and the products' outbox (access events), so
they live here: reconciliation depends on accounts and products, never the other way. The
periods are settings (JANITOR_*_RETENTION_DAYS, docs/operations.md).

Neither touches the audit trail: AccessAudit and StaffActionAudit rows reference the account by
key and keep no copy of the person's details, so an erased account's history stays intact.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from accounts.models import (
    ERASED_EMAIL_DOMAIN,
    Account,
    ActivityLog,
    StaffActionAudit,
    StaffActionKind,
    User,
)
from accounts.services.access_changes import access_changes_purge
from accounts.services.sessions import sessions_revoke_account
from janitor.errors import JanitorError
from products.services.delivery import deliveries_purge
from reconciliation.models import Dispute, Subscription, WebhookEvent, WebhookStatus
from reconciliation.services.disputes import TERMINAL_STATUSES

PURGE_BATCH = 5000
# Webhook events still to be worked on keep their body whatever their age.
FINISHED_WEBHOOK_STATUSES = (WebhookStatus.PROCESSED, WebhookStatus.IGNORED, WebhookStatus.DEAD)
RETENTION_SCHEDULE_NAME = "privacy: retention purge"
RETENTION_SCHEDULE_FUNC = "reconciliation.tasks.retention_purge_task"


class ErasureError(JanitorError):
    """An erasure that must not run; the message says why."""


@dataclass
class RetentionResult:
    activity_deleted: int = 0
    activity_ips_blanked: int = 0
    webhook_payloads_emptied: int = 0
    staged_evidence_cleared: int = 0
    access_changes_deleted: int = 0
    deliveries_deleted: int = 0
    delivery_attempts_deleted: int = 0


def _erased_marker(**extra: Any) -> dict[str, Any]:
    return {"janitor_erased": True, **extra}


def _delete_in_batches(queryset: QuerySet[ActivityLog]) -> int:
    # Bounded statements: a first purge after years of data must not lock the table for long.
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:PURGE_BATCH])
        if not ids:
            return total
        deleted, _ = ActivityLog.objects.filter(pk__in=ids).delete()
        total += deleted


def retention_purge(*, now: datetime | None = None) -> RetentionResult:
    """Delete or blank what is older than its retention period. Idempotent."""
    now = now or timezone.now()
    result = RetentionResult()
    activity_cutoff = now - timedelta(days=settings.JANITOR_ACTIVITY_RETENTION_DAYS)
    result.activity_deleted = _delete_in_batches(
        ActivityLog.objects.filter(occurred_at__lt=activity_cutoff).order_by("pk")
    )
    ip_cutoff = now - timedelta(days=settings.JANITOR_IP_RETENTION_DAYS)
    result.activity_ips_blanked = (
        ActivityLog.objects.filter(occurred_at__lt=ip_cutoff)
        .filter(Q(ip_address__isnull=False) | ~Q(user_agent=""))
        .update(ip_address=None, user_agent="")
    )
    payload_cutoff = now - timedelta(days=settings.JANITOR_WEBHOOK_PAYLOAD_RETENTION_DAYS)
    result.webhook_payloads_emptied = (
        WebhookEvent.objects.filter(
            received_at__lt=payload_cutoff, status__in=FINISHED_WEBHOOK_STATUSES
        )
        .exclude(payload__has_key="janitor_purged")
        .update(payload={"janitor_purged": True})
    )
    export_cutoff = now - timedelta(days=settings.JANITOR_EXPORT_RETENTION_DAYS)
    result.staged_evidence_cleared = (
        Dispute.objects.filter(staged_at__lt=export_cutoff)
        .filter(Q(submitted_at__isnull=False) | Q(status__in=TERMINAL_STATUSES))
        .exclude(evidence_staged={})
        .update(evidence_staged={})
    )
    feed_cutoff = now - timedelta(days=settings.JANITOR_ACCESS_FEED_RETENTION_DAYS)
    result.access_changes_deleted = access_changes_purge(
        older_than=feed_cutoff, batch_size=PURGE_BATCH
    )
    delivery_cutoff = now - timedelta(days=settings.JANITOR_DELIVERY_RETENTION_DAYS)
    result.deliveries_deleted, result.delivery_attempts_deleted = deliveries_purge(
        older_than=delivery_cutoff, batch_size=PURGE_BATCH, now=now
    )
    return result


@transaction.atomic
def account_erase(*, account: Account, actor: User, reason: str) -> StaffActionAudit:
    """Pseudonymise one customer account's personal data on request, and audit it.

    The account and its members stay (the audit trail and disputes reference them) under
    placeholder emails, with no names, no usable passwords and no sessions. The members'
    activity keeps times and kinds (the counts behind past evidence) but loses addresses,
    agents and paths; webhook bodies and the stored provider objects of its subscriptions and
    disputes are replaced by a marker. The Stripe customer id stays: it is a pseudonym, and
    the audit and disputes need it; erasing the person at Stripe is done at Stripe.
    """
    if not reason.strip():
        raise ErasureError("Say why: the request's reference (ticket, email date).")
    if not actor.is_staff or not actor.has_perm("accounts.erase_customer"):
        raise ErasureError("Only an Admin may erase a customer's personal data.")
    locked = Account.objects.select_for_update().get(pk=account.pk)
    if locked.is_erased:
        raise ErasureError(f"{locked.public_id} was erased already.")

    activity = ActivityLog.objects.filter(member__account=locked)
    activity_rows = activity.update(ip_address=None, user_agent="", path="")
    events = WebhookEvent.objects.none()
    if locked.stripe_customer_id:
        events = WebhookEvent.objects.filter(customer_id=locked.stripe_customer_id)
    payloads = 0
    for event_id, provider_id, event_type in events.values_list("pk", "provider_event_id", "type"):
        payloads += WebhookEvent.objects.filter(pk=event_id).update(
            payload=_erased_marker(id=provider_id, type=event_type)
        )
    subscriptions = Subscription.objects.filter(account=locked).update(raw=_erased_marker())
    disputes = Dispute.objects.filter(account=locked).update(
        raw=_erased_marker(), evidence_staged={}
    )

    locked.email = f"erased-{locked.public_id}@{ERASED_EMAIL_DOMAIN}"
    locked.name = ""
    locked.save(update_fields=["email", "name"])
    members = list(User.objects.select_for_update().filter(account=locked).order_by("pk"))
    for member in members:
        member.email = f"erased-{member.public_id}@{ERASED_EMAIL_DOMAIN}"
        member.name = ""
        member.set_unusable_password()
        member.save(update_fields=["email", "name", "password"])
    User.objects.filter(account=locked).update(session_version=F("session_version") + 1)
    sessions = sum(sessions_revoke_account(account=locked).values())
    account.email, account.name = locked.email, locked.name

    return StaffActionAudit.objects.create(
        kind=StaffActionKind.ACCOUNT_ERASED,
        subject=None,
        account=locked,
        at=timezone.now(),
        actor=actor.email,
        actor_user=actor,
        reason=reason.strip(),
        details={
            "members_pseudonymised": len(members),
            "activity_rows_pseudonymised": activity_rows,
            "webhook_payloads_replaced": payloads,
            "subscriptions_cleared": subscriptions,
            "disputes_cleared": disputes,
            "sessions_ended": sessions,
        },
    )


def retention_schedule_ensure() -> None:
    """Create or correct the daily retention purge's django-q2 schedule (idempotent)."""
    from django_q.models import Schedule

    cron = settings.JANITOR_RETENTION_CRON
    schedule = Schedule.objects.filter(name=RETENTION_SCHEDULE_NAME).order_by("id").first()
    if schedule is None:
        Schedule.objects.create(
            name=RETENTION_SCHEDULE_NAME,
            func=RETENTION_SCHEDULE_FUNC,
            schedule_type=Schedule.CRON,
            cron=cron,
            repeats=-1,
        )
    elif (schedule.func, schedule.schedule_type, schedule.cron, schedule.repeats) != (
        RETENTION_SCHEDULE_FUNC,
        Schedule.CRON,
        cron,
        -1,
    ):
        schedule.func, schedule.schedule_type, schedule.cron = (
            RETENTION_SCHEDULE_FUNC,
            Schedule.CRON,
            cron,
        )
        schedule.repeats = -1
        schedule.next_run = schedule.calculate_next_run()
        schedule.save()
    # A duplicate (two deploys racing) would purge twice a night: harmless, but keep one.
    keep = Schedule.objects.filter(name=RETENTION_SCHEDULE_NAME).order_by("id").first()
    Schedule.objects.filter(name=RETENTION_SCHEDULE_NAME).exclude(pk=keep.pk).delete()
