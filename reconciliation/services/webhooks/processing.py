"""Processing: apply one stored event idempotently, retry with backoff, dead-letter."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from reconciliation import gateway
from reconciliation.models import (
    FlagKind,
    Subscription,
    WebhookAttempt,
    WebhookEvent,
    WebhookStatus,
)
from reconciliation.services.disputes import (
    DisputeCharge,
    dispute_apply,
    dispute_charge_lookup,
    dispute_needs_charge_lookup,
)
from reconciliation.services.flags import flag_open
from reconciliation.services.subscriptions import customer_email_prefetch, subscription_apply
from reconciliation.services.webhooks.common import (
    CUSTOMER_DELETED,
    DISPUTE_TYPES,
    FINISHED_STATUSES,
    INVOICE_TYPES,
    SUBSCRIPTION_TYPES,
    WEBHOOK_ACTOR,
    WEBHOOK_BACKOFF_BASE_SECONDS,
    WEBHOOK_BACKOFF_MAX_SECONDS,
    WEBHOOK_MAX_ATTEMPTS,
    WebhookProcessingError,
    logger,
)

# --- Processing -----------------------------------------------------------------------------


def _backoff(attempts: int) -> timedelta:
    seconds = WEBHOOK_BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, WEBHOOK_BACKOFF_MAX_SECONDS))


def _event_object(event: WebhookEvent) -> dict[str, Any]:
    data = event.payload.get("data") if isinstance(event.payload, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise WebhookProcessingError("event has no data.object")
    return obj


def invoice_subscription_id(invoice: dict[str, Any]) -> str | None:
    """The subscription an invoice bills: top-level (older API versions) or under parent."""
    subscription = invoice.get("subscription")
    if not subscription:
        details = (invoice.get("parent") or {}).get("subscription_details") or {}
        subscription = details.get("subscription")
    if isinstance(subscription, dict):
        subscription = subscription.get("id")
    return subscription or None


def _fetch_subscription(subscription_id: str) -> tuple[dict[str, Any], datetime]:
    # Stamp the fetched view with the time just before asking: anything the provider changed
    # later carries a later time, so a fresher event still wins over this view.
    fetched_at = timezone.now()
    try:
        return gateway.subscription_retrieve(provider_id=subscription_id), fetched_at
    except gateway.GatewayError as exc:
        raise WebhookProcessingError(
            f"Stripe unavailable fetching {subscription_id}: {exc}"
        ) from exc


def _same_second_conflict(event: WebhookEvent) -> str | None:
    """The subscription id when this event's time equals the mirror's and its view differs.

    Stripe's event times are whole seconds, so two changes in one second (incomplete -> active
    on the first payment) cannot be ordered by time: ask the provider for the current view.
    """
    obj = _event_object(event)
    mirror = (
        Subscription.objects.filter(provider_id=str(obj.get("id") or ""))
        .only("status", "provider_updated_at", "cancel_at_period_end")
        .first()
    )
    # The mirror's stamp may be a fetch time with sub-second precision (a reconciliation run, a
    # re-fetch): an event of that same whole second may be older or newer, so it counts as a tie.
    if mirror is None or mirror.provider_updated_at.replace(microsecond=0) != event.created:
        return None
    if (mirror.status, mirror.cancel_at_period_end) == (
        obj.get("status"),
        bool(obj.get("cancel_at_period_end")),
    ):
        return None
    return mirror.provider_id


def _prefetch(event: WebhookEvent) -> tuple[dict[str, Any], datetime] | None:
    """Network reads an event needs, done before any lock is taken: (object, provider time)."""
    if event.type in SUBSCRIPTION_TYPES:
        subscription_id = _same_second_conflict(event)
        return _fetch_subscription(subscription_id) if subscription_id else None
    if event.type not in INVOICE_TYPES:
        return None
    subscription_id = invoice_subscription_id(_event_object(event))
    if subscription_id is None:
        return None
    return _fetch_subscription(subscription_id)


def _prefetch_customer_email(
    event: WebhookEvent, prefetched: tuple[dict[str, Any], datetime] | None
) -> str | None:
    """The customer's email for a subscription no account knows yet (linking by email)."""
    if event.type not in SUBSCRIPTION_TYPES and prefetched is None:
        return None
    obj = prefetched[0] if prefetched is not None else _event_object(event)
    return customer_email_prefetch(obj=obj)


def _prefetch_dispute_charge(event: WebhookEvent) -> DisputeCharge | None:
    """The disputed charge's customer and period, read before any lock is taken. A Stripe
    dispute carries no customer: without this it would never reach its account."""
    if event.type not in DISPUTE_TYPES:
        return None
    obj = _event_object(event)
    if not dispute_needs_charge_lookup(obj=obj):
        return None
    try:
        return dispute_charge_lookup(obj=obj)
    except gateway.GatewayError as exc:
        # Unreachable or refused: the event retries on the queue (backoff, then dead letter).
        raise WebhookProcessingError(
            f"Stripe unavailable looking up the charge of {obj.get('id')}: {exc}"
        ) from exc


def _dispatch(
    event: WebhookEvent,
    prefetched: tuple[dict[str, Any], datetime] | None,
    customer_email: str | None = None,
    dispute_charge: DisputeCharge | None = None,
) -> str:
    """Apply one event; returns the status it ends in (processed or ignored)."""
    source = f"event:{event.provider_event_id}"
    if event.type in SUBSCRIPTION_TYPES or event.type in INVOICE_TYPES:
        if event.type in SUBSCRIPTION_TYPES:
            obj, provider_time = prefetched or (_event_object(event), event.created)
        elif prefetched is None:
            return WebhookStatus.IGNORED  # a one-off invoice: no subscription to apply
        else:
            obj, provider_time = prefetched
        subscription_apply(
            obj=obj,
            provider_time=provider_time,
            actor=WEBHOOK_ACTOR,
            source=source,
            event=event,
            customer_email=customer_email,
            view="event" if prefetched is None else "fetched",
        )
        return WebhookStatus.PROCESSED
    if event.type in DISPUTE_TYPES:
        dispute = dispute_apply(obj=_event_object(event), event=event, charge=dispute_charge)
        if dispute.customer_id and not event.customer_id:
            # The event is about that customer: it belongs on the account's timeline.
            event.customer_id = dispute.customer_id[:255]
            WebhookEvent.objects.filter(pk=event.pk).update(customer_id=event.customer_id)
        return WebhookStatus.PROCESSED
    if event.type == CUSTOMER_DELETED:
        customer_id = str(_event_object(event).get("id") or "")
        account = (
            Account.objects.filter(stripe_customer_id=customer_id).first() if customer_id else None
        )
        if account is None:
            return WebhookStatus.IGNORED
        # Never revoke on this: a person decides what a deleted customer means for access.
        flag_open(
            account=account,
            kind=FlagKind.PROVIDER_MISMATCH,
            reason=f"The Stripe customer {customer_id} was deleted at the provider.",
            opened_by=WEBHOOK_ACTOR,
            event=event,
        )
        return WebhookStatus.PROCESSED
    return WebhookStatus.IGNORED


def webhook_event_process(*, event_id: int, trigger: str = "queue") -> str:
    """Process one stored event at most once in effect; returns the status it is left in.

    The event row is locked for the whole apply, so a duplicate task (sweeper, broker
    redelivery, replay) waits and then finds it finished. A failure rolls the apply back,
    counts the attempt and schedules a retry (backoff), or dead-letters after the limit.
    """
    event = WebhookEvent.objects.filter(pk=event_id).first()
    if event is None:
        logger.warning("webhook event %s no longer exists", event_id)
        return "missing"
    if event.status in FINISHED_STATUSES or event.status == WebhookStatus.DEAD:
        return event.status
    started_at = timezone.now()
    error: Exception | None = None
    prefetched = None
    customer_email = None
    dispute_charge = None
    try:
        prefetched = _prefetch(event)
        customer_email = _prefetch_customer_email(event, prefetched)
        dispute_charge = _prefetch_dispute_charge(event)
    except Exception as exc:  # a provider error, or an odd shape: counted like any failure
        error = exc

    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event_id)
        if event.status in FINISHED_STATUSES or event.status == WebhookStatus.DEAD:
            return event.status
        status = None
        if error is None:
            try:
                with transaction.atomic():
                    status = _dispatch(event, prefetched, customer_email, dispute_charge)
            except Exception as exc:  # any failure is retried, then dead-lettered
                error = exc
        now = timezone.now()
        event.attempts += 1
        if error is None:
            assert status is not None  # no error: _dispatch returned the status
            event.status = status
            event.processed_at = now
            event.next_attempt_at = None
            event.last_error = ""
        else:
            message = f"{type(error).__name__}: {error}"[:4000]
            event.last_error = message
            if event.attempts >= WEBHOOK_MAX_ATTEMPTS:
                event.status = WebhookStatus.DEAD
                event.next_attempt_at = None
            else:
                event.status = WebhookStatus.FAILED
                event.next_attempt_at = now + _backoff(event.attempts)
            logger.warning(
                "webhook %s (%s) attempt %s failed: %s",
                event.provider_event_id,
                event.type,
                event.attempts,
                message,
            )
        event.save(
            update_fields=["status", "attempts", "last_error", "processed_at", "next_attempt_at"]
        )
        WebhookAttempt.objects.create(
            event=event,
            started_at=started_at,
            finished_at=now,
            outcome=event.status,
            error=event.last_error,
            trigger=trigger[:32],
        )
    return event.status


def webhook_events_process(*, event_ids: list[int], trigger: str = "queue") -> dict[str, int]:
    """Process a batch of stored events one after another, in the order they were stored; one
    that fails unexpectedly (the database gone, say) is logged and left to the sweeper, and the
    others still run. Returns how many ended in each status ("error" for those)."""
    statuses: dict[str, int] = {}
    for event_id in sorted(event_ids):
        try:
            status = webhook_event_process(event_id=event_id, trigger=trigger)
        except Exception:
            logger.exception("webhook event %s could not be processed; the sweeper will", event_id)
            status = "error"
        statuses[status] = statuses.get(status, 0) + 1
    return statuses
