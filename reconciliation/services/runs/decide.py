"""Deciding a run: every account against the subscription statuses the listing found, in
batches; the brake on the share of accounts that would change."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import combinations, islice
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import AccessComp, AccessStatus, Account
from accounts.services.access_status import last_revoked_by_staff
from reconciliation.models import (
    Outcome,
    ReconciliationRun,
    RunLink,
    RunOutcome,
    Subscription,
    SubscriptionStatus,
)
from reconciliation.services.access_decisions import access_decide, seats_enabled_members
from reconciliation.services.runs.common import Progress
from reconciliation.services.sync import LinkPlan, server_cursor

ACCOUNT_BATCH = 2000
# Accounts that can use the product: the brake's denominator.
WITH_ACCESS = frozenset({AccessStatus.ACTIVE, AccessStatus.GRACE_PERIOD})
NO_SUBSCRIPTIONS: frozenset[str] = frozenset()

# (access status, grace ends at, subscription statuses, has a comp, revoked by staff) -> outcome
Decide = Callable[[str, datetime | None, frozenset[str], bool, bool], str]


class StatusSets:
    """customer id -> the set of its subscriptions' statuses, sets shared between customers.

    A million customers share a few dozen distinct sets, so memory is one dict entry each.
    """

    def __init__(self) -> None:
        self.by_customer: dict[str, frozenset[str]] = {}
        self._interned: dict[frozenset[str], frozenset[str]] = {}
        # customer id -> seats its access-granting per-seat subscriptions pay for (few entries:
        # only customers on per-seat prices).
        self.seats: dict[str, int] = {}

    def add(self, customer_id: str, status: str, seat_quantity: int | None = None) -> None:
        if seat_quantity is not None and status in settings.JANITOR_ACCESS_STATUSES:
            self.seats[customer_id] = self.seats.get(customer_id, 0) + seat_quantity
        current = self.by_customer.get(customer_id, NO_SUBSCRIPTIONS)
        if status in current:
            return
        merged = current | {status}
        self.by_customer[customer_id] = self._interned.setdefault(merged, merged)


def _decider(now: datetime) -> Decide:
    """access_decide, remembered per distinct situation: a million accounts fall into a few
    dozen (status, grace ended or not, subscription statuses, comp, staff revocation).

    access_decide is pure and uses grace_ends_at only against `now`, so a grace end stands in
    as "ended" (now) or "running" (a day later) without changing the answer.
    """
    remembered: dict[tuple[str, datetime | None, frozenset[str], bool, bool], str] = {}
    running = now + timedelta(days=1)

    def decide(
        access_status: str,
        grace_ends_at: datetime | None,
        sub_statuses: frozenset[str],
        has_comp: bool,
        staff_revoked: bool,
    ) -> str:
        grace = None if grace_ends_at is None else (now if grace_ends_at <= now else running)
        key = (access_status, grace, sub_statuses, has_comp, staff_revoked)
        outcome = remembered.get(key)
        if outcome is None:
            outcome = remembered[key] = access_decide(
                access_status=access_status,
                grace_ends_at=grace,
                sub_statuses=sub_statuses,
                has_active_comp=has_comp,
                revoked_by_staff=staff_revoked,
                now=now,
            )
        return outcome

    return decide


def _mirror_holds_subscriptions() -> bool:
    return Subscription.objects.exists()


def _statuses_linked_elsewhere(
    *, after_id: int, own_customer: dict[int, str]
) -> dict[int, frozenset[str]]:
    """Statuses of subscriptions linked to the batch's accounts under another customer id
    (found by metadata or email): webhooks decide from them too, so the run must.

    `own_customer` maps the batch's account ids to their customer id; the batch is the accounts
    with ids in (after_id, max(own_customer)]. One index range scan a batch, compared here: an
    IN list of 2,000 ids (or a join PostgreSQL plans as a scan of every account) cost much more
    (docs/benchmarks/audit.md). The mirror rows were refreshed from this run's listing.
    """
    found: dict[int, set[str]] = {}
    rows = Subscription.objects.filter(
        account_id__gt=after_id, account_id__lte=max(own_customer)
    ).values_list("account_id", "customer_id", "status")
    for account_id, customer_id, status in rows:
        own = own_customer.get(account_id)
        if own is not None and customer_id != own:
            found.setdefault(account_id, set()).add(status)
    return {account_id: frozenset(found_statuses) for account_id, found_statuses in found.items()}


def _unresolved_reason(plan: LinkPlan) -> str:
    """Why an account with no customer cannot be verified this run ("" when it can): some
    provider customer could not be looked up, and it could be that account's. Once a run."""
    if not plan.unresolved:
        return ""
    failed = sum(1 for why in plan.unresolved.values() if why.startswith("lookup failed"))
    capped = len(plan.unresolved) - failed
    parts = []
    if capped:
        parts.append(f"{capped} over the {settings.JANITOR_AUDIT_LINK_LOOKUPS} lookups a run")
    if failed:
        parts.append(f"{failed} failed")
    return (
        "no customer linked, and provider customers not looked up this run could be "
        f"this account's ({', '.join(parts)})"
    )


LISTING_UNREACHED = "the provider listing failed before reaching this account's customer"
LISTING_PARTIAL = (
    "the provider listing failed part way: subscriptions of this customer it did not read "
    "could change the outcome"
)
_ALL_SUBSCRIPTION_STATUSES = frozenset(SubscriptionStatus.values)


# (access status, grace ends at, subscription statuses, has a comp, revoked by staff) -> bool
Stands = Callable[[str, datetime | None, frozenset[str], bool, bool], bool]


def _stands_whatever_else(decide: Decide, now: datetime) -> Stands:
    """For a listing that failed part way: whether an outcome decided from the subscriptions
    read would stand whatever subscriptions of the customer were not read (the listing is
    read newest first, or in creation-time ranges at once, so a customer's others may lie in
    what failed). True when every set of further statuses leaves the outcome as it is: an
    active subscription read grants access whatever else exists, a lone canceled one does not
    prove the customer has no other. Remembered per situation (a few dozen, grace ends
    reduced to ended or running as in _decider), each trying at most 255 additions."""
    remembered: dict[tuple[str, bool | None, frozenset[str], bool, bool], bool] = {}

    def stands(
        access_status: str,
        grace_ends_at: datetime | None,
        sub_statuses: frozenset[str],
        has_comp: bool,
        staff_revoked: bool,
    ) -> bool:
        ended = None if grace_ends_at is None else grace_ends_at <= now
        key = (access_status, ended, sub_statuses, has_comp, staff_revoked)
        answer = remembered.get(key)
        if answer is None:
            outcome = decide(access_status, grace_ends_at, sub_statuses, has_comp, staff_revoked)
            others = sorted(_ALL_SUBSCRIPTION_STATUSES - sub_statuses)
            answer = remembered[key] = all(
                decide(
                    access_status,
                    grace_ends_at,
                    sub_statuses | frozenset(extra),
                    has_comp,
                    staff_revoked,
                )
                == outcome
                for size in range(1, len(others) + 1)
                for extra in combinations(others, size)
            )
        return answer

    return stands


def outcomes_decide(
    *,
    run: ReconciliationRun,
    statuses: StatusSets,
    listing_complete: bool,
    plan: LinkPlan,
    progress: Progress,
    links_staged: int = 0,
) -> tuple[Counter[str], Counter[str], int, int]:
    """Decide every account in batches; saves RunOutcome rows for the ones needing a change
    (or that could not be checked) and RunLink rows for the links the lookups found.

    Links are used in memory only: the decision is the same whether they are written later
    (an applied run) or never (a dry or halted run). The first `links_staged` of the plan's
    links were saved during the listing (run_links_stage_new); the rest are saved here.
    Returns (counts per outcome, not-checked reasons, accounts with access, customers with no
    account). Queries per batch: accounts, staff revocations, linked elsewhere, inserts.
    """
    counts: Counter[str] = Counter()
    unchecked_reasons: Counter[str] = Counter()
    with_access = 0
    matched_customers = 0
    now = timezone.now()
    last_id = 0
    decided = 0
    # Comps are a handful of deliberate grants: one read for the whole run beats an IN list
    # of thousands of ids per batch.
    comps = set(AccessComp.objects.filter(expires_at__gt=now).values_list("account_id", flat=True))
    decide = _decider(now)
    stands = _stands_whatever_else(decide, now)
    unresolved_reason = _unresolved_reason(plan)
    run_links_stage_new(run=run, plan=plan, staged=links_staged, final=True)
    while True:
        batch = list(
            Account.objects.filter(pk__gt=last_id)
            .order_by("pk")
            .values_list("pk", "access_status", "grace_ends_at", "stripe_customer_id")[
                :ACCOUNT_BATCH
            ]
        )
        if not batch:
            break
        after_id, last_id = last_id, batch[-1][0]
        revoked = [row[0] for row in batch if row[1] == AccessStatus.REVOKED]
        staff_revoked = last_revoked_by_staff(account_ids=revoked) if revoked else set()
        elsewhere = _statuses_linked_elsewhere(
            after_id=after_id, own_customer={row[0]: row[3] for row in batch}
        )
        pending: list[RunOutcome] = []
        # Seat drift: enabled members counted only for accounts on a per-seat price (one
        # query a batch, and none when no customer in the listing has one).
        members: dict[int, int] = {}
        if statuses.seats:
            members = seats_enabled_members(
                account_ids=[
                    row[0]
                    for row in batch
                    if (row[3] or (plan.by_account.get(row[0]) or ("",))[0]) in statuses.seats
                ]
            )
        for account_id, access_status, grace_ends_at, customer_id in batch:
            link = plan.by_account.get(account_id) if not customer_id else None
            if link is not None:
                customer_id = link[0]
            sub_statuses = statuses.by_customer.get(customer_id, NO_SUBSCRIPTIONS)
            if customer_id and customer_id in statuses.by_customer:
                matched_customers += 1
            if account_id in elsewhere:
                sub_statuses = sub_statuses | elsewhere[account_id]
            outcome = decide(
                access_status,
                grace_ends_at,
                sub_statuses,
                account_id in comps,
                account_id in staff_revoked,
            )
            if access_status in WITH_ACCESS:
                with_access += 1
            seat_detail = None
            if (
                outcome == Outcome.IN_SYNC
                and access_status in WITH_ACCESS
                and customer_id in statuses.seats
                and account_id not in comps
                and members.get(account_id, 0) > statuses.seats[customer_id]
            ):
                outcome = Outcome.FLAG_SEATS_EXCEEDED
                seat_detail = {"members": members[account_id], "seats": statuses.seats[customer_id]}
            unchecked = ""
            if not listing_complete and customer_id not in statuses.by_customer:
                unchecked = LISTING_UNREACHED
            elif not listing_complete and (
                outcome == Outcome.FLAG_SEATS_EXCEEDED  # unread subscriptions add seats
                or not stands(
                    access_status,
                    grace_ends_at,
                    sub_statuses,
                    account_id in comps,
                    account_id in staff_revoked,
                )
            ):
                unchecked = LISTING_PARTIAL
            elif not customer_id:
                unchecked = unresolved_reason
            if unchecked:
                counts[Outcome.NOT_CHECKED] += 1
                unchecked_reasons[unchecked] += 1
            else:
                counts[outcome] += 1
            if outcome == Outcome.IN_SYNC:
                continue
            detail: dict[str, Any] = {
                "access_status": access_status,
                "subscription_statuses": sorted(sub_statuses),
                "customer_id": customer_id,
            }
            if link is not None:
                detail["linked_by"] = link[1]
            if seat_detail is not None:
                detail.update(seat_detail)
            if unchecked:
                detail.update(would_be=outcome, reason=unchecked)
                outcome = Outcome.NOT_CHECKED
            pending.append(
                RunOutcome(run=run, account_id=account_id, outcome=outcome, detail=detail)
            )
        RunOutcome.objects.bulk_create(pending, batch_size=1000)
        decided += len(batch)
        progress.update(phase="deciding", accounts=decided)
    unmatched = len(statuses.by_customer) - matched_customers
    return counts, unchecked_reasons, with_access, unmatched


_STAGE_LINKS_SQL = f"""
INSERT INTO {RunLink._meta.db_table} (run_id, account_id, customer_id, how, applied, skip_reason)
SELECT %s, v.a, v.c, v.h, false, '' FROM json_to_recordset(%s::json) AS v(a bigint, c text, h text)
"""


# Links are saved this many a statement, and during the listing once this many are waiting.
LINK_STAGE_BATCH = 1000


def run_links_stage_new(*, run: ReconciliationRun, plan: LinkPlan, staged: int, final: bool) -> int:
    """Save the plan's links after the first `staged` (the plan only ever adds, so those are a
    prefix) as the run's RunLink rows; returns how many are saved now. During the listing
    (`final` False) only once a batch is waiting: a first night plans one link per account, and
    saving them while the listing waits on the provider keeps a million inserts out of the
    decision that follows it. A link saved is only a plan: links_apply writes it, re-checked,
    if the run is applied."""
    waiting = len(plan.by_account) - staged
    if waiting <= 0 or (not final and waiting < LINK_STAGE_BATCH):
        return staged
    # The newest `waiting` entries, oldest first, without walking the ones saved before.
    new = list(islice(reversed(plan.by_account.items()), waiting))[::-1]
    for start in range(0, len(new), LINK_STAGE_BATCH):
        chunk = new[start : start + LINK_STAGE_BATCH]
        run_links_stage(run=run, links=[(a, c, how) for a, (c, how) in chunk])
    return staged + waiting


def run_links_stage(*, run: ReconciliationRun, links: list[tuple[int, str, str]]) -> None:
    """Save planned links (account id, customer id, how) for the run to write if applied. On
    PostgreSQL one statement with one JSON parameter: a first night stages one per account,
    and bulk_create's model instances and quoted values cost more than the insert."""
    if connection.vendor == "postgresql":
        document = [{"a": a, "c": c, "h": h} for a, c, h in links]
        with server_cursor() as cursor:
            cursor.execute(_STAGE_LINKS_SQL, [run.pk, json.dumps(document)])
        return
    RunLink.objects.bulk_create(
        [RunLink(run=run, account_id=a, customer_id=c, how=how) for a, c, how in links]
    )


def brake_reason(*, changes: int, with_access: int, ratio: float) -> str:
    limit = settings.JANITOR_AUDIT_MAX_CHANGE_RATIO
    if ratio <= limit:
        return ""
    return (
        f"Safety brake: {changes} of {with_access} accounts with access would change access "
        f"status ({ratio:.1%}, the limit is {limit:.1%}). Nothing was applied; an Admin can "
        "review the outcomes and apply or discard them."
    )
