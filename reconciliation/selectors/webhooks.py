"""Reads for the Webhooks page: the event list, counts, one event's history, the rejections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Max, Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from reconciliation.gateway import PINNED_API_VERSION
from reconciliation.models import WebhookAttempt, WebhookEvent, WebhookStatus
from reconciliation.services.webhooks import REJECTION_KEY, REJECTION_KINDS, REJECTION_LAST_KEY

LIST_FIELDS = (
    "id",
    "provider_event_id",
    "type",
    "created",
    "status",
    "attempts",
    "last_error",
    "received_at",
    "processed_at",
    "next_attempt_at",
    "source",
    "customer_id",
)


@dataclass
class WebhookCounts:
    by_status: dict[str, int]
    backlog: int  # stored and not finished yet: pending + failed
    failed: int
    dead: int
    total: int


def webhook_event_list(*, type: str = "", status: str = "") -> QuerySet[WebhookEvent]:
    """Newest first, without the payload (a list never shows it)."""
    events = WebhookEvent.objects.only(*LIST_FIELDS).order_by("-received_at", "-id")
    if type:
        events = events.filter(type=type)
    if status:
        events = events.filter(status=status)
    return events


def webhook_counts() -> WebhookCounts:
    by_status = dict(
        WebhookEvent.objects.order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    by_status = {s.value: by_status.get(s.value, 0) for s in WebhookStatus}
    return WebhookCounts(
        by_status=by_status,
        backlog=by_status[WebhookStatus.PENDING] + by_status[WebhookStatus.FAILED],
        failed=by_status[WebhookStatus.FAILED],
        dead=by_status[WebhookStatus.DEAD],
        total=sum(by_status.values()),
    )


def webhook_event_types() -> list[str]:
    """Types seen so far, for the filter."""
    return list(
        WebhookEvent.objects.order_by("type").values_list("type", flat=True).distinct()[:200]
    )


def webhook_event_get(*, pk: int) -> WebhookEvent:
    """One event with its attempt history, newest attempt first."""
    return get_object_or_404(
        WebhookEvent.objects.prefetch_related(
            Prefetch("attempts_log", queryset=WebhookAttempt.objects.order_by("-started_at", "-id"))
        ),
        pk=pk,
    )


def webhook_rejections() -> dict[str, Any]:
    """Refused deliveries by kind since the cache was last emptied, and the latest reason."""
    keys = [REJECTION_KEY.format(kind=kind) for kind in REJECTION_KINDS]
    try:
        found = cache.get_many([*keys, REJECTION_LAST_KEY])
    except Exception:  # a cache outage must not take the page down
        return {"by_kind": {}, "total": None, "last": None}
    by_kind = {
        kind: int(found.get(key) or 0) for kind, key in zip(REJECTION_KINDS, keys, strict=True)
    }
    return {
        "by_kind": by_kind,
        "total": sum(by_kind.values()),
        "last": found.get(REJECTION_LAST_KEY),
    }


# API versions whose shapes Janitor's tests hold it to: Stripe's fixtures for the version the
# SDK pins, and the per-version fixture sets of older ones (sandbox/data/stripe/versions). An
# event in any other version may carry shapes nobody checked: the Webhooks page says so.
API_VERSIONS_WITH_FIXTURES = frozenset({PINNED_API_VERSION, "2025-02-24.acacia"})


@dataclass
class UnknownApiVersion:
    version: str
    events: int
    latest: object


def webhook_unknown_api_versions() -> list[UnknownApiVersion]:
    """Stored events rendered in an API version Janitor has no fixtures for (one query)."""
    rows = (
        WebhookEvent.objects.exclude(api_version="")
        .exclude(api_version__in=API_VERSIONS_WITH_FIXTURES)
        .values("api_version")
        .annotate(events=Count("id"), latest=Max("created"))
        .order_by("-latest")
    )
    return [UnknownApiVersion(r["api_version"], r["events"], r["latest"]) for r in rows]
