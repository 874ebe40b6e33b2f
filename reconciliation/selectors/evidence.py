"""Reads for chargeback evidence: one summary query over the (account, time) index, timelines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

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
# The longest window an evidence pack covers (a row and a chart bar a day; it must stay under
# Stripe's 5 MB for a dispute).
EVIDENCE_MAX_DAYS = 366

# One row of activity_log_rows: occurred_at, kind, path, ip address, user agent, source,
# client event id, member email.
ActivityRow = tuple[datetime, str, str, str | None, str, str, str | None, str]


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
    """(since, until, days) of an evidence window, never longer than EVIDENCE_MAX_DAYS: the
    pack has a row and a chart bar per day, whoever the caller."""
    if since is not None:
        until = until or timezone.now()
        if until < since:
            since, until = until, since
        if until - since > timedelta(days=EVIDENCE_MAX_DAYS):  # (never below year 1)
            since = until - timedelta(days=EVIDENCE_MAX_DAYS)
        span = until - since
        return since, until, max(span.days + (1 if span % timedelta(days=1) else 0), 1)
    days = min(days or settings.JANITOR_EVIDENCE_DAYS, EVIDENCE_MAX_DAYS)
    until = timezone.now()
    return until - timedelta(days=days), until, days


def _window_activity(account: Account, since: datetime, until: datetime) -> QuerySet[ActivityLog]:
    """Every member's activity in the window: for each member of the account (a subquery, one
    parameter whatever the team's size) a member + occurred_at range, exactly the shape of
    activity_account_time_idx."""
    return ActivityLog.objects.filter(
        member_id__in=User.objects.filter(account=account).values("pk"),
        occurred_at__gte=since,
        occurred_at__lte=until,
    )


@dataclass
class _Groups:
    # (member id, address or None, events, logins, first, last) per (member, address); first
    # and last are POSIX seconds (PostgreSQL) or datetimes (the ORM), as the query gave them.
    pairs: list[tuple[int, str | None, int, int, Any, Any]]
    days: dict[date, tuple[int, int]]  # UTC day -> (events, logins)
    to_datetime: Callable[[Any], datetime]  # what first and last are -> datetime


_GROUPS_SQL = """
SELECT GROUPING(w.account_id, w.ip_address) AS by_day, w.account_id, host(w.ip_address), w.day,
       count(*), count(*) FILTER (WHERE w.kind = %s),
       EXTRACT(EPOCH FROM min(w.occurred_at)), EXTRACT(EPOCH FROM max(w.occurred_at))
FROM (
    SELECT account_id, ip_address, kind, occurred_at, (occurred_at AT TIME ZONE 'UTC')::date AS day
    FROM accounts_activitylog
    WHERE account_id IN (SELECT id FROM accounts_user WHERE account_id = %s)
      AND occurred_at >= %s AND occurred_at <= %s
) AS w
GROUP BY GROUPING SETS ((w.account_id, w.ip_address), (w.day))
"""


def _activity_groups(
    account: Account, activity: QuerySet[ActivityLog], since: datetime, until: datetime
) -> _Groups:
    """The window's activity grouped by (member, address) and by UTC day.

    PostgreSQL: one scan with two hashed grouping sets, times as POSIX seconds (parsing
    thousands of timestamps in Python would cost more than the query). Elsewhere: two grouped
    queries through the ORM.
    """
    from django.db import connections

    connection = connections[activity.db]
    if connection.vendor == "postgresql":
        pairs: list[tuple[int, str | None, int, int, Any, Any]] = []
        days: dict[date, tuple[int, int]] = {}
        with connection.cursor() as cursor:
            cursor.execute(_GROUPS_SQL, [ActivityKind.LOGIN, account.pk, since, until])
            for by_day, member_id, ip, day, total, n_logins, first, last in cursor.fetchall():
                if by_day:
                    days[day] = (total, n_logins)
                else:
                    pairs.append((member_id, ip, total, n_logins, float(first), float(last)))
        return _Groups(pairs, days, lambda seconds: datetime.fromtimestamp(seconds, tz=UTC))
    pairs = list(
        activity.values_list("member_id", "ip_address").annotate(
            total=Count("id"),
            logins=Count("id", filter=Q(kind=ActivityKind.LOGIN)),
            first=Min("occurred_at"),
            last=Max("occurred_at"),
        )
    )
    days = {
        day: (total, n_logins)
        for day, total, n_logins in activity.annotate(day=TruncDate("occurred_at"))
        .values("day")
        .annotate(total=Count("id"), logins=Count("id", filter=Q(kind=ActivityKind.LOGIN)))
        .values_list("day", "total", "logins")
    }
    return _Groups(pairs, days, lambda value: value)


def evidence_summary(
    *,
    account: Account,
    days: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> EvidenceSummary:
    """Counts, active days, distinct IPs, logins, first/last seen: one aggregate over every
    member's activity, and the members counted. The window is
    `since`..`until` (until defaults to now) when given, else the last `days` days. Covers
    every member of the account; sessions_now is left for the caller (evidence_for_account)."""
    since, until, days = _window(days, since, until)
    row = (
        _window_activity(account, since, until)
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
        since=since, until=until, days=days, members_total=account.members.count(), **row
    )


def evidence_for_account(
    *,
    account: Account,
    days: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Evidence:
    """Everything an evidence pack shows, over every member of the account, in a fixed number
    of queries (6 on PostgreSQL) and one session-index read whatever the data.

    The window's activity is grouped by (member, address), which is small (people use a few
    addresses each) and gives the per-member rows, the per-address table and the summary, and
    by day for the chart: on PostgreSQL one scan with two hashed grouping sets, where grouped
    queries with distinct counts cost four scans and sorts (figures: docs/benchmarks/evidence.md,
    "Team accounts").
    """
    from accounts.services.sessions import sessions_live_counts

    since, until, days = _window(days, since, until)
    members = list(
        User.objects.filter(account=account)
        .order_by("email")
        .values_list("pk", "email", "is_active")
    )
    member_ids = [pk for pk, _, _ in members]
    activity = _window_activity(account, since, until).order_by()
    sessions = sessions_live_counts(member_ids=member_ids)

    groups = _activity_groups(account, activity, since, until)
    to_datetime = groups.to_datetime
    # [events, logins, first, last, addresses] per member, [events, logins, first, last] per
    # address; first and last as the groups give them until the end.
    per_member: dict[int, list[Any]] = {}
    per_ip: dict[str, list[Any]] = {}
    for member_id, ip, total, n_logins, first_at, last_at in groups.pairs:
        m = per_member.get(member_id)
        if m is None:
            per_member[member_id] = m = [0, 0, first_at, last_at, 0]
        m[0] += total
        m[1] += n_logins
        m[2], m[3] = min(m[2], first_at), max(m[3], last_at)
        if ip is None:
            continue
        m[4] += 1
        i = per_ip.get(ip)
        if i is None:
            per_ip[ip] = [total, n_logins, first_at, last_at]
        else:
            i[0] += total
            i[1] += n_logins
            i[2], i[3] = min(i[2], first_at), max(i[3], last_at)

    member_rows = []
    for pk, email, enabled in members:
        m = per_member.get(pk)
        member_rows.append(
            MemberUse(
                member_id=pk,
                email=email,
                enabled=enabled,
                total=m[0] if m else 0,
                logins=m[1] if m else 0,
                distinct_ips=m[4] if m else 0,
                first_seen=to_datetime(m[2]) if m else None,
                last_seen=to_datetime(m[3]) if m else None,
                sessions_now=sessions.get(pk, 0),
            )
        )
    # Most active first: the proof reads from the people who used it most.
    member_rows.sort(key=lambda m: (-m.total, m.email))

    by_day = groups.days
    first_day = since.date()
    daily = []
    for offset in range((until.date() - first_day).days + 1):
        day = first_day + timedelta(days=offset)
        total, n_logins = by_day.get(day, (0, 0))
        daily.append(DailyActivity(day, total, n_logins))

    busiest = sorted(per_ip.items(), key=lambda item: (-item[1][0], str(item[0])))
    ips = [
        IpUse(ip, total, n_logins, to_datetime(first_at), to_datetime(last_at))
        for ip, (total, n_logins, first_at, last_at) in busiest[:IP_LIMIT]
    ]
    used = list(per_member.values())
    summary = EvidenceSummary(
        since=since,
        until=until,
        days=days,
        activity_count=sum(m[0] for m in used),
        active_days=sum(1 for total, _ in by_day.values() if total),
        distinct_ips=len(per_ip),
        logins=sum(m[1] for m in used),
        first_seen=to_datetime(min(m[2] for m in used)) if used else None,
        last_seen=to_datetime(max(m[3] for m in used)) if used else None,
        active_members=len(used),
        members_total=len(member_ids),
        sessions_now=sum(sessions.values()),
    )
    logins = list(
        activity.filter(kind=ActivityKind.LOGIN)
        .only("occurred_at", "ip_address", "user_agent", "path", "member_id")
        .order_by("-occurred_at")[:LOGIN_LIMIT]
    )
    # Who signed in, from the members already read (a join here made PostgreSQL scan every
    # user of the product).
    emails = {pk: email for pk, email, _ in members}
    for login in logins:
        login.member = User(pk=login.member_id, email=emails.get(login.member_id, ""))
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
) -> QuerySet[ActivityLog, ActivityRow]:
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


def dispute_queue(*, status: str = "open", page: int = 1, per_page: int = 50) -> Page[Dispute]:
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
