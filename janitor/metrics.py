"""Prometheus metrics at /metrics: Janitor's state read from the database at scrape time.

Every gauge and counter below is derived from the shared database (one cheap query each), so
any web process on any host answers the same numbers, and work done by django-q2 workers
outside gunicorn is counted. Only request latency is kept in process: it is per host (and, with
PROMETHEUS_MULTIPROC_DIR set, summed over that host's gunicorn workers).
"""

from __future__ import annotations

import hmac
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Avg, Count, F, Max
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

OPEN_WEBHOOK_STATUSES = ("pending", "failed", "dead")

REQUEST_LATENCY = Histogram(
    "janitor_http_request_duration_seconds",
    "Time to answer an HTTP request, per host (in-process).",
    ["method", "route", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class DatabaseCollector:
    """Reads Janitor's state from the database on each scrape."""

    def collect(self):
        from accounts.models import RevocationRequest, RevocationStatus
        from janitor.models import Notice, NoticeStatus
        from reconciliation.models import (
            Dispute,
            Flag,
            FlagKind,
            FlagStatus,
            ReconciliationRun,
            RunStatus,
            WebhookEvent,
            WebhookStatus,
        )
        from reconciliation.services.webhooks import REJECTION_KEY, REJECTION_KINDS

        now = timezone.now()

        # Open statuses only (the status index): processed events are never pruned, so a
        # count of every row would grow with history.
        by_status = dict(
            WebhookEvent.objects.filter(status__in=OPEN_WEBHOOK_STATUSES)
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        hour_ago = now - timedelta(hours=1)
        recent = WebhookEvent.objects.filter(received_at__gte=hour_ago)  # webhook_received_idx
        received = _gauge(
            "janitor_webhooks_received_last_hour",
            "Verified webhook events stored in the last hour, by event type.",
            ["type"],
        )
        for event_type, n in recent.values_list("type").annotate(n=Count("id")).order_by():
            received.add_metric([event_type], n)
        yield received
        events = _gauge(
            "janitor_webhook_events", "Stored webhook events not finished, by status.", ["status"]
        )
        for status in OPEN_WEBHOOK_STATUSES:
            events.add_metric([status], by_status.get(status, 0))
        yield events
        backlog = _gauge(
            "janitor_webhook_backlog", "Events waiting or retrying (pending + failed)."
        )
        backlog.add_metric([], by_status.get("pending", 0) + by_status.get("failed", 0))
        yield backlog
        dead = _gauge("janitor_webhooks_dead", "Dead-lettered events waiting for a replay.")
        dead.add_metric([], by_status.get(WebhookStatus.DEAD, 0))
        yield dead

        from django.core.cache import cache

        rejected = CounterMetricFamily(
            "janitor_webhooks_rejected",
            "Deliveries refused before storing, by kind (counted in the shared cache).",
            labels=["kind"],
        )
        counts = cache.get_many([REJECTION_KEY.format(kind=k) for k in REJECTION_KINDS])
        for kind in REJECTION_KINDS:
            rejected.add_metric([kind], int(counts.get(REJECTION_KEY.format(kind=kind)) or 0))
        yield rejected

        latency = recent.filter(processed_at__isnull=False).aggregate(
            avg=Avg(F("processed_at") - F("received_at")),
            max=Max(F("processed_at") - F("received_at")),
        )
        processing = _gauge(
            "janitor_webhook_processing_seconds",
            "Receipt to processed, over events received in the last hour.",
            ["stat"],
        )
        for stat in ("avg", "max"):
            value = latency[stat]
            processing.add_metric([stat], value.total_seconds() if value else 0.0)
        yield processing

        # The latest real run: a dry run started to look at a halted one must not hide it (nor
        # reset the age that tells a stopped schedule).
        run = ReconciliationRun.objects.filter(dry_run=False).order_by("-started_at", "-id").first()
        run_status = _gauge(
            "janitor_reconciliation_last_run_status",
            "1 for the status of the latest reconciliation run.",
            ["status"],
        )
        run_age = _gauge(
            "janitor_reconciliation_last_run_age_seconds", "Seconds since the latest run started."
        )
        run_duration = _gauge(
            "janitor_reconciliation_last_run_duration_seconds", "Wall time of the latest run."
        )
        run_outcomes = _gauge(
            "janitor_reconciliation_last_run_outcomes",
            "Accounts per outcome in the latest run.",
            ["outcome"],
        )
        if run is not None:
            run_status.add_metric([run.status], 1)
            run_age.add_metric([], (now - run.started_at).total_seconds())
            run_duration.add_metric([], float((run.durations or {}).get("total", 0.0)))
            for outcome, value in (run.counts or {}).items():
                if isinstance(value, int):
                    run_outcomes.add_metric([outcome], value)
        halted = _gauge(
            "janitor_reconciliation_runs_halted",
            "Runs halted and waiting for an Admin to apply or discard them.",
        )
        halted.add_metric([], ReconciliationRun.objects.filter(status=RunStatus.HALTED).count())
        yield run_status
        yield halted
        yield run_age
        yield run_duration
        yield run_outcomes

        flags = dict(
            Flag.objects.filter(status=FlagStatus.OPEN)
            .values_list("kind")
            .annotate(n=Count("id"))
            .order_by()
        )
        open_flags = _gauge("janitor_open_flags", "Open review-queue flags by kind.", ["kind"])
        for kind in FlagKind.values:
            open_flags.add_metric([kind], flags.get(kind, 0))
        yield open_flags

        revocations = dict(
            RevocationRequest.objects.values_list("status").annotate(n=Count("id")).order_by()
        )
        stalled = sum(
            1
            for r in RevocationRequest.objects.filter(status=RevocationStatus.APPROVED).only(
                "status", "decided_at", "reported_at", "steps", "history"
            )
            if r.is_stalled
        )
        by_state = _gauge("janitor_revocations", "Revocation requests by state.", ["state"])
        for state in RevocationStatus.values:
            by_state.add_metric([state], revocations.get(state, 0))
        by_state.add_metric(["stalled"], stalled)
        yield by_state

        due = _gauge(
            "janitor_disputes_due_48h", "Open disputes whose evidence is due within 48 hours."
        )
        due.add_metric(
            [],
            Dispute.objects.filter(
                status__in=("needs_response", "warning_needs_response"),
                due_by__gt=now,
                due_by__lte=now + timedelta(hours=48),
            ).count(),
        )
        yield due

        failing = dict(
            Notice.objects.filter(status__in=[NoticeStatus.FAILED, NoticeStatus.DEAD])
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        notices = _gauge(
            "janitor_notification_failures", "Notices failing (retrying) or given up.", ["status"]
        )
        for status in (NoticeStatus.FAILED, NoticeStatus.DEAD):
            notices.add_metric([status], failing.get(status, 0))
        yield notices

        queue = _gauge("janitor_queue_length", "Tasks waiting in the django-q2 broker.")
        queue.add_metric([], _queue_size())
        yield queue


def _queue_size() -> int:
    try:
        from django_q.brokers import get_broker

        return int(get_broker().queue_size() or 0)
    except Exception:  # a broker that cannot answer: the gauge says -1, the scrape still works
        return -1


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    if settings.PROMETHEUS_MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUEST_LATENCY)
    return registry


def _allowed(request) -> bool:
    token = settings.JANITOR_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        given = header[len("Bearer ") :].strip().encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, token.encode())
    from accounts.services.activity import client_ip

    return client_ip(request) in settings.JANITOR_METRICS_ALLOWED_IPS


@require_GET
def metrics(request):
    """Prometheus text format; 403 unless from an allowed address or with the bearer token."""
    if not _allowed(request):
        return HttpResponse("Metrics need a bearer token or an allowed address.\n", status=403)
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


class RequestLatencyMiddleware:
    """Observes each request's duration into REQUEST_LATENCY, labelled by route name."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.view_name if match else "") or "unmatched"
        REQUEST_LATENCY.labels(request.method, route, f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started
        )
        return response
