"""The Stripe webhook endpoint and the staff Webhooks page (list, detail, replay)."""

import json
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from janitor.http import BodyTooLarge, ContentLengthInvalid, body_read_capped
from janitor.permissions import staff_required
from reconciliation import gateway
from reconciliation.models import WebhookStatus
from reconciliation.selectors.webhooks import (
    webhook_counts,
    webhook_event_get,
    webhook_event_list,
    webhook_event_types,
    webhook_rejections,
    webhook_unknown_api_versions,
)
from reconciliation.services.webhooks import (
    REPLAYABLE_STATUSES,
    EventInvalid,
    webhook_event_replay,
    webhook_event_store,
    webhook_events_replay,
    webhook_rejection_record,
)

PAGE_SIZE = 50
VIEW_PERM = "reconciliation.view_webhooks"
REPLAY_PERM = "reconciliation.replay_webhooks"


def _rejected(status: int, kind: str, reason: str) -> HttpResponse:
    webhook_rejection_record(kind=kind, reason=reason)
    return HttpResponse(reason, status=status, content_type="text/plain")


@csrf_exempt
@require_POST
def stripe_webhook(request):
    """Verify, store, answer. 200 only once the event is committed; the work runs on the queue."""
    try:
        body = body_read_capped(request, settings.WEBHOOK_MAX_BODY_BYTES)
    except ContentLengthInvalid as exc:
        return _rejected(exc.status, "payload", str(exc))
    except BodyTooLarge as exc:
        return _rejected(exc.status, "too_large", str(exc))
    try:
        event = gateway.webhook_event_verify(
            payload=body,
            sig_header=request.META.get("HTTP_STRIPE_SIGNATURE"),
            secrets=settings.STRIPE_WEBHOOK_SECRETS,
        )
    except gateway.WebhookSignatureInvalid as exc:
        return _rejected(400, "stale" if exc.stale else "signature", exc.reason)
    except gateway.WebhookPayloadInvalid as exc:
        return _rejected(400, "payload", exc.reason)
    try:
        stored = webhook_event_store(event=event, raw=body.decode("utf-8"))
    except (EventInvalid, DataError) as exc:
        return _rejected(400, "payload", f"event cannot be stored: {exc}"[:200])
    except (OperationalError, InterfaceError, DatabaseError):
        # Not stored: a 5xx makes Stripe deliver it again later.
        response = HttpResponse("storage unavailable", status=503, content_type="text/plain")
        response["Retry-After"] = "30"
        return response
    return JsonResponse({"received": True, "duplicate": stored is None})


@require_GET
@staff_required(VIEW_PERM)
def webhook_list(request):
    type_filter = request.GET.get("type", "").strip()
    status_filter = request.GET.get("status", "").strip()
    if status_filter not in WebhookStatus.values:
        status_filter = ""
    page = Paginator(
        webhook_event_list(type=type_filter, status=status_filter), PAGE_SIZE
    ).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": {"type": type_filter, "status": status_filter},
        "filter_query": urlencode(
            [(k, v) for k, v in (("type", type_filter), ("status", status_filter)) if v]
        ),
        "counts": webhook_counts(),
        "rejections": webhook_rejections(),
        "unknown_versions": webhook_unknown_api_versions(),
        "types": webhook_event_types(),
        "statuses": WebhookStatus.choices,
        "can_replay": request.user.has_perm(REPLAY_PERM),
    }
    template = "reconciliation/webhook_list.html"
    if request.htmx and request.htmx.target == "events":
        template += "#events"
    return render(request, template, context)


@require_GET
@staff_required(VIEW_PERM)
def webhook_detail(request, pk: int):
    event = webhook_event_get(pk=pk)
    template = "reconciliation/webhook_detail.html"
    if request.htmx and request.htmx.target == "webhook-event":
        template += "#event-status"  # polled while the event waits or retries
    return render(
        request,
        template,
        {
            "event": event,
            "payload_pretty": json.dumps(event.payload, indent=2, sort_keys=True),
            "can_replay": request.user.has_perm(REPLAY_PERM),
            "replayable": event.status in REPLAYABLE_STATUSES,
        },
    )


@require_POST
@staff_required(VIEW_PERM, REPLAY_PERM)
def webhook_replay(request, pk: int):
    event = webhook_event_get(pk=pk)
    if webhook_event_replay(event=event, actor=request.user.email):
        messages.success(request, f"{event.provider_event_id} was sent for processing again.")
    else:
        messages.info(request, f"{event.provider_event_id} is already finished: nothing to replay.")
    url = reverse("webhook_detail", kwargs={"pk": pk})
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_POST
@staff_required(VIEW_PERM, REPLAY_PERM)
def webhook_replay_dead(request):
    count = webhook_events_replay(actor=request.user.email)
    messages.success(request, f"{count} dead-lettered event(s) sent for processing again.")
    url = reverse("webhook_list")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
