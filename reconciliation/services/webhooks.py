"""Webhook events: store once, process idempotently, retry, dead-letter, replay, sweep, catch up."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from accounts.models import Account
from janitor.errors import ErrorKind, JanitorError
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

logger = logging.getLogger("janitor.webhooks")

WEBHOOK_ACTOR = "system:webhook"
PROCESS_TASK = "reconciliation.tasks.webhook_event_process_task"

# Processing tries before an event is dead-lettered (each failure waits longer: see backoff).
WEBHOOK_MAX_ATTEMPTS = 5
WEBHOOK_BACKOFF_BASE_SECONDS = 60
WEBHOOK_BACKOFF_MAX_SECONDS = 3600
# How long a stored or re-enqueued event may wait for a worker before the sweeper sends it again.
# Longer than a healthy queue's worst backlog, so the sweeper does not double a busy queue.
WEBHOOK_SWEEP_GRACE_SECONDS = 300
WEBHOOK_SWEEP_BATCH = 1000
# The catch-up lists from the newest stored event minus this, so late-created ones are seen too.
WEBHOOK_CATCH_UP_OVERLAP_SECONDS = 3600
# Stripe keeps events for 30 days; asking for more is refused.
WEBHOOK_CATCH_UP_WINDOW = timedelta(days=30) - timedelta(minutes=5)

SUBSCRIPTION_TYPES = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    }
)
INVOICE_TYPES = frozenset({"invoice.paid", "invoice.payment_failed"})
# Every charge.dispute.* event carries the dispute: each one may be the first Janitor sees.
DISPUTE_TYPES = frozenset(
    {
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
    }
)
CUSTOMER_DELETED = "customer.deleted"
HANDLED_TYPES = SUBSCRIPTION_TYPES | INVOICE_TYPES | DISPUTE_TYPES | {CUSTOMER_DELETED}
FINISHED_STATUSES = frozenset({WebhookStatus.PROCESSED, WebhookStatus.IGNORED})
REPLAYABLE_STATUSES = frozenset({WebhookStatus.FAILED, WebhookStatus.DEAD, WebhookStatus.PENDING})

# Rejected deliveries are counted by kind in the cache, for the Webhooks page.
REJECTION_KINDS = ("signature", "stale", "payload", "too_large")
REJECTION_KEY = "webhooks:rejected:{kind}"
REJECTION_LAST_KEY = "webhooks:rejected:last"


class WebhookProcessingError(Exception):
    """An event could not be applied this time; it is retried, then dead-lettered."""


class EventInvalid(JanitorError):
    """A verified body that still is not an event Janitor can store."""

    kind = ErrorKind.INVALID


@dataclass
class CatchUpResult:
    listed: int
    stored: int
    since: datetime


# --- Intake ---------------------------------------------------------------------------------


def webhook_rejection_record(*, kind: str, reason: str) -> None:
    """Count a refused delivery (kind in REJECTION_KINDS) and log it for the operators."""
    logger.warning("webhook rejected: %s (%s)", reason, kind)
    key = REJECTION_KEY.format(kind=kind)
    try:
        # add() then incr(): incr alone fails on a missing key, and add is atomic in Redis.
        cache.add(key, 0, timeout=None)
        cache.incr(key)
        cache.set(
            REJECTION_LAST_KEY,
            {"kind": kind, "reason": reason, "at": timezone.now().isoformat()},
            timeout=None,
        )
    except Exception:  # the counter is a convenience: never fail the answer over it
        logger.exception("could not count a webhook rejection")


def _epoch(value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventInvalid("event has no numeric created time")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):  # 1e20, NaN, before year 1...
        raise EventInvalid("event created time is out of range") from None


def _storable(value: str, name: str) -> str:
    """Text PostgreSQL can hold: no NUL, no lone surrogate (JSON allows both escaped)."""
    if "\x00" in value:
        raise EventInvalid(f"event {name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EventInvalid(f"event {name} is not valid Unicode") from None
    return value


def event_customer_id(event: dict[str, Any]) -> str:
    """The Stripe customer an event is about, or "" (e.g. a charge without a customer)."""
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        return ""
    if obj.get("object") == "customer":
        return str(obj.get("id") or "")
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return customer if isinstance(customer, str) else ""


def _api_version(event: dict[str, Any]) -> str:
    version = event.get("api_version")
    return version if isinstance(version, str) else ""


def webhook_event_store(
    *, event: dict[str, Any], source: str = "webhook", raw: str | None = None
) -> WebhookEvent | None:
    """Store a verified event once; return the new row, or None when it was already stored.

    One INSERT .. ON CONFLICT DO NOTHING: concurrent duplicate deliveries cannot both insert and
    need no read first. `raw` is the body as received, stored as is (no re-serialising).
    Processing is enqueued after the commit, and only for a newly stored event.
    """
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise EventInvalid("event has no id or type")
    created = _epoch(event.get("created"))
    now = timezone.now()
    row = WebhookEvent(
        provider_event_id=_storable(event_id, "id")[:255],
        type=_storable(event_type, "type")[:100],
        created=created,
        payload=event,
        status=WebhookStatus.PENDING,
        attempts=0,
        last_error="",
        received_at=now,
        next_attempt_at=now + timedelta(seconds=WEBHOOK_SWEEP_GRACE_SECONDS),
        source=source,
        customer_id=_storable(event_customer_id(event), "customer")[:255],
        api_version=_storable(_api_version(event), "api_version")[:64],
    )
    row.pk = _insert_ignoring_duplicate(row, raw if raw is not None else json.dumps(event))
    if row.pk is None:
        return None
    row._state.adding = False
    transaction.on_commit(lambda: webhook_events_enqueue(event_ids=[row.pk], trigger="queue"))
    return row


_INSERT_COLUMNS = (
    "provider_event_id",
    "type",
    "created",
    "payload",
    "status",
    "attempts",
    "last_error",
    "received_at",
    "next_attempt_at",
    "source",
    "customer_id",
    "api_version",
)


def _insert_ignoring_duplicate(row: WebhookEvent, payload_text: str) -> int | None:
    ops = connection.ops
    table = ops.quote_name(WebhookEvent._meta.db_table)
    columns = ", ".join(ops.quote_name(name) for name in _INSERT_COLUMNS)
    payload_placeholder = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    placeholders = ", ".join(
        payload_placeholder if c == "payload" else "%s" for c in _INSERT_COLUMNS
    )
    params = [
        row.provider_event_id,
        row.type,
        ops.adapt_datetimefield_value(row.created),
        payload_text,
        row.status,
        row.attempts,
        row.last_error,
        ops.adapt_datetimefield_value(row.received_at),
        ops.adapt_datetimefield_value(row.next_attempt_at),
        row.source,
        row.customer_id,
        row.api_version,
    ]
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT ({ops.quote_name('provider_event_id')}) DO NOTHING RETURNING "
        f"{ops.quote_name('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchone()
    return found[0] if found else None


_broker = None


def _queue_broker():
    # django-q2 builds a new broker, so a new Redis connection and handshake, per async_task
    # unless given one: that was a third of the endpoint's time. One per process is enough.
    global _broker
    if _broker is None:
        from django_q.brokers import get_broker

        _broker = get_broker()
    return _broker


def webhook_events_enqueue(*, event_ids: list[int], trigger: str) -> int:
    """Hand events to the queue; a broker failure is logged (the sweeper sends them later)."""
    from django_q.tasks import async_task

    sent = 0
    for event_id in event_ids:
        try:
            # save=False: the attempt history lives in WebhookAttempt; django-q's result table
            # would only add a pruning query per task to the monitor.
            async_task(
                PROCESS_TASK,
                event_id,
                trigger,
                save=False,
                task_name=f"webhook-{event_id}",
                broker=_queue_broker(),
            )
            sent += 1
        except Exception:
            logger.exception("could not enqueue webhook event %s; the sweeper will", event_id)
    return sent


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
    # The mirror's stamp may be a fetch time with sub-second precision (the audit, a re-fetch):
    # an event of that same whole second may be older or newer, so it counts as a tie too.
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
    except WebhookProcessingError as exc:
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


# --- Replay, sweeper, catch-up --------------------------------------------------------------


def webhook_event_replay(*, event: WebhookEvent, actor: str) -> bool:
    """Send one failed, dead or stuck event through processing again; False if it is finished."""
    with transaction.atomic():
        locked = WebhookEvent.objects.select_for_update().get(pk=event.pk)
        if locked.status not in REPLAYABLE_STATUSES:
            return False
        _reset_for_replay(WebhookEvent.objects.filter(pk=locked.pk))
        trigger = f"replay:{actor}"
        transaction.on_commit(
            lambda: webhook_events_enqueue(event_ids=[locked.pk], trigger=trigger)
        )
    logger.info("webhook %s replayed by %s", locked.provider_event_id, actor)
    return True


def webhook_events_replay(*, actor: str, statuses: tuple[str, ...] = (WebhookStatus.DEAD,)) -> int:
    """Replay every event in these statuses (default: the dead-lettered ones); returns a count."""
    wanted = [s for s in statuses if s in REPLAYABLE_STATUSES]
    with transaction.atomic():
        ids = list(
            WebhookEvent.objects.select_for_update()
            .filter(status__in=wanted)
            .order_by("created", "id")
            .values_list("id", flat=True)
        )
        _reset_for_replay(WebhookEvent.objects.filter(pk__in=ids))
        trigger = f"replay:{actor}"
        transaction.on_commit(lambda: webhook_events_enqueue(event_ids=ids, trigger=trigger))
    logger.info("%s webhook events replayed by %s", len(ids), actor)
    return len(ids)


def _reset_for_replay(queryset) -> None:
    # attempts start again so a replayed event gets its full set of retries.
    queryset.update(
        status=WebhookStatus.PENDING,
        attempts=0,
        next_attempt_at=timezone.now() + timedelta(seconds=WEBHOOK_SWEEP_GRACE_SECONDS),
    )


def webhook_events_sweep(*, now: datetime | None = None, limit: int = WEBHOOK_SWEEP_BATCH) -> int:
    """Re-enqueue stored events no worker finished: pending or failed, and due.

    A broker can lose a task (django-q2's Redis broker does when a worker is killed); the row
    is the truth. Due means next_attempt_at passed: the grace time after storing or the last
    enqueue, or the backoff after a failure. Returns how many were sent.
    """
    now = now or timezone.now()
    due = Q(next_attempt_at__lte=now) | Q(
        next_attempt_at__isnull=True,
        received_at__lte=now - timedelta(seconds=WEBHOOK_SWEEP_GRACE_SECONDS),
    )
    with transaction.atomic():
        ids = list(
            WebhookEvent.objects.select_for_update(skip_locked=True)
            .filter(due, status__in=[WebhookStatus.PENDING, WebhookStatus.FAILED])
            .order_by("created", "id")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return 0
        # Pushed back by the grace time, so the next sweep leaves them to the queue.
        WebhookEvent.objects.filter(pk__in=ids).update(
            next_attempt_at=now + timedelta(seconds=WEBHOOK_SWEEP_GRACE_SECONDS)
        )
        transaction.on_commit(lambda: webhook_events_enqueue(event_ids=ids, trigger="sweeper"))
    logger.info("sweeper re-enqueued %s webhook events", len(ids))
    return len(ids)


def webhook_events_catch_up(
    *, overlap_seconds: int = WEBHOOK_CATCH_UP_OVERLAP_SECONDS, since: datetime | None = None
) -> CatchUpResult:
    """Ingest events the endpoint never received, from the provider's Events API.

    Lists handled types created since the newest stored event (or now, on an empty table)
    minus an overlap, or since `since`; stores the unseen ones through the same path as a
    delivery (source "catch_up"), which enqueues them.
    """
    now = timezone.now()
    if since is None:
        newest = WebhookEvent.objects.aggregate(newest=Max("created"))["newest"]
        since = (newest or now) - timedelta(seconds=overlap_seconds)
    since = max(since, now - WEBHOOK_CATCH_UP_WINDOW)
    listed = stored = 0
    if not settings.STRIPE_API_KEY:
        # The demo (make run) has no Stripe account: nothing to catch up with, no traceback.
        logger.info("catch-up skipped: STRIPE_API_KEY is not set")
        return CatchUpResult(listed=0, stored=0, since=since)
    pages = gateway.event_pages(created_gte=int(since.timestamp()), types=sorted(HANDLED_TYPES))
    for page in _key_checked(pages):
        listed += len(page)
        page_ids = [event["id"] for event in page if isinstance(event.get("id"), str)]
        seen = set(
            WebhookEvent.objects.filter(provider_event_id__in=page_ids).values_list(
                "provider_event_id", flat=True
            )
        )
        for event in page:
            if event.get("id") in seen:
                continue
            try:
                if webhook_event_store(event=event, source="catch_up") is not None:
                    stored += 1
            except EventInvalid as exc:
                logger.warning("catch-up skipped an unusable event %s: %s", event.get("id"), exc)
    if stored:
        logger.warning("catch-up stored %s events the endpoint never received", stored)
    return CatchUpResult(listed=listed, stored=stored, since=since)


def _key_checked(pages):
    """The pages, telling Admins when Stripe refuses the key (401/403) before re-raising."""
    try:
        yield from pages
    except gateway.GatewayError as exc:
        if exc.status in {401, 403}:
            from janitor.services.notify import provider_key_refused

            provider_key_refused(status=exc.status, message=str(exc), where="Webhook catch-up")
        raise


# --- Schedules ------------------------------------------------------------------------------

WEBHOOK_SCHEDULES = (
    # (name, task, every N minutes)
    ("webhooks: sweeper", "reconciliation.tasks.webhook_events_sweep_task", 1),
    ("webhooks: catch-up", "reconciliation.tasks.webhook_events_catch_up_task", 15),
)


def webhook_schedules_ensure() -> list[str]:
    """Create or correct the sweeper and catch-up django-q2 schedules; idempotent."""
    from django_q.models import Schedule

    changed = []
    for name, func, minutes in WEBHOOK_SCHEDULES:
        schedule = Schedule.objects.filter(name=name).order_by("id").first()
        if schedule is None:
            schedule = Schedule.objects.create(
                name=name,
                func=func,
                schedule_type=Schedule.MINUTES,
                minutes=minutes,
                repeats=-1,
                next_run=timezone.now(),
            )
            changed.append(f"created {name}")
        elif (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) != (
            func,
            Schedule.MINUTES,
            minutes,
            -1,
        ):
            schedule.func, schedule.schedule_type = func, Schedule.MINUTES
            schedule.minutes, schedule.repeats = minutes, -1
            schedule.save()
            changed.append(f"updated {name}")
        # A duplicate (e.g. two deploys racing) would run the job twice a slot.
        duplicates, _ = Schedule.objects.filter(name=name).exclude(pk=schedule.pk).delete()
        if duplicates:
            changed.append(f"removed {duplicates} duplicate(s) of {name}")
    return changed
