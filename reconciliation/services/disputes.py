"""Applying Stripe dispute objects to the Dispute mirror, and the flags a dispute opens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from reconciliation.models import Dispute, FlagKind, Subscription, WebhookEvent
from reconciliation.services.flags import flag_open

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


def _customer_id(obj: dict) -> str:
    """The customer behind a dispute: expanded charge or payment intent, else metadata."""
    for parent in ("charge", "payment_intent"):
        expanded = obj.get(parent)
        if isinstance(expanded, dict) and expanded.get("customer"):
            return _id_of(expanded["customer"])
    metadata = obj.get("metadata") or {}
    return str(metadata.get("customer") or metadata.get("customer_id") or "")


def _account_for(*, obj: dict, customer_id: str) -> User | None:
    metadata = obj.get("metadata") or {}
    public_id = metadata.get("public_id") or metadata.get("janitor_account")
    if public_id:
        account = User.objects.filter(public_id=public_id, is_staff=False).first()
        if account is not None:
            return account
    if not customer_id:
        return None
    account = User.objects.filter(stripe_customer_id=customer_id).first()
    if account is not None:
        return account
    subscription = (
        Subscription.objects.filter(customer_id=customer_id, account__isnull=False)
        .select_related("account")
        .order_by("-provider_updated_at")
        .first()
    )
    return subscription.account if subscription is not None else None


def _provider_time(event: WebhookEvent | dict | None) -> datetime:
    """When the provider produced this state: the event's time, or now for a fresh fetch."""
    if isinstance(event, WebhookEvent):
        return event.created
    if isinstance(event, dict) and isinstance(event.get("created"), int | float):
        return datetime.fromtimestamp(event["created"], tz=UTC)
    return timezone.now()


def _fields(obj: dict) -> dict[str, Any]:
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


def dispute_apply(*, obj: dict, event: WebhookEvent | dict | None = None) -> Dispute:
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
    customer_id = _customer_id(obj)
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
                    dispute = Dispute.objects.create(
                        provider_id=provider_id,
                        customer_id=customer_id,
                        account=_account_for(obj=obj, customer_id=customer_id),
                        provider_updated_at=provider_time,
                        raw=obj,
                        **fields,
                    )
                    created = True
            except IntegrityError:
                # Another worker created it first; apply on top of theirs under the lock.
                dispute = Dispute.objects.select_for_update().get(provider_id=provider_id)
        if not created:
            if _is_stale(dispute=dispute, provider_time=provider_time, status=fields["status"]):
                return dispute
            previous_status = dispute.status
            for name, value in fields.items():
                setattr(dispute, name, value)
            if customer_id and not dispute.customer_id:
                dispute.customer_id = customer_id
            if dispute.account_id is None:
                dispute.account = _account_for(obj=obj, customer_id=dispute.customer_id)
            dispute.provider_updated_at = provider_time
            dispute.raw = obj
            dispute.save()

        if created:
            from janitor.services.notify import dispute_opened

            dispute_opened(dispute=dispute)
        if dispute.account_id is not None:
            # New to us, or newly tied to an account: someone should look at it now.
            if not was_linked and dispute.status in OPEN_STATUSES:
                flag_open(
                    account=dispute.account,
                    kind=FlagKind.DISPUTED,
                    reason=_flag_reason(dispute, "opened"),
                    opened_by=opened_by,
                    event=webhook_event,
                )
            if dispute.status == "lost" and previous_status != "lost":
                flag_open(
                    account=dispute.account,
                    kind=FlagKind.CHARGEBACK_LOST,
                    reason=_flag_reason(dispute, "lost"),
                    opened_by=opened_by,
                    event=webhook_event,
                )
    return dispute


def _flag_reason(dispute: Dispute, what: str) -> str:
    amount = f"{dispute.amount / 100:.2f} {dispute.currency.upper()}"
    due = f", evidence due {dispute.due_by:%Y-%m-%d %H:%M} UTC" if dispute.due_by else ""
    return f"Dispute {dispute.provider_id} {what}: {dispute.reason or 'no reason'}, {amount}{due}."


def disputes_link_customer(*, customer_id: str, account: User) -> int:
    """Link unlinked disputes of a customer once the account behind it becomes known."""
    return Dispute.objects.filter(Q(customer_id=customer_id) & Q(account__isnull=True)).update(
        account=account
    )
