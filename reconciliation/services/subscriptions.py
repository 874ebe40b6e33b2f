"""Applying the provider's view of a subscription to the mirror and to the account's access."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Lower

from accounts.models import Account
from reconciliation.models import (
    ReconciliationRun,
    Subscription,
    SubscriptionStatus,
    WebhookEvent,
)
from reconciliation.services.access_decisions import account_access_sync

# A subscription never leaves these at Stripe: an event claiming otherwise is older news.
TERMINAL_STATUSES = frozenset({SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED})
# A frozenset of plain strings: reconciliation checks a million of these a night.
_STATUS_VALUES = frozenset(SubscriptionStatus.values)


def _timestamp(value: Any) -> datetime | None:  # any JSON value: int() refuses the rest
    if value in (None, "", 0):
        return None
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _customer_id(value: object) -> str:
    if isinstance(value, dict):  # expanded customer object
        return str(value.get("id") or "")
    return str(value or "")


def _per_seat(price: object) -> bool:
    metadata = price.get("metadata") if isinstance(price, dict) else None
    if isinstance(metadata, dict) and str(metadata.get("per_seat", "")).lower() in {"true", "1"}:
        return True
    return isinstance(price, dict) and str(price.get("id") or "") in settings.JANITOR_SEAT_PRICES


def seat_quantity(items: list[Any]) -> int | None:
    """Seats paid for: the summed quantity of the per-seat items, or None when no item is
    per-seat (JANITOR_SEAT_PRICES, or the price's metadata per_seat=true). A flat Enterprise
    price has quantity 1 and never counts seats."""
    seats = None
    for item in items:
        if not isinstance(item, dict):
            continue
        price = item.get("price") or item.get("plan") or {}
        if not _per_seat(price):
            continue
        quantity = item.get("quantity")
        quantity = quantity if isinstance(quantity, int) and quantity >= 0 else 1
        seats = (seats or 0) + quantity
    return seats


def subscription_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The mirror's fields from a subscription object of any API version Stripe may send."""
    items = ((obj.get("items") or {}).get("data") or [{}]) if isinstance(obj, dict) else [{}]
    item = items[0] if items and isinstance(items[0], dict) else {}
    price = item.get("price") or {}
    legacy_plan = obj.get("plan") or item.get("plan") or {}
    recurring = price.get("recurring") or {}
    status = obj.get("status") or ""
    if status not in _STATUS_VALUES:
        raise ValueError(f"unknown subscription status {status!r}")
    amount = price.get("unit_amount", legacy_plan.get("amount"))
    return {
        "status": status,
        "customer_id": _customer_id(obj.get("customer")),
        "price_id": str(price.get("id") or legacy_plan.get("id") or ""),
        "plan_name": str(price.get("nickname") or legacy_plan.get("nickname") or "")[:255],
        "amount": int(amount) if isinstance(amount, int | float) and amount >= 0 else None,
        "currency": str(price.get("currency") or legacy_plan.get("currency") or "")[:3],
        "interval": str(recurring.get("interval") or legacy_plan.get("interval") or "")[:10],
        "current_period_end": _timestamp(
            item.get("current_period_end") or obj.get("current_period_end")
        ),
        "cancel_at_period_end": bool(obj.get("cancel_at_period_end")),
        "seat_quantity": seat_quantity(items),
    }


def _unique_account_by_email(email: str) -> Account | None:
    matches = list(
        Account.objects.annotate(email_ci=Lower("email")).filter(email_ci=email.strip().lower())[:2]
    )
    return matches[0] if len(matches) == 1 else None


def account_link(
    *, customer_id: str, metadata: dict[str, Any] | None = None, email: str | None = None
) -> Account | None:
    """Find the account a provider customer belongs to: customer id, metadata, then unique email
    (reconciliation's rules).

    When found by metadata or email, the customer id is stored on the account so the next
    lookup is the cheap one.
    """
    if customer_id:
        account = Account.objects.filter(stripe_customer_id=customer_id).first()
        if account is not None:
            return account
    account = None
    by_email = False
    public_id = str((metadata or {}).get("account_id") or "")
    if public_id:
        account = Account.objects.filter(public_id=public_id).first()
    if account is None and email:
        account = _unique_account_by_email(email)
        by_email = True
        if (
            account is not None
            and account.stripe_customer_id
            and account.stripe_customer_id != customer_id
        ):
            return None  # that person already pays through another customer: not a match
    if account is not None and customer_id and not account.stripe_customer_id:
        taken = Account.objects.filter(stripe_customer_id=customer_id).exists()
        if not taken:
            linked = Account.objects.filter(pk=account.pk, stripe_customer_id="").update(
                stripe_customer_id=customer_id
            )
            if linked:
                account.stripe_customer_id = customer_id
            else:
                # Linked meanwhile by another worker (two customers of one email, their first
                # events at once): decided again on what it wrote, as it would have been after.
                account.refresh_from_db(fields=["stripe_customer_id"])
                if by_email and account.stripe_customer_id != customer_id:
                    return None
    return account


def customer_email_prefetch(*, obj: dict[str, Any]) -> str | None:
    """The email of a subscription's customer when no account knows the customer yet, read
    from the provider before any lock is taken; None when not needed or not reachable (the
    row then waits, and the nightly audit looks again)."""
    customer_id = _customer_id(obj.get("customer"))
    if not customer_id or Account.objects.filter(stripe_customer_id=customer_id).exists():
        return None
    waiting = (
        Subscription.objects.filter(customer_id=customer_id, account__isnull=True)
        .exclude(customer_email="")
        .values_list("customer_email", flat=True)
        .first()
    )
    if waiting:
        return waiting
    customer = obj.get("customer")
    if isinstance(customer, dict) and customer.get("email"):
        return str(customer["email"])
    from reconciliation import gateway

    try:
        found = gateway.customer_retrieve(customer_id=customer_id)
    except gateway.GatewayError:
        return None
    return None if found.get("deleted") else (found.get("email") or None)


class SameSecondTie(Exception):
    """Two views of one subscription stamped within the same second, different, and nothing
    tells which is newer: applying either could roll the other back. The caller asks the
    provider again (a webhook's retry: its prefetch re-reads the subscription)."""


def _same_second_tie(
    *,
    mirror: Subscription,
    fields: dict[str, Any],
    provider_time: datetime,
    view: str | None,
    fetched_at: datetime | None,
) -> bool:
    """Decided under the mirror row's lock, at the moment of writing: a webhook's prefetch
    looks for a tie before any lock, and a second worker can write one in between.

    view "event": the event's own object, stamped with its whole-second time. Any different
    view of that same second is a tie (the prefetch would have asked the provider).
    view "fetched": a view read from the provider at `fetched_at`. An event's view of the same
    second written to the mirror since that read began may describe a later change (its time
    is rounded down to the second): a tie. One written before the read was older than it."""
    if view is None or mirror.provider_updated_at == datetime.min.replace(tzinfo=UTC):
        return False
    if mirror.provider_updated_at.replace(microsecond=0) != provider_time.replace(microsecond=0):
        return False
    if (mirror.status, mirror.cancel_at_period_end) == (
        fields["status"],
        fields["cancel_at_period_end"],
    ):
        return False
    if view == "event":
        return True
    return (
        fetched_at is not None
        and mirror.provider_updated_at.microsecond == 0
        and mirror.updated_at >= fetched_at
    )


@dataclass
class ApplyResult:
    subscription: Subscription | None
    applied: bool
    account: Account | None
    outcome: str | None


def subscription_apply(
    *,
    obj: dict[str, Any],
    provider_time: datetime,
    actor: str,
    source: str,
    event: WebhookEvent | None = None,
    run: ReconciliationRun | None = None,
    customer_email: str | None = None,
    view: str | None = None,
) -> ApplyResult:
    """Apply the provider's view of one subscription: mirror first, then the account's access.

    Order safety by provider time: the mirror keeps the time of the newest change applied, and
    an older view is skipped (webhooks arrive out of order). Runs under a row lock on the mirror
    row, so two workers with events for one subscription serialise. `view` says what a webhook
    applies ("event": the event's object; "fetched": read from the provider at provider_time):
    two views of one second that cannot be ordered raise SameSecondTie, nothing written.
    """
    provider_id = str(obj.get("id") or "")
    if not provider_id:
        raise ValueError("subscription object without an id")
    fields = subscription_fields(obj)
    with transaction.atomic():
        # Make sure the row exists (no-op if it does), then lock it.
        Subscription.objects.bulk_create(
            [
                Subscription(
                    provider_id=provider_id,
                    provider_updated_at=datetime.min.replace(tzinfo=UTC),
                    raw={},
                    **fields,
                )
            ],
            ignore_conflicts=True,
        )
        mirror = Subscription.objects.select_for_update().get(provider_id=provider_id)
        if _same_second_tie(
            mirror=mirror,
            fields=fields,
            provider_time=provider_time,
            view=view,
            fetched_at=provider_time if view == "fetched" else None,
        ):
            raise SameSecondTie(
                f"{provider_id}: a view of the same second ({mirror.status}) was applied "
                "meanwhile; the provider is asked again on the retry"
            )
        # A row made just now carries the minimum time and this view's own status: never stale.
        stale = provider_time < mirror.provider_updated_at or (
            mirror.status in TERMINAL_STATUSES and fields["status"] not in TERMINAL_STATUSES
        )
        account = mirror.account
        if account is None:
            account = account_link(
                customer_id=fields["customer_id"],
                metadata=obj.get("metadata") or {},
                email=customer_email,
            )
        if stale and account == mirror.account:
            return ApplyResult(mirror, False, account, None)
        if not stale:
            for name, value in fields.items():
                setattr(mirror, name, value)
            mirror.provider_updated_at = provider_time
            mirror.raw = obj
        mirror.account = account
        if account is None and customer_email:
            mirror.customer_email = customer_email[:254]
        mirror.save()
        outcome = None
        if account is not None:
            outcome = account_access_sync(
                account=account, actor=actor, source=source, run=run, event=event
            )
    return ApplyResult(mirror, not stale, account, outcome)


def subscriptions_link_waiting(*, account: Account, actor: str, source: str) -> int:
    """Attach mirror rows that arrived before their account (an import, a new account, a
    webhook for a customer not yet known), by reconciliation's rules: the account's customer id,
    metadata.account_id, or the customer's email when it is unique among accounts and names
    one customer. Then decide the account's access from them. Returns the rows linked.
    """
    waiting = Subscription.objects.filter(account__isnull=True)
    with transaction.atomic():
        by_id = Q(raw__metadata__account_id=account.public_id)
        if account.stripe_customer_id:
            by_id |= Q(customer_id=account.stripe_customer_id)
        rows = list(waiting.filter(by_id).select_for_update().values_list("pk", "customer_id"))
        if not account.stripe_customer_id and account.email:
            by_email = list(
                waiting.annotate(email_ci=Lower("customer_email"))
                .filter(email_ci=account.email.strip().lower())
                .select_for_update()
                .values_list("pk", "customer_id")
            )
            # One customer with that email: the account's. Several: nobody can tell which.
            if len({customer_id for _, customer_id in by_email}) == 1:
                rows += by_email
        if not rows:
            return 0
        customers = {customer_id for _, customer_id in rows if customer_id}
        if not account.stripe_customer_id and len(customers) == 1:
            customer_id = next(iter(customers))
            if not Account.objects.filter(stripe_customer_id=customer_id).exists():
                Account.objects.filter(pk=account.pk, stripe_customer_id="").update(
                    stripe_customer_id=customer_id
                )
                account.stripe_customer_id = customer_id
        linked = Subscription.objects.filter(pk__in={pk for pk, _ in rows}).update(account=account)
    account_access_sync(account=account, actor=actor, source=source)
    return linked


def subscriptions_link_waiting_for(*, account_ids: list[int], actor: str, source: str) -> int:
    """subscriptions_link_waiting for many accounts (an import): the database picks, 1,000
    accounts a query, the few that a waiting row names; only those are linked one by one."""
    if not account_ids or not Subscription.objects.filter(account__isnull=True).exists():
        return 0
    waiting = Subscription.objects.filter(account__isnull=True)
    named = (
        Exists(waiting.filter(customer_id=OuterRef("stripe_customer_id")).exclude(customer_id=""))
        | Exists(
            waiting.annotate(metadata_account=KT("raw__metadata__account_id")).filter(
                metadata_account=OuterRef("public_id")
            )
        )
        | Exists(
            waiting.annotate(email_ci=Lower("customer_email")).filter(
                email_ci=Lower(OuterRef("email"))
            )
        )
    )
    linked = 0
    for start in range(0, len(account_ids), 1000):
        candidates = Account.objects.filter(named, pk__in=account_ids[start : start + 1000])
        for account in candidates:
            linked += subscriptions_link_waiting(account=account, actor=actor, source=source)
    return linked
