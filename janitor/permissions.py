"""Who may open a dashboard page: staff only, then the permission the page names."""

from collections.abc import Iterable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils.http import urlencode
from django_htmx.http import HttpResponseClientRedirect

from accounts.roles import ROLE_ADMIN, ROLE_FINANCE, ROLE_PERMISSIONS, ROLE_SUPPORT


def _to_login(request):
    """To the staff login, then back. An htmx request's own URL is a fragment or an action, so
    it goes back to the page it came from, and the browser goes there as a whole page
    (HX-Redirect): a redirect htmx followed would paste the login page into the target."""
    if getattr(request, "htmx", False):
        back = request.htmx.current_url_abs_path or reverse("overview")
        return HttpResponseClientRedirect(f"{reverse('login')}?{urlencode({'next': back})}")
    return redirect_to_login(request.get_full_path())


STAFF_ONLY_MESSAGE = "The dashboard is for staff only."


def role_needed_message(perms: Iterable[str]) -> str:
    """What the 403 page tells staff: which role(s) hold every one of `perms`."""
    wanted = set(perms)
    roles = [
        role
        for role in (ROLE_SUPPORT, ROLE_FINANCE, ROLE_ADMIN)
        if wanted <= ROLE_PERMISSIONS[role]
    ]
    if not roles:
        return "No staff role may do this; a Django superuser administers it."
    return f"This needs the {' or '.join(roles)} role."


def staff_required(*perms: str):
    """Anonymous: to the staff login. Customers and staff without every perm: 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            user = request.user
            if not user.is_authenticated:
                return _to_login(request)
            if not user.is_staff or not user.has_perm("accounts.view_dashboard"):
                raise PermissionDenied(STAFF_ONLY_MESSAGE)
            if perms and not user.has_perms(perms):
                raise PermissionDenied(role_needed_message(perms))
            return view(request, *args, **kwargs)

        # What the view requires, on the view itself (mypy allows no attribute on a function).
        wrapped.required_permissions = perms  # type: ignore[attr-defined]
        return wrapped

    return decorator
