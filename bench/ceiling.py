"""The webhook bench's ceiling: a bare endpoint in the same project, settings and middleware.

bench/webhooks.py serves the app with DJANGO_SETTINGS_MODULE=bench.ceiling_settings, which is
janitor.settings with this module as its URLconf: the project's URLs and one more,
/bench/ceiling/, doing the same Stripe signature check (gateway.webhook_event_verify, with
the same secrets) and one INSERT ... ON CONFLICT DO NOTHING of the event into the same table,
with the same columns, as Janitor's endpoint (so both pay for its indexes), and nothing else:
no model, no validation of the event's fields, no queue. What Janitor's own
/webhooks/stripe/ accepts is reported as a share of what this one accepts, under the same
gunicorn, in the same run. Never part of a deployment: only this settings module routes it.
"""

from django.conf import settings as django_settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import include, path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

TABLE = "reconciliation_webhookevent"


@csrf_exempt
@require_POST
def ceiling(request):
    from reconciliation import gateway

    try:
        event = gateway.webhook_event_verify(
            payload=request.body,
            sig_header=request.META.get("HTTP_STRIPE_SIGNATURE"),
            secrets=django_settings.STRIPE_WEBHOOK_SECRETS,
        )
    except (gateway.WebhookSignatureInvalid, gateway.WebhookPayloadInvalid) as exc:
        return HttpResponse(str(exc), status=400)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (provider_event_id, type, created, payload, status, attempts, "
            "last_error, received_at, next_attempt_at, source, customer_id, api_version) "
            "VALUES (%s, %s, %s, %s::jsonb, 'pending', 0, '', %s, %s, 'ceiling', '', '') "
            "ON CONFLICT (provider_event_id) DO NOTHING",
            [event["id"], event["type"], now, request.body.decode("utf-8"), now, now],
        )
    return JsonResponse({"received": True})


urlpatterns = [path("bench/ceiling/", ceiling), path("", include("janitor.urls"))]
