"""Site-wide guards: refuse NUL bytes in URLs, the content security policy header, and JSON
errors on the product API."""

from django.conf import settings
from django.http import HttpResponseBadRequest, JsonResponse

API_PREFIX = "/api/"
_API_ERRORS = {
    400: "Bad request.",
    404: "No such API route: see docs/integration.md for the endpoints and the ids they take.",
    405: "Method not allowed here: the Allow header lists the ones that are.",
}


class ApiJsonErrorsMiddleware:
    """Every error under /api/ is `{"error": ...}`, as docs/integration.md says: Django's own
    answers (an unknown route, a method a view does not take, a NUL in the URL) were an HTML
    page, an empty body or plain text, which a product's JSON client cannot read."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith(API_PREFIX)
            and response.status_code in _API_ERRORS
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            message = _API_ERRORS[response.status_code]
            if response.get("Content-Type", "").startswith("text/plain") and response.content:
                message = response.content.decode("utf-8", "replace")[:500]  # its own words
            replaced = JsonResponse({"error": message}, status=response.status_code)
            # Every header the answer had (Allow, WWW-Authenticate, the security headers of
            # the middleware inside this one), but its body's own.
            for header, value in response.items():
                if header.lower() not in {"content-type", "content-length"}:
                    replaced[header] = value
            return replaced
        return response


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # Django's own debug pages use inline script and styles; leave them usable in DEBUG.
        if not (settings.DEBUG and response.status_code >= 500):
            response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


class RejectNulBytesMiddleware:
    """A NUL byte in the path, the query string or a form field is never meaningful here, and
    PostgreSQL cannot store or compare it: answer 400 at the door, not a 500 deep in a query."""

    FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or _has_nul(request.GET):
            return HttpResponseBadRequest(
                "NUL characters are not accepted in URLs.", content_type="text/plain"
            )
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        # Form posts only, and not to the machine endpoints (csrf_exempt: the webhook and the
        # activity API), which read and validate their own raw bodies.
        if (
            request.method == "POST"
            and request.content_type in self.FORM_TYPES
            and not getattr(view_func, "csrf_exempt", False)
            and _has_nul(request.POST)
        ):
            return HttpResponseBadRequest(
                "NUL characters are not accepted in form fields.", content_type="text/plain"
            )
        return None


def _has_nul(query) -> bool:
    return any("\x00" in value for _key, values in query.lists() for value in values)
