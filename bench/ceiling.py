"""The webhook bench's ceiling: a bare endpoint in the same project, settings and middleware.

bench/webhooks.py serves the app with DJANGO_SETTINGS_MODULE=bench.ceiling_settings, which is
janitor.settings with this module as its URLconf: the project's URLs and one more,
/bench/ceiling/, doing the same Stripe signature check
(gateway.webhook_event_verify, with the same secrets) and one INSERT ... ON CONFLICT DO NOTHING
of the body as jsonb, and nothing else (no row of Janitor's, no queue, no bookkeeping). What
Janitor's own /webhooks/stripe/ accepts is reported as a share of what this one accepts, under
the same gunicorn, in the same run. Never part of a deployment: only this settings module
routes it.
"""

from django.conf import settings as django_settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

TABLE = "bench_ceiling"
CREATE_TABLE = f"CREATE TABLE IF NOT EXISTS {TABLE} (event_id text PRIMARY KEY, payload jsonb)"


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
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (event_id, payload) VALUES (%s, %s::jsonb) "
            "ON CONFLICT (event_id) DO NOTHING",
            [event["id"], request.body.decode("utf-8")],
        )
    return JsonResponse({"received": True})


urlpatterns = [path("bench/ceiling/", ceiling), path("", include("janitor.urls"))]
