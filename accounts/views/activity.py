"""The activity ingest API: products that are not this app report usage with a bearer token."""

import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import ApiScope
from accounts.services.ingest import (
    ActivityBatchInvalid,
    ActivityBatchTooLarge,
    activity_ingest,
    ingest_max_bytes,
)
from accounts.views.api_auth import api_token_for
from janitor.http import BodyTooLarge, ContentLengthInvalid, body_read_capped


@csrf_exempt  # token-authenticated, no cookies: CSRF does not apply
@require_POST
def activity_ingest_api(request):
    token = api_token_for(request, ApiScope.ACTIVITY_WRITE)
    if isinstance(token, JsonResponse):
        return token

    try:
        body = body_read_capped(request, ingest_max_bytes())
    except ContentLengthInvalid as exc:
        return JsonResponse(
            {"error": "The Content-Length header is not a number."}, status=exc.status
        )
    except BodyTooLarge as exc:
        return JsonResponse({"error": f"Body larger than {exc.limit} bytes."}, status=exc.status)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "The body is not JSON."}, status=400)
    except RecursionError:
        return JsonResponse({"error": "The body is nested too deeply."}, status=400)
    events = payload.get("events") if isinstance(payload, dict) else None
    try:
        result = activity_ingest(token=token, events=events)
    except ActivityBatchTooLarge as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    except ActivityBatchInvalid as exc:
        return JsonResponse({"error": exc.message, "errors": exc.errors}, status=exc.status)
    return JsonResponse(
        {"received": result.received, "stored": result.stored, "duplicates": result.duplicates}
    )
