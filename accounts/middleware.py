"""The accounts app's middleware, in the order settings.MIDDLEWARE runs them:
- AccessEnforcementMiddleware ends the session of a user no longer allowed in, on their next
  request;
- TwoFactorMiddleware sends staff who must pass a second factor, and have not in this session,
  to do so first;
- ActivityCaptureMiddleware records authenticated customer requests as activity, throttled per
  (user, path).
"""

import logging
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY, logout
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts.backends import ACCESS_REFUSED_MESSAGE
from accounts.models import AccessStatus, User
from accounts.selectors import two_factor_enrolled, two_factor_required
from accounts.services.activity import activity_record_request
from accounts.services.sessions import session_revoked_owner


def _refused(user: User) -> bool:
    # A disabled member, or a member of a revoked account. revoked_pending keeps its sessions
    # until step 2 of the staged revocation (docs/design.md) ends them.
    return not user.is_active or user.access_status == AccessStatus.REVOKED


class AccessEnforcementMiddleware:
    """Signed-in users pass at the cost of two attribute reads; only a refused or ended
    session costs a lookup."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if user.is_authenticated:
            if _refused(user):
                return self._end(request, user)
            return self.get_response(request)
        owner = self._ended_session_owner(request)
        if owner is not None and _refused(owner):
            return self._end(request, owner)
        return self.get_response(request)

    @staticmethod
    def _ended_session_owner(request) -> User | None:
        session = getattr(request, "session", None)
        if session is None:
            return None
        # Still holds a user id but resolved anonymous: the backend no longer accepts that user.
        owner_id = session.get(SESSION_KEY)
        if owner_id is None:
            cookie = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
            # A cookie whose session is gone: a revocation may have ended it.
            if not cookie or session.session_key is not None:
                return None
            owner_id = session_revoked_owner(session_key=cookie)
            if owner_id is None:
                return None
        return (
            User.objects.filter(pk=owner_id)
            .select_related("account")
            .only("is_active", "is_staff", "account", "account__access_status")
            .first()
        )

    @staticmethod
    def _end(request, user: User):
        if request.user.is_authenticated:
            logout(request)
        else:
            request.session.flush()
        messages.error(request, ACCESS_REFUSED_MESSAGE)
        url = reverse("login" if user.is_staff else "customer_login")
        if request.headers.get("HX-Request") == "true":
            response = HttpResponse(status=204)
            response["HX-Redirect"] = url
            return response
        return HttpResponseRedirect(url)


# Pages an unverified staff member may still reach: signing in and out, the two-factor pages
# themselves (each checks its own rule) and the machine endpoints, which no session opens.
OPEN_VIEWS = frozenset(
    {
        "login",
        "logout",
        "healthz",
        "stripe_webhook",
        "activity_ingest_api",
        "customer_login",
        "customer_logout",
        "two_factor_verify",
        "two_factor_enrol",
        "admin:logout",
    }
)


class TwoFactorMiddleware:
    """After django_otp's OTPMiddleware: request.user.is_verified() says whether this session
    passed a device. Everything else for such a user (the dashboard, every Admin action, the
    Django admin) redirects to verify, or to enrol when they have no device yet.

    Support and Finance with no device pass when the policy is "admins"; staff who enrolled
    anyway verify like everyone else (their device would protect nothing otherwise).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = request.user
        if settings.JANITOR_STAFF_2FA == "off" or not user.is_authenticated or not user.is_staff:
            return None
        if user.is_verified():
            return None
        match = request.resolver_match
        if match is not None and match.view_name in OPEN_VIEWS:
            return None
        enrolled = two_factor_enrolled(user=user)
        if not enrolled and not two_factor_required(user=user):
            return None
        url = reverse("two_factor_verify" if enrolled else "two_factor_enrol")
        if request.method == "GET":
            url += "?" + urlencode({"next": request.get_full_path()})
        if request.headers.get("HX-Request") == "true":
            response = HttpResponse(status=204)
            response["HX-Redirect"] = url
            return response
        return HttpResponseRedirect(url)


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
