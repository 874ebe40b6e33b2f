"""The subscription mirror's bulk side: page upserts and the sync_stripe backfill with linking."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import Account
from reconciliation import gateway
from reconciliation.models import PROVIDER_STRIPE, Subscription
from reconciliation.services.subscriptions import subscription_fields

logger = logging.getLogger(__name__)

# The mirror fields the provider owns; a row is rewritten only when one of them changed.
MIRROR_FIELDS = (
    "status",
    "customer_id",
    "price_id",
    "plan_name",
    "amount",
    "currency",
    "interval",
    "current_period_end",
    "cancel_at_period_end",
    "seat_quantity",
)


@dataclass
class ParsedSubscription:
    provider_id: str
    fields: dict[str, Any]
    raw: dict[str, Any]
    # The customer object when the listing expanded it (expand[]=data.customer), else None.
    # The mirror's raw copy keeps only its id: the customer's details are not the mirror's.
    customer: dict[str, Any] | None = None


@dataclass
class PageResult:
    written: int = 0  # rows created or changed
    unknown_customers: set[str] = field(default_factory=set)  # no account has their id yet


def _parsed(obj: dict[str, Any]) -> ParsedSubscription:
    customer = obj.get("customer")
    if isinstance(customer, dict):
        obj = {**obj, "customer": customer.get("id")}
        return ParsedSubscription(obj["id"], subscription_fields(obj), obj, customer)
    return ParsedSubscription(obj["id"], subscription_fields(obj), obj)


def subscriptions_parse(objects: Iterable[dict[str, Any]]) -> list[ParsedSubscription]:
    return [_parsed(obj) for obj in objects]


def customer_accounts_map(*, customer_ids: Iterable[str]) -> dict[str, int]:
    """Customer id -> account id for the customers already linked, in one query."""
    wanted = [c for c in set(customer_ids) if c]
    if not wanted:
        return {}
    return dict(
        Account.objects.filter(stripe_customer_id__in=wanted).values_list(
            "stripe_customer_id", "id"
        )
    )


# One round trip per batch on PostgreSQL: the batch goes in as one JSON document, and what comes
# back is only the subscriptions that need a look: a customer without an account, a row to
# create, or a row whose values or account changed (and that no webhook updated since). With a
# settled mirror that is next to nothing: no datetimes to parse, no IN-list to build, both of
# which cost more than the query itself.
_JSON_TYPES = {
    "amount": "bigint",
    "current_period_end": "double precision",
    "cancel_at_period_end": "boolean",
    "seat_quantity": "integer",
}
_PAGE_COMPARE_SQL = f"""
SELECT v.provider_id, u.id, s.id IS NOT NULL, s.account_id,
       COALESCE(s.provider_updated_at > %s, false),
       ({", ".join(f's."{name}"' for name in MIRROR_FIELDS)})
         IS NOT DISTINCT FROM ({
    ", ".join(
        "to_timestamp(v.current_period_end)" if name == "current_period_end" else f'v."{name}"'
        for name in MIRROR_FIELDS
    )
})
FROM json_to_recordset(%s::json) AS v(provider_id text, {
    ", ".join(f'"{name}" {_JSON_TYPES.get(name, "text")}' for name in MIRROR_FIELDS)
})
LEFT JOIN {Subscription._meta.db_table} s ON s.provider_id = v.provider_id
LEFT JOIN {Account._meta.db_table} u ON u.stripe_customer_id = v.customer_id
   AND u.stripe_customer_id <> ''  -- lets PostgreSQL use the partial unique index
"""
_PAGE_COMPARE_SQL = f"""
SELECT * FROM ({_PAGE_COMPARE_SQL}) AS page (provider_id, account_id, present, linked_account_id,
                                            newer, same)
WHERE account_id IS NULL OR NOT present
   OR (NOT newer AND (NOT same OR account_id IS DISTINCT FROM linked_account_id))
"""


# The rows a batch must write, upserted in one statement from one JSON document (PostgreSQL):
# Django's bulk_create would quote every value of every row into the SQL on the client, which
# costs more than the insert itself on a first night, when every row is new.
_UPSERT_COLUMNS = ("account_id", "provider_updated_at", "raw", "updated_at", *MIRROR_FIELDS)
_PAGE_UPSERT_SQL = f"""
INSERT INTO {Subscription._meta.db_table} (provider, provider_id, account_id,
    {", ".join(f'"{name}"' for name in MIRROR_FIELDS)},
    provider_updated_at, raw, created_at, updated_at, customer_email)
SELECT %(provider)s, v.provider_id, v.account_id, {
    ", ".join(
        "to_timestamp(v.current_period_end)" if name == "current_period_end" else f'v."{name}"'
        for name in MIRROR_FIELDS
    )
}, %(fetched_at)s, v.raw, %(now)s, %(now)s, ''
FROM json_to_recordset(%(rows)s::json) AS v(provider_id text, account_id bigint, raw jsonb, {
    ", ".join(f'"{name}" {_JSON_TYPES.get(name, "text")}' for name in MIRROR_FIELDS)
})
ON CONFLICT (provider_id) DO UPDATE SET {
    ", ".join(f'"{name}" = EXCLUDED."{name}"' for name in _UPSERT_COLUMNS)
}
"""


def server_cursor() -> CursorWrapper:
    """A server-side-binding cursor: a JSON document goes as a parameter instead of being
    quoted into the SQL, and psycopg prepares the statement after a few batches. Wrapped in
    Django's cursor so query accounting (execute_wrapper, debug logging) still sees it."""
    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    # django-stubs types the argument as Django's CursorWrapper; Django wraps a DB-API cursor.
    return wrap(raw)  # type: ignore[arg-type]


def _page_upsert_postgres(
    rows: list[tuple[ParsedSubscription, int | None]], fetched_at: datetime
) -> None:
    documents = []
    for sub, account_id in rows:
        row: dict[str, Any] = {"provider_id": sub.provider_id, "account_id": account_id}
        row.update(sub.fields, raw=sub.raw)
        end = row["current_period_end"]
        row["current_period_end"] = end.timestamp() if end is not None else None
        documents.append(row)
    params: dict[str, Any] = {
        "provider": PROVIDER_STRIPE,
        "fetched_at": fetched_at,
        "now": timezone.now(),
        "rows": json.dumps(documents),
    }
    with server_cursor() as cursor:
        cursor.execute(_PAGE_UPSERT_SQL, params)


def _page_json(subscriptions: list[ParsedSubscription]) -> str:
    rows = []
    for sub in subscriptions:
        row = {"provider_id": sub.provider_id, **sub.fields}
        end = row["current_period_end"]
        row["current_period_end"] = end.timestamp() if end is not None else None
        rows.append(row)
    return json.dumps(rows)


@dataclass
class _MirrorState:
    """A subscription that needs a look; the others are linked, present and unchanged."""

    account_id: int | None  # the customer's account, by stripe_customer_id
    exists: bool
    linked_account_id: int | None
    newer: bool  # a webhook applied something newer than this listing
    same: bool


def _page_compare_postgres(
    subscriptions: list[ParsedSubscription], fetched_at: datetime
) -> dict[str, _MirrorState]:
    with server_cursor() as cursor:
        cursor.execute(_PAGE_COMPARE_SQL, [fetched_at, _page_json(subscriptions)])
        return {row[0]: _MirrorState(*row[1:]) for row in cursor.fetchall()}


def _page_compare_orm(
    subscriptions: list[ParsedSubscription], fetched_at: datetime
) -> dict[str, _MirrorState]:
    accounts = customer_accounts_map(customer_ids=(s.fields["customer_id"] for s in subscriptions))
    existing = {
        row[0]: row[1:]
        for row in Subscription.objects.filter(
            provider_id__in=[s.provider_id for s in subscriptions]
        ).values_list("provider_id", "provider_updated_at", "account_id", *MIRROR_FIELDS)
    }
    states = {}
    for sub in subscriptions:
        account_id = accounts.get(sub.fields["customer_id"])
        before = existing.get(sub.provider_id)
        if before is None:
            states[sub.provider_id] = _MirrorState(account_id, False, None, False, False)
            continue
        updated_at, linked_account_id, *values = before
        same = tuple(values) == tuple(sub.fields[name] for name in MIRROR_FIELDS)
        states[sub.provider_id] = _MirrorState(
            account_id, True, linked_account_id, updated_at > fetched_at, same
        )
    return states


def mirror_page_upsert(
    *, subscriptions: list[ParsedSubscription], fetched_at: datetime, write: bool = True
) -> PageResult:
    """Bring a batch of provider subscriptions into the mirror.

    One query a batch on PostgreSQL when nothing changed (two on SQLite), plus one upsert for
    the rows that did: a nightly run over a settled mirror only reads. A row a webhook updated
    after `fetched_at` is left alone: it is newer than this listing.
    """
    result = PageResult()
    if not subscriptions:
        return result
    if connection.vendor == "postgresql":
        states = _page_compare_postgres(subscriptions, fetched_at)
    else:
        states = _page_compare_orm(subscriptions, fetched_at)
    result.unknown_customers = {
        s.fields["customer_id"]
        for s in subscriptions
        if s.provider_id in states and states[s.provider_id].account_id is None
    }
    if not write:
        return result
    changed: list[tuple[ParsedSubscription, int | None]] = []
    for sub in subscriptions:
        state = states.get(sub.provider_id)
        if state is None:
            continue
        # A row linked by other means (metadata, email) keeps its account.
        account_id = state.account_id or state.linked_account_id
        if state.exists and (state.newer or (state.same and account_id == state.linked_account_id)):
            continue
        changed.append((sub, account_id))
    if changed and connection.vendor == "postgresql":
        _page_upsert_postgres(changed, fetched_at)
    elif changed:
        Subscription.objects.bulk_create(
            [
                Subscription(
                    provider_id=sub.provider_id,
                    account_id=account_id,
                    provider_updated_at=fetched_at,
                    raw=sub.raw,
                    **sub.fields,
                )
                for sub, account_id in changed
            ],
            update_conflicts=True,
            unique_fields=["provider_id"],
            update_fields=["account", "provider_updated_at", "raw", "updated_at", *MIRROR_FIELDS],
        )
    result.written = len(changed)
    return result


@dataclass
class SyncReport:
    pages: int = 0
    subscriptions: int = 0
    written: int = 0
    linked: list[tuple[str, str, str]] = field(default_factory=list)  # customer, public id, how
    # False: links are counted, not listed (a reconciliation run keeps them in its LinkPlan and
    # writes them as RunLinks; a first night can link a million).
    keep_linked: bool = True
    linked_count: int = 0
    unmatched: list[str] = field(default_factory=list)
    ambiguous: list[tuple[str, str]] = field(default_factory=list)  # customer, why


_IN_CHUNK = 5000


def _accounts_by_public_id(public_ids: set[str]) -> dict[str, Account]:
    found: dict[str, Account] = {}
    ordered = sorted(public_ids)
    for start in range(0, len(ordered), _IN_CHUNK):
        for account in Account.objects.filter(
            public_id__in=ordered[start : start + _IN_CHUNK]
        ).only("id", "public_id", "stripe_customer_id"):
            found[account.public_id] = account
    return found


def _accounts_by_email(emails: set[str]) -> dict[str, list[Account]]:
    """Lower-cased email -> the accounts using it (at most one: the address is unique, case
    aside; a list so that a database without that rule still reads as ambiguous)."""
    found: dict[str, list[Account]] = {}
    ordered = sorted(emails)
    for start in range(0, len(ordered), _IN_CHUNK):
        rows = (
            Account.objects.annotate(email_ci=Lower("email"))
            .exclude(email="")  # the unique index on lower(email) is partial: email <> ''
            .filter(email_ci__in=ordered[start : start + _IN_CHUNK])
            .only("id", "public_id", "stripe_customer_id", "email")
        )
        for account in rows:
            found.setdefault(account.email.lower(), []).append(account)
    return found


def _link_candidates_many(
    customers: Iterable[dict[str, Any]],
) -> dict[str, tuple[Account | None, str]]:
    """For each customer: (the one account it should link to, how) or (None, why not), by
    metadata.account_id, then a unique email. Two queries for any number of customers."""
    customers = list(customers)
    wanted_ids: set[str] = set()
    wanted_emails: set[str] = set()
    for customer in customers:
        metadata = customer.get("metadata") or {}
        if metadata.get("account_id"):
            wanted_ids.add(str(metadata["account_id"]))
        email = (customer.get("email") or "").strip()
        if email:
            wanted_emails.add(email.lower())
    by_public_id = _accounts_by_public_id(wanted_ids) if wanted_ids else {}
    by_email_all = _accounts_by_email(wanted_emails) if wanted_emails else {}
    answers: dict[str, tuple[Account | None, str]] = {}
    for customer in customers:
        answers[customer["id"]] = _link_choice(customer, by_public_id, by_email_all)
    return answers


def _link_choice(
    customer: dict[str, Any],
    by_public_id: dict[str, Account],
    by_email_all: dict[str, list[Account]],
) -> tuple[Account | None, str]:
    metadata = customer.get("metadata") or {}
    email = (customer.get("email") or "").strip()
    by_metadata = None
    if metadata.get("account_id"):
        by_metadata = by_public_id.get(str(metadata["account_id"]))
    by_email = None
    if email:
        matches = by_email_all.get(email.lower(), [])
        if len(matches) > 1:
            return None, f"ambiguous: several accounts use {email}"
        by_email = matches[0] if matches else None
    if by_metadata and by_email and by_metadata.pk != by_email.pk:
        return None, "ambiguous: metadata.account_id and email name different accounts"
    candidate = by_metadata or by_email
    if candidate is None:
        return None, "unmatched"
    if candidate.stripe_customer_id and candidate.stripe_customer_id != customer["id"]:
        return None, (
            f"ambiguous: {candidate.public_id} is already linked to {candidate.stripe_customer_id}"
        )
    return candidate, "metadata.account_id" if by_metadata else "email"


def _link_candidates(*, customer: dict[str, Any]) -> tuple[Account | None, str]:
    """(the one account this customer should link to, how) or (None, why not)."""
    return _link_candidates_many([customer])[customer["id"]]


@dataclass
class LinkPlan:
    """What looking up unknown customers found, before anything is written."""

    # account id -> (customer id, how): the account the customer belongs to.
    by_account: dict[int, tuple[str, str]] = field(default_factory=dict)
    # customer id -> email ("" if none) of customers looked up now that match no account: kept
    # on their waiting rows, so they are not asked for again and match an account created later.
    unmatched_emails: dict[str, str] = field(default_factory=dict)
    # Customers not looked up (over the cap) or whose lookup failed: accounts that might be
    # theirs cannot be verified this run.
    unresolved: dict[str, str] = field(default_factory=dict)  # customer id -> why

    def _take(
        self, *, customer_id: str, candidate: Account | None, how: str, report: SyncReport
    ) -> bool:
        if candidate is not None:
            if candidate.pk in self.by_account:
                taken = self.by_account[candidate.pk][0]
                report.ambiguous.append(
                    (customer_id, f"ambiguous: {candidate.public_id} also matches {taken}")
                )
                return False
            self.by_account[candidate.pk] = (customer_id, how)
            report.linked_count += 1
            if report.keep_linked:
                report.linked.append((customer_id, candidate.public_id, how))
            return True
        if how == "unmatched":
            report.unmatched.append(customer_id)
        else:
            report.ambiguous.append((customer_id, how))
        return False


def customers_known_unmatched(*, customer_ids: list[str]) -> dict[str, str]:
    """Customers an earlier run looked up and matched to no account: id -> stored email."""
    known: dict[str, str] = {}
    for start in range(0, len(customer_ids), 5000):
        rows = (
            Subscription.objects.filter(
                customer_id__in=customer_ids[start : start + 5000],
                account__isnull=True,
                customer_checked_at__isnull=False,
            )
            .values_list("customer_id", "customer_email")
            .distinct()
        )
        known.update(rows)
    return known


def customers_link_local(*, emails: dict[str, str], plan: LinkPlan, report: SyncReport) -> None:
    """Match customers looked up before by their stored email, without a provider call (an
    account may have been created with it since)."""
    with_email = [{"id": c, "email": e} for c, e in sorted(emails.items()) if e]
    answers = _link_candidates_many(with_email)
    for customer_id, email in sorted(emails.items()):
        if not email:
            report.unmatched.append(customer_id)
            continue
        candidate, how = answers[customer_id]
        plan._take(customer_id=customer_id, candidate=candidate, how=how, report=report)


def customers_link_listed(
    *, customers: Iterable[dict[str, Any]], plan: LinkPlan, report: SyncReport
) -> None:
    """Plan links for customers the subscription listing carried expanded (email, metadata):
    no provider call at all, two queries for the lot. Customers with no account keep their
    email for their waiting rows (plan.unmatched_emails), as a lookup would."""
    listed = sorted(customers, key=lambda customer: customer["id"])
    answers = _link_candidates_many(c for c in listed if not c.get("deleted"))
    for customer in listed:
        customer_id = customer["id"]
        if customer.get("deleted"):
            report.unmatched.append(customer_id)
            plan.unmatched_emails[customer_id] = ""
            continue
        candidate, how = answers[customer_id]
        if not plan._take(customer_id=customer_id, candidate=candidate, how=how, report=report):
            plan.unmatched_emails[customer_id] = (customer.get("email") or "").strip()[:254]


def customers_link_plan(
    *, customer_ids: Iterable[str], report: SyncReport, plan: LinkPlan | None = None
) -> LinkPlan:
    """Find the account of each customer no account knows yet (metadata.account_id, then a
    unique email), writing nothing. One provider call per customer.
    """
    plan = plan if plan is not None else LinkPlan()
    for customer_id in sorted(set(customer_ids)):
        try:
            customer = gateway.customer_retrieve(customer_id=customer_id)
        except gateway.GatewayAuthError:
            raise  # a wrong or restricted key fails the whole run, not one customer
        except gateway.GatewayError as exc:
            report.ambiguous.append((customer_id, f"customer lookup failed: {exc}"))
            plan.unresolved[customer_id] = f"lookup failed: {exc}"
            continue
        if customer.get("deleted"):
            report.unmatched.append(customer_id)
            plan.unmatched_emails[customer_id] = ""
            continue
        candidate, how = _link_candidates(customer=customer)
        if not plan._take(customer_id=customer_id, candidate=candidate, how=how, report=report):
            plan.unmatched_emails[customer_id] = (customer.get("email") or "").strip()[:254]
    return plan


def customer_links_write(*, links: list[tuple[int, str]]) -> dict[int, str]:
    """Store planned links (account id, customer id), each re-checked under its account's row
    lock at the moment of writing. Returns account id -> why not, for the links not written
    ("" never appears: a link already in place counts as written).

    A batch costs a fixed number of statements: lock the customers' waiting mirror rows, then
    the accounts (each in id order, so two writers cannot deadlock), read who holds the
    customers, write the accounts in one UPDATE, and give the waiting mirror rows to their
    accounts in another.

    Mirror rows before accounts, as webhook processing takes them (subscription_apply locks
    its row, then links and updates the account): the other order deadlocked with a webhook
    for a customer the batch was linking, which PostgreSQL resolved by aborting one of them.
    """
    refused: dict[int, str] = {}
    if not links:
        return refused
    with transaction.atomic():
        list(
            Subscription.objects.select_for_update()
            .filter(customer_id__in=[c for _, c in links], account__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        current = dict(
            Account.objects.select_for_update()
            .filter(pk__in=[account_id for account_id, _ in links])
            .order_by("pk")
            .values_list("pk", "stripe_customer_id")
        )
        holders = dict(
            Account.objects.filter(stripe_customer_id__in=[c for _, c in links])
            .exclude(stripe_customer_id="")
            .values_list("stripe_customer_id", "pk")
        )
        to_write: list[tuple[int, str]] = []
        linked: list[str] = []
        for account_id, customer_id in links:
            if account_id not in current:
                refused[account_id] = "the account no longer exists"
            elif current[account_id] and current[account_id] != customer_id:
                refused[account_id] = "linked to another customer since the run"
            elif holders.get(customer_id, account_id) != account_id:
                refused[account_id] = "the customer was linked to another account since the run"
            else:
                if not current[account_id]:
                    to_write.append((account_id, customer_id))
                    holders[customer_id] = account_id
                linked.append(customer_id)
        if connection.vendor == "postgresql":
            _links_write_postgres(accounts=to_write, linked=[(holders[c], c) for c in linked])
            return refused
        Account.objects.bulk_update(
            [Account(pk=pk, stripe_customer_id=customer) for pk, customer in to_write],
            ["stripe_customer_id"],
        )
        if linked:
            Subscription.objects.filter(customer_id__in=linked, account__isnull=True).update(
                account_id=Subquery(
                    Account.objects.filter(stripe_customer_id=OuterRef("customer_id")).values("pk")[
                        :1
                    ]
                )
            )
    return refused


_LINK_ACCOUNTS_SQL = f"""
UPDATE {Account._meta.db_table} AS a SET stripe_customer_id = v.customer_id
FROM json_to_recordset(%s::json) AS v(id bigint, customer_id text) WHERE a.id = v.id
"""
_LINK_WAITING_SQL = f"""
UPDATE {Subscription._meta.db_table} AS s SET account_id = v.id
FROM json_to_recordset(%s::json) AS v(id bigint, customer_id text)
WHERE s.customer_id = v.customer_id AND s.account_id IS NULL
"""


def _links_write_postgres(
    *, accounts: list[tuple[int, str]], linked: list[tuple[int, str]]
) -> None:
    """The two writes of customer_links_write, each one statement with one JSON parameter
    (bulk_update's CASE and quoted lists cost more than the updates themselves)."""
    with server_cursor() as cursor:
        if accounts:
            document = [{"id": a, "customer_id": c} for a, c in accounts]
            cursor.execute(_LINK_ACCOUNTS_SQL, [json.dumps(document)])
        if linked:
            document = [{"id": a, "customer_id": c} for a, c in linked]
            cursor.execute(_LINK_WAITING_SQL, [json.dumps(document)])


def customer_link_write(*, account_id: int, customer_id: str) -> str:
    """Store one planned link, re-checked under the account's row lock. Returns "" when linked
    (or already linked to this customer), else why not."""
    refused = customer_links_write(links=[(account_id, customer_id)])
    return refused.get(account_id, "")


def waiting_emails_store(*, emails: dict[str, str]) -> None:
    """Mark customers just looked up and matched to no account on their waiting rows (email
    and when): later runs do not ask for them again, and an account created later with that
    email links them (subscriptions_link_waiting). Mirror data, not an account change."""
    now = timezone.now()
    for customer_id, email in emails.items():
        Subscription.objects.filter(customer_id=customer_id, account__isnull=True).update(
            customer_email=email, customer_checked_at=now
        )


def _links_write(*, plan: LinkPlan) -> dict[str, int]:
    links = [(account_id, customer_id) for account_id, (customer_id, _) in plan.by_account.items()]
    linked: dict[str, int] = {}
    for start in range(0, len(links), _IN_CHUNK):
        batch = links[start : start + _IN_CHUNK]
        refused = customer_links_write(links=batch)
        linked.update({c: a for a, c in batch if a not in refused})
    waiting_emails_store(emails=plan.unmatched_emails)
    return linked


def customers_link(*, customer_ids: Iterable[str], report: SyncReport) -> dict[str, int]:
    """Look up and link customers no account knows yet (sync_stripe's backfill)."""
    return _links_write(plan=customers_link_plan(customer_ids=customer_ids, report=report))


def stripe_sync(*, on_page: Callable[[SyncReport], None] | None = None) -> SyncReport:
    """Backfill the mirror from every provider subscription and link customers to accounts.

    The listing carries each customer (expand[]=data.customer), so linking costs no call per
    customer; a customer it did not carry expanded is looked up. Re-running it changes nothing:
    unchanged rows are skipped and linked customers stay linked. A listing failure raises
    GatewayError after the pages already read were saved.
    """
    report = SyncReport()
    unknown: set[str] = set()
    expanded: dict[str, dict[str, Any]] = {}
    for page in gateway.subscription_pages(status="all", limit=100, expand_customer=True):
        fetched_at = page.fetched_at  # when it was asked for, not when it is written
        parsed = subscriptions_parse(page)
        result = mirror_page_upsert(subscriptions=parsed, fetched_at=fetched_at)
        report.pages += 1
        report.subscriptions += len(parsed)
        report.written += result.written
        for sub in parsed:
            customer_id = sub.fields["customer_id"]
            if customer_id not in result.unknown_customers:
                continue
            if sub.customer is not None:
                expanded[customer_id] = sub.customer
            else:
                unknown.add(customer_id)
        if on_page is not None:
            on_page(report)
    plan = LinkPlan()
    customers_link_listed(customers=expanded.values(), plan=plan, report=report)
    _links_write(plan=plan)
    customers_link(customer_ids=unknown - expanded.keys(), report=report)
    return report
