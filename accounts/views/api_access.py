"""The access API: what a product beside Janitor asks before letting someone in, and the
changes feed for products that keep a local copy. Bearer token with the access:read scope."""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.utils.http import parse_etags
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from accounts.models import ApiScope
from accounts.selectors.access_api import (
    ACCESS_KINDS,
    FEED_LIMIT_DEFAULT,
    FEED_LIMIT_MAX,
    AccessIdAmbiguous,
    FeedCursorExpired,
    FeedCursorInvalid,
    FeedNeedsRestamp,
    FeedPosition,
    access_answer_get,
    access_changes_page,
)
from accounts.views.api_auth import api_token_for

# A product may keep the answer but must ask again (with If-None-Match) before using it; no
# shared cache may keep it (it is per token, behind Authorization).
CACHE_CONTROL = "private, no-cache"

CURSOR_EXPIRED = (
    "changed_since cannot be resumed from: changes after it were deleted by the retention "
    "purge, or this database never handed it out (restored from a backup, or another "
    "Janitor's). Resync: read each account with GET /api/v1/access/<id>, then start the feed "
    "again without changed_since."
)


def _weak_match(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/"x" matches "x"."""
    tags = parse_etags(header)
    if "*" in tags:
        return True
    bare = etag.removeprefix("W/")
    return any(tag.removeprefix("W/") == bare for tag in tags)


@csrf_exempt  # token-authenticated, no cookies: CSRF does not apply
@require_GET
def access_detail_api(request, public_id: str):
    token = api_token_for(request, ApiScope.ACCESS_READ)
    if isinstance(token, JsonResponse):
        return token
    kind = request.GET.get("kind") or None
    if kind is not None and kind not in ACCESS_KINDS:
        return JsonResponse(
            {"error": f"kind must be one of {', '.join(ACCESS_KINDS)} (or left out)."},
            status=400,
        )
    try:
        answer = access_answer_get(public_id=public_id, kind=kind)
    except AccessIdAmbiguous:
        return JsonResponse(
            {
                "error": "That id is a member's of one account and another account's own id: "
                "send kind=member or kind=account to say which you mean.",
                "kinds": list(ACCESS_KINDS),
            },
            status=409,
        )
    if answer is None:
        what = {"member": "No member", "account": "No account"}.get(
            kind or "", "No account or member"
        )
        return JsonResponse({"error": f"{what} has that id."}, status=404)
    etag = answer.etag
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match and _weak_match(if_none_match, etag):
        response = HttpResponse(status=304)
    else:
        response = JsonResponse(answer.as_dict())
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    return response


@csrf_exempt
@require_GET
def access_changes_api(request):
    token = api_token_for(request, ApiScope.ACCESS_READ)
    if isinstance(token, JsonResponse):
        return token
    errors: dict[str, str] = {}
    after: FeedPosition | None = None
    cursor = request.GET.get("changed_since", "")
    if cursor:
        try:
            after = FeedPosition.decode(cursor)
        except FeedCursorInvalid as exc:
            errors["changed_since"] = str(exc)
    limit_text = request.GET.get("limit", "")
    limit = FEED_LIMIT_DEFAULT
    if limit_text:
        try:
            limit = int(limit_text)
        except ValueError:
            limit = 0
        if not 1 <= limit <= FEED_LIMIT_MAX:
            errors["limit"] = f"limit must be a whole number from 1 to {FEED_LIMIT_MAX}."
    if errors:
        return JsonResponse(
            {"error": "Fix the query parameters: " + " ".join(errors.values()), "errors": errors},
            status=400,
        )
    try:
        page = access_changes_page(after=after, limit=limit)
    except FeedNeedsRestamp:
        response = JsonResponse(
            {
                "error": "The changes feed cannot be served until Janitor's operators re-stamp "
                "it (manage.py access_feed_restamp, after a restore). Try again later.",
                "code": "feed_unavailable",
            },
            status=503,
        )
        response["Retry-After"] = "300"
        response["Cache-Control"] = "private, no-store"
        return response
    except FeedCursorExpired:
        response = JsonResponse({"error": CURSOR_EXPIRED, "code": "cursor_expired"}, status=410)
        response["Cache-Control"] = "private, no-store"
        return response
    response = JsonResponse(
        {"changes": page.changes, "next_cursor": page.next_cursor, "has_more": page.has_more}
    )
    response["Cache-Control"] = "private, no-store"
    return response
