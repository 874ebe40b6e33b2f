"""Reads for the review queue: open flags, filtered, sorted and paginated in a fixed query count."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import Account, User
from janitor.sorting import sort_links
from janitor.text import database_id
from reconciliation.models import Flag, FlagKind, FlagNote, FlagStatus

PAGE_SIZES = (25, 50, 100, 200)
AGE_CHOICES = (("", "Any age"), ("1", "Older than 1 day"), ("7", "Older than 7 days"),
               ("30", "Older than 30 days"))  # fmt: skip
# Sort key -> ORDER BY; "-" in front of the key sorts descending.
SORTS = {
    "opened": ("opened_at", "id"),
    "kind": ("kind", "opened_at", "id"),
    "email": ("account__email", "id"),
    "grace": ("account__grace_ends_at", "id"),
}
DEFAULT_SORT = "-opened"


@dataclass(frozen=True)
class QueueFilters:
    kind: str = ""
    age: str = ""
    assignee: str = ""  # "", "me", "none" or a staff user's id
    q: str = ""
    sort: str = DEFAULT_SORT
    page: int = 1
    per_page: int = PAGE_SIZES[0]

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> QueueFilters:
        kind = params.get("kind", "")
        age = params.get("age", "")
        assignee = params.get("assignee", "")
        sort = params.get("sort", DEFAULT_SORT)
        try:
            page = max(1, int(params.get("page", 1)))
        except ValueError:
            page = 1
        try:
            per_page = int(params.get("per_page", PAGE_SIZES[0]))
        except ValueError:
            per_page = PAGE_SIZES[0]
        return cls(
            kind=kind if kind in FlagKind.values else "",
            age=age if age in dict(AGE_CHOICES) else "",
            assignee=(
                assignee
                if assignee in {"", "me", "none"} or database_id(assignee) is not None
                else ""
            ),
            q=params.get("q", "").strip()[:200],
            sort=sort if sort.lstrip("-") in SORTS else DEFAULT_SORT,
            page=page,
            per_page=per_page if per_page in PAGE_SIZES else PAGE_SIZES[0],
        )

    def query_string(self, **overrides: object) -> str:
        """The filters as a query string, with some changed (for sort and page links)."""
        values = {
            "kind": self.kind,
            "age": self.age,
            "assignee": self.assignee,
            "q": self.q,
            "sort": self.sort,
            "per_page": self.per_page,
            "page": self.page,
        }
        values.update(overrides)
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})


def _flags_base() -> QuerySet[Flag]:
    return Flag.objects.filter(status=FlagStatus.OPEN).select_related(
        "account", "assignee", "opened_by_run", "opened_by_event"
    )


def _search(q: str) -> Q:
    """An exact public or customer id, else the start of an email (case-insensitive), of the
    account or of any of its members.

    The accounts are found first, each form through its own index (public ids, lower(email)
    with pattern ops, on accounts and on members), and the flags by account: an OR across the
    join made PostgreSQL read every open flag's account (250 ms at 100k flags).
    """
    if q.startswith("cus_"):
        return Q(account__stripe_customer_id=q)
    # Any text may be a public id (an import takes any id of 1-64 characters, not only the
    # generated user-/acct- ones) or the start of an email: both are tried, each on its index.
    prefix = q.lower()
    accounts = Account.objects.alias(email_lower=Lower("email"))
    members = User.objects.alias(email_lower=Lower("email")).filter(account__isnull=False)
    found = (
        accounts.filter(public_id=q)
        .values("pk")
        .union(
            accounts.filter(email_lower__startswith=prefix).values("pk"),
            members.filter(public_id=q).values("account_id"),
            members.filter(email_lower__startswith=prefix).values("account_id"),
        )
    )
    return Q(account_id__in=found)


def review_queue_list(*, filters: QueueFilters, user: User) -> QuerySet[Flag]:
    flags = _flags_base()
    if filters.kind:
        flags = flags.filter(kind=filters.kind)
    if filters.age:
        flags = flags.filter(opened_at__lte=timezone.now() - timedelta(days=int(filters.age)))
    if filters.assignee == "me":
        flags = flags.filter(assignee=user)
    elif filters.assignee == "none":
        flags = flags.filter(assignee__isnull=True)
    elif filters.assignee:
        flags = flags.filter(assignee_id=int(filters.assignee))
    if filters.q:
        flags = flags.filter(_search(filters.q))
    key = filters.sort.lstrip("-")
    descending = filters.sort.startswith("-")
    order = [f"-{f}" if descending else f for f in SORTS[key]]
    return flags.order_by(*order)


def _grace_days_left(flag: Flag, now: datetime) -> int | None:
    ends = flag.account.grace_ends_at
    if ends is None:
        return None
    return max(0, math.ceil((ends - now).total_seconds() / 86400))


def flags_decorate(flags: Iterable[Flag], *, now: datetime | None = None) -> None:
    """Add grace_days_left (no query: the account is joined), and the account's members
    enabled / in all and its sessions now (one query and one session-index read a page)."""
    from accounts.services.sessions import sessions_live_counts

    now = now or timezone.now()
    flags = list(flags)
    members = list(
        User.objects.filter(account_id__in={flag.account_id for flag in flags}).values_list(
            "pk", "account_id", "is_active"
        )
    )
    live = sessions_live_counts(member_ids=[pk for pk, _, _ in members])
    per_account: dict[int, list[int]] = {}
    for pk, account_id, enabled in members:
        counts = per_account.setdefault(account_id, [0, 0, 0])
        counts[0] += 1
        counts[1] += enabled
        counts[2] += live.get(pk, 0)
    for flag in flags:
        flag.grace_days_left = _grace_days_left(flag, now)
        flag.members_total, flag.members_enabled, flag.sessions_now = per_account.get(
            flag.account_id, (0, 0, 0)
        )


@dataclass
class QueuePage:
    page: Page[Flag]
    filters: QueueFilters
    staff: list[tuple[int, str]]

    @property
    def sort_links(self) -> dict[str, dict[str, str]]:
        """Per sortable column: the query string that sorts by it, and its current direction."""
        return sort_links(
            keys=SORTS, sort=self.filters.sort, query_string=self.filters.query_string
        )

    @property
    def base_query(self) -> str:
        """The filters and sort without the page: what every page link adds its number to."""
        return self.filters.query_string(page=None)


def review_queue_page(*, filters: QueueFilters, user: User) -> QueuePage:
    """One page of the queue: a count, the page's rows and the assignee choices (3 queries)."""
    paginator = Paginator(review_queue_list(filters=filters, user=user), filters.per_page)
    page = paginator.get_page(filters.page)
    flags_decorate(page.object_list)
    staff = list(
        User.objects.filter(is_staff=True, is_active=True)
        .order_by("email")
        .values_list("id", "email")
    )
    return QueuePage(page=page, filters=filters, staff=staff)


def flag_row_get(*, flag_id: int) -> Flag:
    """One open-or-resolved flag with what its queue row shows, for HTMX row answers."""
    flag = Flag.objects.select_related(
        "account", "assignee", "opened_by_run", "opened_by_event"
    ).get(pk=flag_id)
    flags_decorate([flag])
    return flag


def flag_notes_list(*, flag: Flag, limit: int = 20) -> list[FlagNote]:
    return list(flag.notes.select_related("author").order_by("-created_at", "-id")[:limit])
