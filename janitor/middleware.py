"""Site-wide guards: refuse NUL bytes in URLs, and the content security policy header."""

from django.conf import settings
from django.http import HttpResponseBadRequest


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
    """A NUL byte in the path or query string is never meaningful here, and PostgreSQL cannot
    store or compare it: answer 400 at the door instead of a 500 deep in a query."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            "\x00" in request.path
            or "\x00" in request.META.get("QUERY_STRING", "")
            or any("\x00" in value for values in request.GET.lists() for value in values[1])
        ):
            return HttpResponseBadRequest(
                "NUL characters are not accepted in URLs.", content_type="text/plain"
            )
        return self.get_response(request)
