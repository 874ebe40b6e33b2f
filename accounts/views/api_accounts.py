"""The accounts API: a product pushes its accounts and their members (scope accounts:write)."""

import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.models import ApiScope
from accounts.services.account_sync import (
    BATCH_MAX_BYTES,
    PUT_MAX_BYTES,
    AccountSyncError,
    account_as_json,
    account_input_parse,
    account_sync,
    accounts_sync_batch,
)
from accounts.views.api_auth import api_token_for
from janitor.http import BodyTooLarge, ContentLengthInvalid, body_read_capped


def _json_body(request, limit: int):
    """The parsed body, or the JsonResponse that refuses it."""
    try:
        body = body_read_capped(request, limit)
    except ContentLengthInvalid as exc:
        return JsonResponse(
            {"error": "The Content-Length header is not a number."}, status=exc.status
        )
    except BodyTooLarge as exc:
        return JsonResponse({"error": f"Body larger than {exc.limit} bytes."}, status=exc.status)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "The body is not JSON."}, status=400)
    except RecursionError:
        return JsonResponse({"error": "The body is nested too deeply."}, status=400)


@csrf_exempt  # token-authenticated, no cookies: CSRF does not apply
@require_http_methods(["PUT"])
def account_put_api(request, public_id: str):
    token = api_token_for(request, ApiScope.ACCOUNTS_WRITE)
    if isinstance(token, JsonResponse):
        return token
    payload = _json_body(request, PUT_MAX_BYTES)
    if isinstance(payload, JsonResponse):
        return payload
    wanted, errors = account_input_parse(public_id, payload)
    if wanted is None:
        return JsonResponse(
            {"error": "The account was not saved: see errors.", "errors": errors}, status=400
        )
    outcome = account_sync(wanted=wanted, token=token)
    if outcome.account is None:
        return JsonResponse(
            {"error": "The account was not saved: see errors.", "errors": outcome.errors},
            status=400,
        )
    return JsonResponse(
        {"account": account_as_json(outcome.account), "result": outcome.result},
        status=201 if outcome.result == "created" else 200,
    )


@csrf_exempt  # token-authenticated, no cookies: CSRF does not apply
@require_http_methods(["POST"])
def accounts_batch_api(request):
    token = api_token_for(request, ApiScope.ACCOUNTS_WRITE)
    if isinstance(token, JsonResponse):
        return token
    payload = _json_body(request, BATCH_MAX_BYTES)
    if isinstance(payload, JsonResponse):
        return payload
    items = payload.get("accounts") if isinstance(payload, dict) else None
    try:
        outcomes = accounts_sync_batch(items=items, token=token)
    except AccountSyncError as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    results = []
    counts = {"created": 0, "updated": 0, "unchanged": 0, "errors": 0}
    for outcome in outcomes:
        entry: dict = {"public_id": outcome.public_id, "result": outcome.result}
        if outcome.result == "error":
            entry["errors"] = outcome.errors
            counts["errors"] += 1
        else:
            counts[outcome.result] += 1
        results.append(entry)
    return JsonResponse({"results": results, **counts})
