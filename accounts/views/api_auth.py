"""Bearer-token authentication of the product API (/api/v1/...), by scope."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from accounts.models import ApiToken
from accounts.services.tokens import api_token_authenticate


def api_unauthorized(message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="janitor"'
    return response


def api_token_for(request: HttpRequest, scope: str) -> ApiToken | JsonResponse:
    """The request's live token when it carries `scope`; otherwise the 401 or 403 to answer."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return api_unauthorized("Send Authorization: Bearer <token>.")
    token = api_token_authenticate(raw=raw.strip())
    if token is None:
        return api_unauthorized("Unknown or revoked token.")
    if not token.has_scope(scope):
        return JsonResponse({"error": f"This token lacks the {scope} scope."}, status=403)
    return token
