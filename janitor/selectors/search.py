"""Finding accounts: the Accounts page's filtered, sorted list and the top bar's search."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload
from urllib.parse import urlencode

from django.core.paginator import Page, Paginator
from django.db import OperationalError, connections, transaction
from django.db.models import Model, Q, QuerySet
from django.db.models.functions import Lower

from accounts.models import AccessStatus, Account, User
from janitor.sorting import sort_links
from reconciliation.models import Dispute, Subscription

MIN_FRAGMENT = 3
MAX_QUERY = 200
SEARCH_LIMIT = 25  # a search narrows down; past 25 matches the page asks for more characters
# Member rows a fragment search reads to find their accounts (many may share one account).
MEMBER_ROWS = 500
PAGE_SIZE = 50
# Sort key -> ORDER BY (a "-" in front sorts descending); the id keeps pages stable.
SORTS = {
    "email": ("email", "id"),
    "name": ("name", "id"),
    "status": ("access_status", "email", "id"),
    "joined": ("created_at", "id"),
    "grace": ("grace_ends_at", "id"),
}
DEFAULT_SORT = "email"
# Stripe id prefixes the search answers by exact match (the fragment search would not find
# them: they are not in an email or a name).
CUSTOMER_PREFIX = "cus_"
SUBSCRIPTION_PREFIX = "sub_"
CHARGE_PREFIXES = ("ch_", "py_")
DISPUTE_PREFIXES = ("dp_", "du_")


@dataclass(frozen=True)
class AccountFilters:
    status: str = ""
    q: str = ""
    sort: str = DEFAULT_SORT
    page: int = 1

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> AccountFilters:
        status = params.get("status", "")
        sort = params.get("sort", DEFAULT_SORT)
        try:
            page = max(1, int(params.get("page", 1)))
        except ValueError:
            page = 1
        return cls(
            status=status if status in AccessStatus.values else "",
            q=" ".join(params.get("q", "").split())[:MAX_QUERY],
            sort=sort if sort.lstrip("-") in SORTS else DEFAULT_SORT,
            page=page,
        )

    def query_string(self, **overrides: object) -> str:
        values = {"status": self.status, "q": self.q, "sort": self.sort, "page": self.page}
        values.update(overrides)
        return urlencode({k: v for k, v in values.items() if v not in ("", None, 1)})


@dataclass
class SearchResult:
    query: str
    accounts: list[Account] = field(default_factory=list)
    truncated: bool = False  # more matched than were fetched: refine the search
    too_short: bool = False  # no exact id matched and the fragment is under MIN_FRAGMENT

    @property
    def single(self) -> Account | None:
        return self.accounts[0] if len(self.accounts) == 1 and not self.truncated else None


def _customers() -> QuerySet[Account]:
    return Account.objects.all()


def _members_accounts(members: QuerySet[User]) -> Q:
    return Q(pk__in=members.exclude(account__isnull=True).values("account_id"))


def _exact_ids(query: str) -> list[Q]:
    """The ways an exact id can name accounts, tried in turn: public id, or a Stripe customer,
    subscription, charge or dispute id (through the mirror's indexed columns, never a payload
    scan). Each is its own index lookup: OR-ed together PostgreSQL would scan the table."""
    if query.startswith(CUSTOMER_PREFIX):
        return [
            Q(stripe_customer_id=query),
            Q(pk__in=Subscription.objects.filter(customer_id=query).values("account_id")),
            Q(pk__in=Dispute.objects.filter(customer_id=query).values("account_id")),
        ]
    if query.startswith(SUBSCRIPTION_PREFIX):
        return [Q(pk__in=Subscription.objects.filter(provider_id=query).values("account_id"))]
    if query.startswith(CHARGE_PREFIXES):
        return [Q(pk__in=Dispute.objects.filter(charge_id=query).values("account_id"))]
    if query.startswith(DISPUTE_PREFIXES):
        return [Q(pk__in=Dispute.objects.filter(provider_id=query).values("account_id"))]
    # An account's public id, else a member's (public id, or email typed whole).
    return [
        Q(public_id=query),
        _members_accounts(User.objects.filter(public_id=query)),
        _members_accounts(
            User.objects.annotate(email_ci=Lower("email")).filter(email_ci=query.lower())
        ),
    ]


def account_search(*, query: str, status: str = "", limit: int = SEARCH_LIMIT) -> SearchResult:
    """Accounts matching an exact id, else any part (MIN_FRAGMENT+ characters) of the email or
    name, case-insensitively. PostgreSQL answers the fragment from trigram indexes on
    LOWER(email) and LOWER(name) (accounts migration 0006); SQLite scans."""
    query = " ".join(query.split())[:MAX_QUERY]
    result = SearchResult(query=query)
    if not query:
        return result
    base = _customers()
    if status:
        base = base.filter(access_status=status)
    found: list[Account] = []
    for exact in _exact_ids(query):
        found = list(base.filter(exact).order_by("email", "id")[: limit + 1])
        if found:
            break
    if not found:
        if len(query) < MIN_FRAGMENT:
            result.too_short = True
            return result
        # No ORDER BY: with it PostgreSQL must fetch and sort every match of a common fragment
        # (seconds at 1M accounts); without it the scan stops at the limit. The page sorts
        # the few it shows.
        matches = {
            account.pk: account
            for account in _fragment_matches(
                fragment_queryset(query, base=base).order_by()[: limit + 1]
            )
        }
        members_capped = False
        if len(matches) <= limit:
            # A member's email or name finds the member's account. Member rows, not accounts,
            # are what the scan stops at: a team with many matching members must not hide the
            # other accounts, so read up to MEMBER_ROWS rows and say "refine" past them.
            members = User.objects.filter(account__isnull=False)
            if status:
                members = members.filter(account__access_status=status)
            member_accounts = _fragment_matches(
                fragment_queryset(query, base=members)
                .order_by()
                .values_list("account_id", flat=True)[:MEMBER_ROWS]
            )
            members_capped = len(member_accounts) >= MEMBER_ROWS
            wanted = [pk for pk in dict.fromkeys(member_accounts) if pk not in matches]
            if wanted:
                matches.update((a.pk, a) for a in base.filter(pk__in=wanted[: limit + 1]))
        found = sorted(matches.values(), key=lambda account: (account.email, account.pk))
        result.truncated = members_capped
    result.accounts = found[:limit]
    result.truncated = result.truncated or len(found) > limit
    return result


_M = TypeVar("_M", bound=Model)
_Row = TypeVar("_Row")


@overload
def fragment_queryset(fragment: str, *, base: None = None) -> QuerySet[Account]: ...
@overload
def fragment_queryset(fragment: str, *, base: QuerySet[_M]) -> QuerySet[_M]: ...
def fragment_queryset(fragment: str, *, base: QuerySet[Any] | None = None) -> QuerySet[Any]:
    """Accounts whose email or name contains the fragment, any case (LOWER(col) LIKE '%f%',
    the expressions the trigram indexes cover); or the rows of `base` (members) that match."""
    fragment = fragment.lower()
    base = _customers() if base is None else base
    return base.annotate(email_lower=Lower("email"), name_lower=Lower("name")).filter(
        Q(email_lower__contains=fragment) | Q(name_lower__contains=fragment)
    )


# How long the table scan may look for a fragment's first matches before the trigram index
# takes over (PostgreSQL). A common fragment ("smith", "@gmail") fills the page from the
# first few thousand rows; a rare one ("a.young277") would scan the whole table, which the
# index answers in milliseconds. The planner cannot tell them apart from LIKE's statistics.
FRAGMENT_SCAN_BUDGET_MS = 30
QUERY_CANCELED = "57014"


# What the fragment search changes for its own statements, read first and put back after: a
# SET LOCAL lasts until the enclosing transaction ends, and a caller inside one (a request in
# a transaction, a test) must not run the rest of it with a 30 ms timeout and no index scans.
_PLANNER_SETTINGS = (
    "statement_timeout",
    "enable_bitmapscan",
    "enable_indexscan",
    "enable_seqscan",
    "max_parallel_workers_per_gather",
)
_SETTINGS_READ = "SELECT " + ", ".join(f"current_setting('{name}')" for name in _PLANNER_SETTINGS)
_SETTINGS_PUT_BACK = "SELECT " + ", ".join(
    f"set_config('{name}', %s, true)" for name in _PLANNER_SETTINGS
)


def _fragment_matches(queryset: QuerySet[Any, _Row]) -> list[_Row]:
    """Run a fragment query the fast way for its kind: a table scan that stops at the limit
    for common fragments, the trigram index for rare ones (tried when the scan runs out of
    its budget). SQLite simply scans. The settings it changes are put back before it returns."""
    db = queryset.db
    connection = connections[db]
    if connection.vendor != "postgresql":
        return list(queryset)
    with transaction.atomic(using=db), connection.cursor() as cursor:
        cursor.execute(_SETTINGS_READ)
        saved = list(cursor.fetchone())
        rows = None
        try:
            with transaction.atomic(using=db):  # a savepoint: a cancel rolls back to here
                # set_config(..., true) is SET LOCAL, all in one round trip. No parallel
                # workers: starting them costs more than the few thousand rows read here.
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true), "
                    "set_config('enable_bitmapscan', 'off', true), "
                    "set_config('enable_indexscan', 'off', true), "
                    "set_config('max_parallel_workers_per_gather', '0', true)",
                    [str(int(FRAGMENT_SCAN_BUDGET_MS))],
                )
                rows = list(queryset)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != QUERY_CANCELED:
                raise
        if rows is None:
            # The savepoint's rollback undid its SET LOCALs: no timeout, and now the index.
            cursor.execute("SELECT set_config('enable_seqscan', 'off', true)")
            rows = list(queryset)
        cursor.execute(_SETTINGS_PUT_BACK, saved)
        return rows


@dataclass
class AccountListPage:
    filters: AccountFilters
    page: Page[Account]
    sort_links: dict[str, dict[str, str]]

    @property
    def base_query(self) -> str:
        """The filters and sort without the page: what every page link adds its number to."""
        return self.filters.query_string(page=1)


def account_list_page(*, filters: AccountFilters, per_page: int = PAGE_SIZE) -> AccountListPage:
    """Every customer account, optionally by access status, sorted and paginated."""
    qs = _customers()
    if filters.status:
        qs = qs.filter(access_status=filters.status)
    key = filters.sort.lstrip("-")
    order = SORTS[key]
    if filters.sort.startswith("-"):
        order = tuple(f"-{column}" for column in order)
    qs = qs.order_by(*order).only(
        "public_id",
        "email",
        "name",
        "access_status",
        "grace_ends_at",
        "created_at",
        "stripe_customer_id",
    )
    page = Paginator(qs, per_page).get_page(filters.page)
    return AccountListPage(
        filters=filters,
        page=page,
        sort_links=sort_links(keys=SORTS, sort=filters.sort, query_string=filters.query_string),
    )
