"""Records authenticated customer requests as activity, throttled per (user, path)."""

import logging

from django.conf import settings

from accounts.services.activity import activity_record_request

logger = logging.getLogger(__name__)

# Not usage of the product: assets, health checks, the ingest API (token-authenticated).
SKIPPED_PREFIXES = ("/static/", "/healthz", "/api/", "/django-admin/")


class ActivityCaptureMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        static_url = "/" + settings.STATIC_URL.lstrip("/")
        self.skipped = SKIPPED_PREFIXES + (static_url,)

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not user.is_staff
            and response.status_code < 400
            and not request.path.startswith(self.skipped)
        ):
            try:
                activity_record_request(user=user, request=request)
            except Exception:
                # Evidence capture must never break the customer's request (e.g. Redis down).
                logger.exception("activity capture failed for %s", request.path)
        return response
