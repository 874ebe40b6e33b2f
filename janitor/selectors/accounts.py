"""Reads for one account's page: its access, subscriptions, flags, activity and members."""

from dataclasses import dataclass, field
from datetime import datetime

from accounts.models import AccessAudit, Account, ActivityLog, User
from reconciliation.models import (
    Flag,
    Subscription,
    WebhookEvent,
)


@dataclass
class AccountPage:
    account: Account
    audit: list[AccessAudit]
    subscriptions: list[Subscription]
    flags: list[Flag]
    activity: list[ActivityLog]
    events: list[WebhookEvent]
    activity_total: int
    members: list["MemberRow"] = field(default_factory=list)  # enabled first, by email
    members_total: int = 0
    flags_total: int = 0  # all the account's flags; more than len(flags) when cut


FLAGS_SHOWN = 50


def account_page_get(*, public_id: str, recent: int = 25) -> AccountPage:
    """Everything the account page shows, in a fixed number of queries."""
    from django.shortcuts import get_object_or_404

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

    # Open flags first, then the newest resolved ones: the nightly audit opens and resolves
    # flags for years, and the page must not grow with them. Counted only when cut.
    all_flags = Flag.objects.filter(account=account)
    flags = list(
        all_flags.select_related("assignee")
        .prefetch_related(
            Prefetch(
                "notes",
                queryset=FlagNote.objects.select_related("author").order_by("created_at", "id"),
            )
        )
        .order_by("status", "-opened_at")[: FLAGS_SHOWN + 1]
    )
    flags_total = len(flags)
    if flags_total > FLAGS_SHOWN:
        flags = flags[:FLAGS_SHOWN]
        flags_total = all_flags.count()
    members, members_total = account_members(account=account)
    account_activity = ActivityLog.objects.filter(member__account=account)
    activity = list(account_activity.select_related("member").order_by("-occurred_at")[:recent])
    activity_total = account_activity.count()
    # Events are found by the indexed customer column, never by scanning payloads.
    customer_ids = {account.stripe_customer_id, *(s.customer_id for s in subscriptions)} - {""}
    events: list[WebhookEvent] = []
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
        flags_total=flags_total,
    )


MEMBERS_SHOWN = 200


@dataclass
class MemberRow:
    member: User
    last_activity: datetime | None
    sessions_now: int


def account_members(*, account: Account, limit: int = MEMBERS_SHOWN) -> tuple[list[MemberRow], int]:
    """The account's members (enabled first, then by email) with their last activity and the
    sessions they hold now: three queries and one session-index read, whatever the team's size.
    Past `limit` members the page says how many more there are."""
    from django.db.models import OuterRef, Subquery

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
