"""Ends the session of a user who is no longer allowed in, on their next request."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY, logout
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts.backends import ACCESS_REFUSED_MESSAGE
from accounts.models import AccessStatus, User
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
