"""Recovery: replay, the sweeper for events no worker finished, the catch-up from the Events
API, and their schedules."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DataError, transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from janitor.services.schedules import minute_schedules_ensure
from reconciliation import gateway
from reconciliation.models import (
    WebhookEvent,
    WebhookStatus,
)
from reconciliation.services.webhooks.common import (
    HANDLED_TYPES,
    REPLAYABLE_STATUSES,
    WEBHOOK_CATCH_UP_OVERLAP_SECONDS,
    WEBHOOK_CATCH_UP_WINDOW,
    WEBHOOK_SWEEP_BATCH,
    WEBHOOK_SWEEP_GRACE_SECONDS,
    CatchUpResult,
    EventInvalid,
    logger,
)
from reconciliation.services.webhooks.intake import webhook_event_store, webhook_events_enqueue

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


def _reset_for_replay(queryset: QuerySet[WebhookEvent]) -> None:
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
        # No Stripe account configured (make run wires its sandbox's key): nothing to catch up with.
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
                # Each in its own savepoint: one the database refuses is skipped, not the rest.
                with transaction.atomic():
                    if webhook_event_store(event=event, source="catch_up") is not None:
                        stored += 1
            except (EventInvalid, DataError) as exc:
                logger.warning("catch-up skipped an unusable event %s: %s", event.get("id"), exc)
    if stored:
        logger.warning("catch-up stored %s events the endpoint never received", stored)
    return CatchUpResult(listed=listed, stored=stored, since=since)


def _key_checked(pages: Iterable[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
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
    return minute_schedules_ensure(WEBHOOK_SCHEDULES)
