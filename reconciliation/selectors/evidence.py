"""Reads for chargeback evidence: one summary query over the (account, time) index, timelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Max, Min, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import AccessAudit, Account, ActivityKind, ActivityLog, User
from reconciliation.models import Dispute, EvidenceExport, Subscription, WebhookEvent
from reconciliation.services.disputes import OPEN_STATUSES

TIMELINE_LIMIT = 200
IP_LIMIT = 50
LOGIN_LIMIT = 100


@dataclass
class EvidenceSummary:
    """The figures finance asks for first; all from one aggregate query."""

    since: datetime
    until: datetime
    days: int
    activity_count: int
    active_days: int
    distinct_ips: int
    logins: int
    first_seen: datetime | None
    last_seen: datetime | None
    # The account's people: members with activity in the window, members in all, and the
    # sessions the session index holds for them now.
    active_members: int = 0
    members_total: int = 0
    sessions_now: int = 0

    @property
    def has_activity(self) -> bool:
        return self.activity_count > 0


@dataclass
class DailyActivity:
    day: date
    total: int
    logins: int


@dataclass
class IpUse:
    ip: str
    total: int
    logins: int
    first_seen: datetime
    last_seen: datetime


@dataclass
class MemberUse:
    """One member's use of the product in the window (zeros for a member with none)."""

    member_id: int
    email: str
    enabled: bool
    total: int
    logins: int
    distinct_ips: int
    first_seen: datetime | None
    last_seen: datetime | None
    sessions_now: int


@dataclass
class TimelineEntry:
    at: datetime
    kind: str  # subscription, event, access
    text: str


@dataclass
class Evidence:
    account: Account
    summary: EvidenceSummary
    subscription: Subscription | None
    subscriptions: list[Subscription]
    daily: list[DailyActivity]
    ips: list[IpUse]
    logins: list[ActivityLog]
    timeline: list[TimelineEntry]
    members: list[MemberUse] = field(default_factory=list)
    generated_at: datetime = field(default_factory=timezone.now)

    def one_line(self) -> str:
        """The answer to "are they using it?" in one sentence, e.g. "ACME Corp: subscription
        canceled at Stripe; 50 sessions active now across 37 members; last activity 3 minutes
        ago"."""
        from django.utils.timesince import timesince

        name = self.account.name or self.account.email or self.account.public_id
        if self.subscription is None:
            provider = "no subscription at Stripe"
        else:
            provider = f"subscription {self.subscription.status} at Stripe"
        summary = self.summary
        sessions = f"{summary.sessions_now} session{'s' if summary.sessions_now != 1 else ''}"
        people = f"{summary.active_members} member{'s' if summary.active_members != 1 else ''}"
        use = f"{sessions} active now across {people}"
        if summary.last_seen is None:
            last = f"no activity in the last {summary.days} days"
        else:
            ago = timesince(summary.last_seen, self.generated_at).split(",")[0]
            last = f"last activity {ago.replace(chr(160), ' ')} ago"
        return f"{name}: {provider}; {use}; {last}"

    @property
    def subscription_status(self) -> str:
        return self.subscription.status if self.subscription else "none"

    @property
    def provider(self) -> str:
        return self.subscription.provider if self.subscription else ""

    @property
    def subscription_started_at(self) -> datetime | None:
        """When the subscription started at the provider (not when Janitor first saw it)."""
        return subscription_started_at(self.subscription) if self.subscription else None

    @property
    def access_history(self) -> list[TimelineEntry]:
        return [entry for entry in self.timeline if entry.kind == "access"]


def subscription_started_at(subscription: Subscription) -> datetime | None:
    raw = subscription.raw or {}
    started = raw.get("start_date") or raw.get("created")
    if isinstance(started, bool) or not isinstance(started, int | float) or started <= 0:
        return None
    return datetime.fromtimestamp(started, tz=UTC)


# Without a known service period, a dispute's evidence starts this long before the charge.
DISPUTE_WINDOW_LEAD = timedelta(days=30)


@dataclass(frozen=True)
class EvidenceWindow:
    since: datetime
    until: datetime
    basis: str  # what the start was taken from, in words


def dispute_evidence_window(*, dispute: Dispute) -> EvidenceWindow | None:
    """The default window of a dispute's evidence: from the start of the service period the
    disputed charge paid for (else the charge date minus 30 days) to now. None when the
    charge is not known yet (the account's default window applies)."""
    now = timezone.now()
    if dispute.service_period_start is not None:
        end = dispute.service_period_end
        return EvidenceWindow(
            since=dispute.service_period_start,
            until=now,
            basis=(
                f"the service period the disputed charge paid for "
                f"({dispute.service_period_start:%Y-%m-%d} to {end:%Y-%m-%d})"
                if end
                else "the service period the disputed charge paid for"
            ),
        )
    if dispute.charge_created is not None:
        return EvidenceWindow(
            since=dispute.charge_created - DISPUTE_WINDOW_LEAD,
            until=now,
            basis=f"30 days before the disputed charge of {dispute.charge_created:%Y-%m-%d}",
        )
    return None


def _window(
    days: int | None, since: datetime | None = None, until: datetime | None = None
) -> tuple[datetime, datetime, int]:
    if since is not None:
        until = until or timezone.now()
        if until < since:
            since, until = until, since
        span = until - since
        return since, until, max(span.days + (1 if span % timedelta(days=1) else 0), 1)
    days = days or settings.JANITOR_EVIDENCE_DAYS
    until = timezone.now()
    return until - timedelta(days=days), until, days


def _member_ids(account: Account) -> list[int]:
    return list(User.objects.filter(account=account).order_by("pk").values_list("pk", flat=True))


def _window_activity(
    account: Account, since: datetime, until: datetime, member_ids: list[int] | None = None
) -> QuerySet:
    """Every member's activity in the window. member + occurred_at ranges: exactly the shape
    of activity_account_time_idx, one range per member (no join to the members)."""
    if member_ids is None:
        member_ids = _member_ids(account)
    return ActivityLog.objects.filter(
        member_id__in=member_ids, occurred_at__gte=since, occurred_at__lte=until
    )


def evidence_summary(
    *,
    account: Account,
    days: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    member_ids: list[int] | None = None,
) -> EvidenceSummary:
    """Counts, active days, distinct IPs, logins, first/last seen: one query. The window is
    `since`..`until` (until defaults to now) when given, else the last `days` days. Covers
    every member of the account; sessions_now is left for the caller (evidence_for_account)."""
    since, until, days = _window(days, since, until)
    if member_ids is None:
        member_ids = _member_ids(account)
    row = (
        _window_activity(account, since, until, member_ids)
        .order_by()
        .aggregate(
            activity_count=Count("id"),
            active_days=Count(TruncDate("occurred_at"), distinct=True),
            distinct_ips=Count("ip_address", distinct=True),
            logins=Count("id", filter=Q(kind=ActivityKind.LOGIN)),
            first_seen=Min("occurred_at"),
            last_seen=Max("occurred_at"),
            active_members=Count("member_id", distinct=True),
        )
    )
    return EvidenceSummary(
        since=since, until=until, days=days, members_total=len(member_ids), **row
    )


def evidence_for_account(
    *,
    account: Account,
    days: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Evidence:
    """Everything an evidence pack shows, over every member of the account, in a fixed number
    of queries (10) and one session-index read whatever the data."""
    from accounts.services.sessions import sessions_live_counts

    members = list(
        User.objects.filter(account=account)
        .order_by("email")
        .values_list("pk", "email", "is_active")
    )
    member_ids = [pk for pk, _, _ in members]
    summary = evidence_summary(
        account=account, days=days, since=since, until=until, member_ids=member_ids
    )
    activity = _window_activity(account, summary.since, summary.until, member_ids).order_by()
    sessions = sessions_live_counts(member_ids=member_ids)
    summary.sessions_now = sum(sessions.values())
    per_member = {
        r["member_id"]: r
        for r in activity.values("member_id").annotate(
            total=Count("id"),
            logins=Count("id", filter=Q(kind=ActivityKind.LOGIN)),
            ips=Count("ip_address", distinct=True),
            first=Min("occurred_at"),
            last=Max("occurred_at"),
        )
    }
    member_rows = []
    for pk, email, enabled in members:
        r = per_member.get(pk) or {}
        member_rows.append(
            MemberUse(
                member_id=pk,
                email=email,
                enabled=enabled,
                total=r.get("total", 0),
                logins=r.get("logins", 0),
                distinct_ips=r.get("ips", 0),
                first_seen=r.get("first"),
                last_seen=r.get("last"),
                sessions_now=sessions.get(pk, 0),
            )
        )
    # Most active first: the proof reads from the people who used it most.
    member_rows.sort(key=lambda m: (-m.total, m.email))

    by_day = {
        row["day"]: row
        for row in activity.annotate(day=TruncDate("occurred_at"))
        .values("day")
        .annotate(total=Count("id"), logins=Count("id", filter=Q(kind=ActivityKind.LOGIN)))
        .order_by("day")
    }
    first_day = summary.since.date()
    daily = []
    for offset in range((summary.until.date() - first_day).days + 1):
        day = first_day + timedelta(days=offset)
        row = by_day.get(day)
        daily.append(DailyActivity(day, row["total"] if row else 0, row["logins"] if row else 0))

    ips = [
        IpUse(r["ip_address"], r["total"], r["logins"], r["first"], r["last"])
        for r in activity.filter(ip_address__isnull=False)
        .values("ip_address")
        .annotate(
            total=Count("id"),
            logins=Count("id", filter=Q(kind=ActivityKind.LOGIN)),
            first=Min("occurred_at"),
            last=Max("occurred_at"),
        )
        .order_by("-total", "ip_address")[:IP_LIMIT]
    ]
    logins = list(
        activity.filter(kind=ActivityKind.LOGIN)
        .select_related("member")
        .only("occurred_at", "ip_address", "user_agent", "path", "member__email")
        .order_by("-occurred_at")[:LOGIN_LIMIT]
    )
    subscriptions = list(
        Subscription.objects.filter(account=account).order_by("-provider_updated_at", "-id")
    )
    timeline = _timeline(account=account, subscriptions=subscriptions)
    return Evidence(
        account=account,
        summary=summary,
        subscription=subscriptions[0] if subscriptions else None,
        subscriptions=subscriptions,
        daily=daily,
        ips=ips,
        logins=logins,
        timeline=timeline,
        members=member_rows,
    )


def _timeline(*, account: Account, subscriptions: list[Subscription]) -> list[TimelineEntry]:
    """Subscription changes, provider events and access changes, newest first (2 queries)."""
    entries = [
        TimelineEntry(
            subscription_started_at(s) or s.created_at,
            "subscription",
            f"Subscription {s.provider_id} started at Stripe"
            if subscription_started_at(s)
            else f"Subscription {s.provider_id} first seen by Janitor ({s.status})",
        )
        for s in subscriptions
    ]
    entries += [
        TimelineEntry(
            s.provider_updated_at,
            "subscription",
            f"Subscription {s.provider_id} is {s.status}"
            + (f", {s.plan_name}" if s.plan_name else "")
            + (" (cancels at period end)" if s.cancel_at_period_end else ""),
        )
        for s in subscriptions
    ]
    event_filter = Q(pk__in=[])
    if account.stripe_customer_id:
        event_filter |= Q(customer_id=account.stripe_customer_id)
    # Dispute events name no customer: linking a dispute stamps its events with the customer
    # found through the charge (dispute_apply, disputes_link_unlinked), so they match here.
    sub_ids = [s.provider_id for s in subscriptions]
    if sub_ids:
        event_filter |= Q(payload__data__object__id__in=sub_ids)
    events = (
        WebhookEvent.objects.filter(event_filter)
        .only("provider_event_id", "type", "created", "status")
        .order_by("-created")[:TIMELINE_LIMIT]
    )
    entries += [
        TimelineEntry(e.created, "event", f"{e.type} ({e.provider_event_id}, {e.status})")
        for e in events
    ]
    audit = AccessAudit.objects.filter(account=account).order_by("-at")[:TIMELINE_LIMIT]
    entries += [
        TimelineEntry(
            a.at,
            "access",
            f"Access {a.from_status or '—'} → {a.to_status} by {a.actor}: {a.reason}",
        )
        for a in audit
    ]
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:TIMELINE_LIMIT]


def activity_log_rows(
    *,
    account: Account,
    days: int | None = None,
    limit: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
):
    """The raw activity of the window, newest first (for CSV and Stripe's activity log)."""
    since, until, _ = _window(days, since, until)
    rows = (
        _window_activity(account, since, until)
        .order_by("-occurred_at", "-id")
        .values_list("occurred_at", "kind", "path", "ip_address", "user_agent", "source",
                     "client_event_id", "member__email")
    )  # fmt: skip
    return rows[:limit] if limit else rows


RESPONSE_STATUSES = ("needs_response", "warning_needs_response")
DUE_SOON_DAYS = 7


def _due_soon_filter() -> Q:
    now = timezone.now()
    return Q(
        status__in=RESPONSE_STATUSES,
        due_by__gte=now,
        due_by__lt=now + timedelta(days=DUE_SOON_DAYS),
    )


def disputes_due_soon(*, limit: int = 10) -> list[Dispute]:
    """Disputes still needing a response whose deadline is within DUE_SOON_DAYS, soonest first."""
    return list(
        Dispute.objects.filter(_due_soon_filter())
        .select_related("account")
        .order_by("due_by", "id")[:limit]
    )


def dispute_queue(*, status: str = "open", page: int = 1, per_page: int = 50) -> Page:
    """Disputes by urgency: nearest deadline first, then the largest amount."""
    disputes = Dispute.objects.select_related("account")
    if status == "due_soon":
        disputes = disputes.filter(_due_soon_filter())
    elif status == "open":
        disputes = disputes.filter(status__in=OPEN_STATUSES)
    elif status != "all":
        disputes = disputes.filter(status=status)
    disputes = disputes.order_by(F("due_by").asc(nulls_last=True), "-amount", "id")
    return Paginator(disputes, per_page).get_page(page)


def dispute_get(*, provider_id: str) -> Dispute:
    from django.shortcuts import get_object_or_404

    return get_object_or_404(Dispute.objects.select_related("account"), provider_id=provider_id)


def dispute_exports(*, dispute: Dispute, limit: int = 20) -> list[EvidenceExport]:
    return list(
        EvidenceExport.objects.filter(dispute=dispute)
        .select_related("actor")
        .order_by("-at")[:limit]
    )


def account_exports(*, account: Account, limit: int = 5) -> list[EvidenceExport]:
    """The latest evidence exports of an account: who already took what."""
    return list(
        EvidenceExport.objects.filter(account=account)
        .select_related("actor", "dispute")
        .order_by("-at")[:limit]
    )
