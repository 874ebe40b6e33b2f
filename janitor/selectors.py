"""Reads for the overview page: a handful of aggregate queries, whatever the data size."""

from dataclasses import dataclass, field

from django.db.models import Count

from accounts.models import AccessStatus, Account, User
from janitor.models import UNMUTABLE_KINDS, Notice, NoticeKind, NoticeMute, NoticeStatus
from reconciliation.models import (
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
    disputes_due_soon: list = field(default_factory=list)


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
        last_run=ReconciliationRun.objects.order_by("-started_at").first(),
        webhook_backlog=by_webhook_status.get(WebhookStatus.PENDING, 0)
        + by_webhook_status.get(WebhookStatus.FAILED, 0),
        webhook_dead=by_webhook_status.get(WebhookStatus.DEAD, 0),
        notices_failing=Notice.objects.filter(
            status__in=[NoticeStatus.FAILED, NoticeStatus.DEAD]
        ).count(),
        disputes_due_soon=disputes_due_soon() if with_disputes else [],
    )


NOTICES_PER_PAGE = 50


def notice_page(*, status: str = "", kind: str = "", page_number=1):
    """The Notifications page: newest first, filtered by status and kind."""
    from django.core.paginator import Paginator

    notices = Notice.objects.select_related("recipient").order_by("-created_at", "-id")
    if status in NoticeStatus.values:
        notices = notices.filter(status=status)
    if kind in NoticeKind.values:
        notices = notices.filter(kind=kind)
    return Paginator(notices, NOTICES_PER_PAGE).get_page(page_number)


def notice_preferences_get(*, user: User) -> list[tuple[str, str, bool, bool]]:
    """(kind, label, muted, can_mute) for every kind of notice a staff member can receive."""
    muted = set(NoticeMute.objects.filter(user=user).values_list("kind", flat=True))
    staff_kinds = [k for k in NoticeKind if k != NoticeKind.GRACE_STARTED]
    return [(k.value, k.label, k.value in muted, k not in UNMUTABLE_KINDS) for k in staff_kinds]


@dataclass
class AccountPage:
    account: Account
    audit: list
    subscriptions: list
    flags: list
    activity: list
    events: list
    activity_total: int
    members: list = field(default_factory=list)  # [MemberRow], enabled first, by email
    members_total: int = 0


def account_page_get(*, public_id: str, recent: int = 25) -> AccountPage:
    """Everything the account page shows, in a fixed number of queries."""
    from django.shortcuts import get_object_or_404

    from accounts.models import AccessAudit, ActivityLog
    from reconciliation.models import Subscription

    account = get_object_or_404(Account, public_id=public_id)
    audit = list(
        AccessAudit.objects.filter(account=account)
        .select_related("actor_user", "approver")
        .order_by("-at", "-id")[:50]
    )
    subscriptions = list(
        Subscription.objects.filter(account=account).order_by("-provider_updated_at")
    )
    from django.db.models import Prefetch

    from reconciliation.models import FlagNote

    flags = list(
        Flag.objects.filter(account=account)
        .select_related("assignee")
        .prefetch_related(
            Prefetch(
                "notes",
                queryset=FlagNote.objects.select_related("author").order_by("created_at", "id"),
            )
        )
        .order_by("status", "-opened_at")
    )
    members, members_total = account_members(account=account)
    account_activity = ActivityLog.objects.filter(member__account=account)
    activity = list(account_activity.select_related("member").order_by("-occurred_at")[:recent])
    activity_total = account_activity.count()
    # Events are found by the indexed customer column, never by scanning payloads.
    customer_ids = {account.stripe_customer_id, *(s.customer_id for s in subscriptions)} - {""}
    events = []
    if customer_ids:
        events = list(
            WebhookEvent.objects.filter(customer_id__in=customer_ids)
            .only("provider_event_id", "type", "created", "status", "received_at")
            .order_by("-created")[:recent]
        )
    return AccountPage(
        account,
        audit,
        subscriptions,
        flags,
        activity,
        events,
        activity_total,
        members=members,
        members_total=members_total,
    )


MEMBERS_SHOWN = 200


@dataclass
class MemberRow:
    member: User
    last_activity: object  # datetime | None
    sessions_now: int


def account_members(*, account: Account, limit: int = MEMBERS_SHOWN) -> tuple[list, int]:
    """The account's members (enabled first, then by email) with their last activity and the
    sessions they hold now: three queries and one session-index read, whatever the team's size.
    Past `limit` members the page says how many more there are."""
    from django.db.models import OuterRef, Subquery

    from accounts.models import ActivityLog
    from accounts.services.sessions import sessions_live_counts

    members_qs = User.objects.filter(account=account)
    total = members_qs.count()
    # Each member's latest activity: one index lookup per member (member, occurred_at DESC),
    # never a scan of their whole history.
    latest = (
        ActivityLog.objects.filter(member=OuterRef("pk"))
        .order_by("-occurred_at")
        .values("occurred_at")[:1]
    )
    members = list(
        members_qs.annotate(last_activity=Subquery(latest)).order_by("-is_active", "email")[:limit]
    )
    sessions = sessions_live_counts(member_ids=[m.pk for m in members])
    rows = [MemberRow(m, m.last_activity, sessions.get(m.pk, 0)) for m in members]
    return rows, total
