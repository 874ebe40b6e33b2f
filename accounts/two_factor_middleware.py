"""Sends staff who must pass a second factor, and have not in this session, to do so first."""

from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts.selectors import two_factor_enrolled, two_factor_required

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
