"""Who may open a dashboard page: staff only, then the permission the page names."""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied


def staff_required(*perms: str):
    """Anonymous: to the staff login. Customers and staff without every perm: 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            user = request.user
            if not user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user.is_staff or not user.has_perm("accounts.view_dashboard"):
                raise PermissionDenied("The dashboard is for staff only.")
            if perms and not user.has_perms(perms):
                raise PermissionDenied("Your role does not allow this.")
            return view(request, *args, **kwargs)

        wrapped.required_permissions = perms
        return wrapped

    return decorator
