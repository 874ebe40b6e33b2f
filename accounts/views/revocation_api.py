"""The session revocation API: a product that holds sessions confirms it ended an account's
sessions (POST /api/v1/revocations/<id>/confirm), with its endpoint's token."""

import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import ApiScope
from accounts.services.revocation import (
    SessionConfirmationNotFound,
    SessionConfirmationRefused,
    revocation_sessions_confirm,
)
from accounts.views.api_auth import api_token_for
from janitor.http import BodyTooLarge, ContentLengthInvalid, body_read_capped

MAX_BODY_BYTES = 4096
# SessionRevocation.sessions_ended is a PositiveIntegerField.
MAX_SESSIONS_ENDED = 2_147_483_647


def _sessions_ended(payload: object) -> tuple[int | None, dict[str, str]]:
    """The optional count from the body, or the per-field error."""
    if not isinstance(payload, dict):
        return None, {"body": 'Send a JSON object, e.g. {"sessions_ended": 3}.'}
    value = payload.get("sessions_ended")
    if value is None:
        return None, {}
    if isinstance(value, bool) or not isinstance(value, int):
        return None, {"sessions_ended": "A whole number of sessions ended."}
    if not 0 <= value <= MAX_SESSIONS_ENDED:
        return None, {"sessions_ended": f"Between 0 and {MAX_SESSIONS_ENDED}."}
    return value, {}


@csrf_exempt  # token-authenticated, no cookies: CSRF does not apply
@require_POST
def revocation_confirm_api(request, revocation_id: int):
    token = api_token_for(request, ApiScope.ACCESS_READ)
    if isinstance(token, JsonResponse):
        return token
    try:
        body = body_read_capped(request, MAX_BODY_BYTES)
    except ContentLengthInvalid as exc:
        return JsonResponse(
            {"error": "The Content-Length header is not a number."}, status=exc.status
        )
    except BodyTooLarge as exc:
        return JsonResponse({"error": f"Body larger than {exc.limit} bytes."}, status=exc.status)
    try:
        payload = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        return JsonResponse({"error": "The body is not JSON."}, status=400)
    sessions_ended, errors = _sessions_ended(payload)
    if errors:
        return JsonResponse(
            {"error": "The confirmation is not valid.", "errors": errors}, status=400
        )
    try:
        confirmation = revocation_sessions_confirm(
            revocation_id=revocation_id, token=token, sessions_ended=sessions_ended
        )
    except SessionConfirmationNotFound as exc:
        return JsonResponse({"error": str(exc)}, status=404)
    except SessionConfirmationRefused as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse(
        {
            "revocation": confirmation.revocation_id,
            "confirmed": True,
            "waiting_for": confirmation.waiting_for,
        }
    )
