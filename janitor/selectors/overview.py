"""Reads for the overview page: a handful of aggregate queries, whatever the data size."""

from dataclasses import dataclass, field

from django.db.models import Count

from accounts.models import AccessStatus, Account
from janitor.models import Notice, NoticeStatus
from products.selectors.deliveries import DeliveryCounts, delivery_counts
from reconciliation.models import (
    Dispute,
    Flag,
    FlagKind,
    FlagStatus,
    ReconciliationRun,
    WebhookEvent,
    WebhookStatus,
)
from reconciliation.selectors.evidence import disputes_due_soon


@dataclass
class Overview:
    status_counts: list[tuple[str, str, int]]  # (value, label, count)
    customers_total: int
    open_flags: list[tuple[str, str, int]]
    open_flags_total: int
    last_run: ReconciliationRun | None
    webhook_backlog: int
    webhook_dead: int
    notices_failing: int
    deliveries: DeliveryCounts
    disputes_due_soon: list[Dispute] = field(default_factory=list)


def overview_get(*, with_disputes: bool = False) -> Overview:
    by_status = dict(
        Account.objects.values_list("access_status")
        .annotate(n=Count("id"))
        .values_list("access_status", "n")
    )
    status_counts = [(s.value, s.label, by_status.get(s.value, 0)) for s in AccessStatus]
    by_kind = dict(
        Flag.objects.filter(status=FlagStatus.OPEN)
        .values_list("kind")
        .annotate(n=Count("id"))
        .values_list("kind", "n")
    )
    open_flags = [(k.value, k.label, by_kind[k.value]) for k in FlagKind if by_kind.get(k.value)]
    by_webhook_status = dict(
        WebhookEvent.objects.filter(
            status__in=[WebhookStatus.PENDING, WebhookStatus.FAILED, WebhookStatus.DEAD]
        )
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return Overview(
        status_counts=status_counts,
        customers_total=sum(by_status.values()),
        open_flags=open_flags,
        open_flags_total=sum(by_kind.values()),
        # A dry run is for looking: the tile shows the latest real run (a halted one stays
        # in view while someone dry-runs beside it).
        last_run=ReconciliationRun.objects.filter(dry_run=False).order_by("-started_at").first(),
        webhook_backlog=by_webhook_status.get(WebhookStatus.PENDING, 0)
        + by_webhook_status.get(WebhookStatus.FAILED, 0),
        webhook_dead=by_webhook_status.get(WebhookStatus.DEAD, 0),
        notices_failing=Notice.objects.filter(
            status__in=[NoticeStatus.FAILED, NoticeStatus.DEAD]
        ).count(),
        deliveries=delivery_counts(),
        disputes_due_soon=disputes_due_soon() if with_disputes else [],
    )
