"""Applying Stripe dispute objects to the Dispute mirror, and the flags a dispute opens."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account
from reconciliation import gateway
from reconciliation.models import Dispute, FlagKind, Subscription, WebhookEvent
from reconciliation.services.flags import flag_open
from reconciliation.services.subscriptions import account_link

logger = logging.getLogger("janitor.disputes")

# Statuses in which evidence can still change the outcome.
OPEN_STATUSES = frozenset(
    {"needs_response", "warning_needs_response", "under_review", "warning_under_review"}
)
TERMINAL_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})


def _id_of(value: Any) -> str:
    """A Stripe reference that may be expanded (a dict) or not (an id string)."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _customer_id(obj: dict[str, Any]) -> str:
    """The customer behind a dispute when its charge or payment intent came expanded.

    A Stripe dispute names its charge by id and carries no customer (its metadata is empty):
    DisputeCharge, looked up through the charge, is how the customer is normally found.
    """
    for parent in ("charge", "payment_intent"):
        expanded = obj.get(parent)
        if isinstance(expanded, dict) and expanded.get("customer"):
            return _id_of(expanded["customer"])
    return ""


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(value, tz=UTC)


@dataclass(frozen=True)
class DisputeCharge:
    """What the disputed charge says: who paid, when, and for which service period."""

    charge_id: str
    customer_id: str = ""
    charge_created: datetime | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    customer: dict[str, Any] | None = (
        None  # the customer object, when the account must be found by it
    )
    problem: str = ""  # why no customer was found ("" when one was)


def _service_period(charge: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The period the charge paid for: its invoice's line items (start of the earliest, end of
    the latest). Since API 2025-03-31 a charge names no invoice: reach it through the payment
    intent's invoice payments. Older versions still name it on the charge."""
    invoice_ids = [_id_of(charge.get("invoice"))] if charge.get("invoice") else []
    payment_intent = _id_of(charge.get("payment_intent"))
    if not invoice_ids and payment_intent:
        payments = gateway.invoice_payments_for_payment_intent(payment_intent_id=payment_intent)
        invoice_ids = [
            _id_of(p.get("invoice"))
            for p in payments
            if p.get("invoice") and p.get("status") in ("paid", None)
        ] or [_id_of(p.get("invoice")) for p in payments if p.get("invoice")]
    for invoice_id in invoice_ids[:1]:
        try:
            invoice = gateway.invoice_retrieve(invoice_id=invoice_id)
        except gateway.GatewayNotFound:
            return None, None
        periods = [
            line.get("period") or {}
            for line in ((invoice.get("lines") or {}).get("data") or [])
            if isinstance(line, dict)
        ]
        starts = [s for p in periods if (s := _epoch(p.get("start"))) is not None]
        ends = [e for p in periods if (e := _epoch(p.get("end"))) is not None]
        if starts and ends:
            return min(starts), max(ends)
    return None, None


def dispute_charge_lookup(*, obj: dict[str, Any]) -> DisputeCharge:
    """Find the disputed charge's customer and service period at Stripe (network only).

    Raises gateway.GatewayError when Stripe could not be asked (retryable: the event retries
    on the queue); a charge Stripe does not know, or one without a customer, is an answer.
    """
    expanded = obj.get("charge") if isinstance(obj.get("charge"), dict) else None
    charge_id = _id_of(obj.get("charge"))
    if not charge_id:
        return DisputeCharge(charge_id="", problem="The dispute names no charge.")
    if expanded is not None and "created" in expanded:
        charge = expanded
    else:
        try:
            charge = gateway.charge_retrieve(charge_id=charge_id)
        except gateway.GatewayNotFound:
            return DisputeCharge(
                charge_id=charge_id, problem=f"Stripe has no charge {charge_id} (404)."
            )
    charge_created = _epoch(charge.get("created"))
    customer_id = _id_of(charge.get("customer"))
    try:
        period_start, period_end = _service_period(charge)
    except gateway.GatewayNotFound:
        period_start = period_end = None
    if not customer_id:
        return DisputeCharge(
            charge_id=charge_id,
            charge_created=charge_created,
            period_start=period_start,
            period_end=period_end,
            problem=(
                f"The disputed charge {charge_id} has no customer at Stripe (a payment made "
                "without one), so it cannot be tied to an account: link it by hand."
            ),
        )
    customer = None
    if not Account.objects.filter(stripe_customer_id=customer_id).exists():
        try:
            customer = gateway.customer_retrieve(customer_id=customer_id)
        except gateway.GatewayNotFound:
            customer = None
    return DisputeCharge(
        charge_id=charge_id,
        customer_id=customer_id,
        charge_created=charge_created,
        period_start=period_start,
        period_end=period_end,
        customer=customer if customer and not customer.get("deleted") else None,
    )


def dispute_needs_charge_lookup(*, obj: dict[str, Any]) -> bool:
    """False when the mirror already knows this dispute's charge and account."""
    return not Dispute.objects.filter(
        provider_id=str(obj.get("id") or ""),
        account__isnull=False,
        charge_created__isnull=False,
    ).exists()


def _account_for(
    *, obj: dict[str, Any], customer_id: str, charge: DisputeCharge | None = None
) -> Account | None:
    metadata = obj.get("metadata") or {}
    public_id = metadata.get("public_id") or metadata.get("janitor_account")
    if public_id:
        account = Account.objects.filter(public_id=public_id).first()
        if account is not None:
            return account
    if not customer_id:
        return None
    # The usual linking rules: customer id, then the customer's metadata.account_id, then
    # a unique email (and the customer id is stored on the account found that way).
    customer = charge.customer if charge is not None else None
    account = account_link(
        customer_id=customer_id,
        metadata=(customer or {}).get("metadata"),
        email=(customer or {}).get("email"),
    )
    if account is not None:
        return account
    subscription = (
        Subscription.objects.filter(customer_id=customer_id, account__isnull=False)
        .select_related("account")
        .order_by("-provider_updated_at")
        .first()
    )
    return subscription.account if subscription is not None else None


def _provider_time(event: WebhookEvent | dict[str, Any] | None) -> datetime:
    """When the provider produced this state: the event's time, or now for a fresh fetch."""
    if isinstance(event, WebhookEvent):
        return event.created
    if isinstance(event, dict) and isinstance(event.get("created"), int | float):
        return datetime.fromtimestamp(event["created"], tz=UTC)
    return timezone.now()


def _fields(obj: dict[str, Any]) -> dict[str, Any]:
    details = obj.get("evidence_details") or {}
    due_by = details.get("due_by") or 0
    return {
        "charge_id": _id_of(obj.get("charge")),
        "amount": max(int(obj.get("amount") or 0), 0),
        "currency": str(obj.get("currency") or "")[:3],
        "reason": str(obj.get("reason") or "")[:64],
        "status": str(obj.get("status") or ""),
        # 0 means no response is possible: there is no deadline to show.
        "due_by": datetime.fromtimestamp(due_by, tz=UTC) if due_by else None,
        "submission_count": int(details.get("submission_count") or 0),
    }


def _is_stale(*, dispute: Dispute, provider_time: datetime, status: str) -> bool:
    if provider_time < dispute.provider_updated_at:
        return True
    # Stripe's event times are whole seconds: on a tie, a closed dispute does not reopen.
    return (
        provider_time == dispute.provider_updated_at
        and dispute.status in TERMINAL_STATUSES
        and status not in TERMINAL_STATUSES
    )


def _charge_fields(charge: DisputeCharge | None) -> dict[str, Any]:
    if charge is None:
        return {}
    fields: dict[str, Any] = {}
    if charge.charge_created is not None:
        fields["charge_created"] = charge.charge_created
    if charge.period_start is not None and charge.period_end is not None:
        fields["service_period_start"] = charge.period_start
        fields["service_period_end"] = charge.period_end
    return fields


def dispute_apply(
    *,
    obj: dict[str, Any],
    event: WebhookEvent | dict[str, Any] | None = None,
    charge: DisputeCharge | None = None,
) -> Dispute:
    """Upsert the Dispute mirror from a Stripe dispute object. Idempotent, order-safe.

    An object older than what the mirror already applied changes nothing (delivery order is
    not guaranteed). Opens a "disputed" flag for a new open dispute on a known account, and a
    "chargeback_lost" flag when a dispute moves to lost.
    """
    provider_id = obj.get("id")
    if not isinstance(provider_id, str) or not provider_id.startswith(("dp_", "du_")):
        raise ValueError(f"Not a Stripe dispute object: id={provider_id!r}")
    provider_time = _provider_time(event)
    fields = _fields(obj)
    customer_id = (charge.customer_id if charge is not None else "") or _customer_id(obj)
    charge_fields = _charge_fields(charge)
    webhook_event = event if isinstance(event, WebhookEvent) else None
    opened_by = f"event:{webhook_event.provider_event_id}" if webhook_event else "system:disputes"

    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().filter(provider_id=provider_id).first()
        created = False
        previous_status = None
        was_linked = dispute is not None and dispute.account_id is not None
        if dispute is None:
            try:
                with transaction.atomic():
                    account = _account_for(obj=obj, customer_id=customer_id, charge=charge)
                    dispute = Dispute.objects.create(
                        provider_id=provider_id,
                        customer_id=customer_id,
                        account=account,
                        link_problem=_link_problem(account, customer_id, charge),
                        provider_updated_at=provider_time,
                        raw=obj,
                        **fields,
                        **charge_fields,
                    )
                    created = True
            except IntegrityError:
                # Another worker created it first; apply on top of theirs under the lock.
                dispute = Dispute.objects.select_for_update().get(provider_id=provider_id)
        if not created:
            if _is_stale(dispute=dispute, provider_time=provider_time, status=fields["status"]):
                # Older news about the dispute, but what the charge says is still true. Newly
                # tied to an account by it: someone should look, whatever order the events
                # came in (the newer one was applied before the account existed).
                if _link_from_charge(dispute=dispute, obj=obj, charge=charge):
                    _flags_newly_linked(dispute, opened_by=opened_by, event=webhook_event)
                return dispute
            previous_status = dispute.status
            for name, value in fields.items():
                setattr(dispute, name, value)
            for name, value in charge_fields.items():
                setattr(dispute, name, value)
            if customer_id and not dispute.customer_id:
                dispute.customer_id = customer_id
            if dispute.account_id is None:
                dispute.account = _account_for(
                    obj=obj, customer_id=dispute.customer_id, charge=charge
                )
            dispute.link_problem = _link_problem(dispute.account, dispute.customer_id, charge)
            dispute.provider_updated_at = provider_time
            dispute.raw = obj
            dispute.save()

        if created:
            from janitor.services.notify import dispute_opened

            dispute_opened(dispute=dispute)
        if dispute.account_id is not None:
            # New to us, or newly tied to an account: someone should look at it now.
            if not was_linked:
                _flags_newly_linked(dispute, opened_by=opened_by, event=webhook_event)
            elif dispute.status == "lost" and previous_status != "lost":
                _flags_newly_linked(dispute, opened_by=opened_by, event=webhook_event)
    return dispute


def _flags_newly_linked(dispute: Dispute, *, opened_by: str, event: WebhookEvent | None) -> None:
    """A dispute newly tied to its account (or newly lost): someone should look at it now,
    whatever order its events came in. Still open: disputed; lost: chargeback lost."""
    assert dispute.account is not None  # linked
    if dispute.status in OPEN_STATUSES:
        kind, what = FlagKind.DISPUTED, "opened"
    elif dispute.status == "lost":
        kind, what = FlagKind.CHARGEBACK_LOST, "lost"
    else:
        return
    flag_open(
        account=dispute.account,
        kind=kind,
        reason=_flag_reason(dispute, what),
        opened_by=opened_by,
        event=event,
    )


def _link_problem(account: Account | None, customer_id: str, charge: DisputeCharge | None) -> str:
    if account is not None:
        return ""
    if charge is not None and charge.problem:
        return charge.problem[:255]
    if customer_id:
        return (
            f"No account matches the charge's customer {customer_id} (by customer id, "
            "metadata.account_id or email)."
        )[:255]
    return "Not looked up yet: the disputed charge's customer is unknown."


def _link_from_charge(
    *, dispute: Dispute, obj: dict[str, Any], charge: DisputeCharge | None
) -> bool:
    """Store what the charge says and link the account if found; True when newly linked."""
    if charge is None:
        return False
    was_linked = dispute.account_id is not None
    for name, value in _charge_fields(charge).items():
        setattr(dispute, name, value)
    if charge.customer_id and not dispute.customer_id:
        dispute.customer_id = charge.customer_id
    if dispute.account_id is None:
        dispute.account = _account_for(obj=obj, customer_id=dispute.customer_id, charge=charge)
    dispute.link_problem = _link_problem(dispute.account, dispute.customer_id, charge)
    dispute.save()
    return not was_linked and dispute.account_id is not None


def dispute_refresh(
    *, obj: dict[str, Any], event: WebhookEvent | dict[str, Any] | None = None
) -> Dispute:
    """Look the dispute's charge up at Stripe, then apply the dispute (outside the queue: the
    shell, the backfill, tests). Raises gateway.GatewayError when Stripe cannot be asked."""
    return dispute_apply(obj=obj, event=event, charge=dispute_charge_lookup(obj=obj))


def _flag_reason(dispute: Dispute, what: str) -> str:
    amount = f"{dispute.amount / 100:.2f} {dispute.currency.upper()}"
    due = f", evidence due {dispute.due_by:%Y-%m-%d %H:%M} UTC" if dispute.due_by else ""
    return f"Dispute {dispute.provider_id} {what}: {dispute.reason or 'no reason'}, {amount}{due}."


def disputes_link_customer(*, customer_id: str, account: Account) -> int:
    """Link unlinked disputes of a customer once the account behind it becomes known."""
    return Dispute.objects.filter(Q(customer_id=customer_id) & Q(account__isnull=True)).update(
        account=account
    )


@dataclass
class DisputeBackfill:
    looked_up: int = 0
    linked: int = 0
    still_unlinked: list[tuple[str, str]] = field(default_factory=list)  # dispute id, why
    failed: list[tuple[str, str]] = field(default_factory=list)  # dispute id, error


def disputes_link_unlinked(*, actor: str = "system:sync") -> DisputeBackfill:
    """Look up the charge of every dispute without an account and link it (sync_stripe's
    backfill for disputes stored before the lookup through the charge existed)."""
    report = DisputeBackfill()
    for dispute in Dispute.objects.filter(account__isnull=True).order_by("id"):
        obj = dict(dispute.raw or {})
        obj.setdefault("id", dispute.provider_id)
        obj.setdefault("charge", dispute.charge_id)
        try:
            charge = dispute_charge_lookup(obj=obj)
        except gateway.GatewayAuthError:
            raise
        except gateway.GatewayError as exc:
            report.failed.append((dispute.provider_id, str(exc)))
            continue
        report.looked_up += 1
        with transaction.atomic():
            locked = Dispute.objects.select_for_update().get(pk=dispute.pk)
            if _link_from_charge(dispute=locked, obj=obj, charge=charge):
                report.linked += 1
                # Its events were stored without a customer: put them on the timeline.
                WebhookEvent.objects.filter(
                    customer_id="", payload__data__object__id=locked.provider_id
                ).update(customer_id=locked.customer_id)
                _flags_newly_linked(locked, opened_by=actor, event=None)
            else:
                report.still_unlinked.append((locked.provider_id, locked.link_problem))
    return report
