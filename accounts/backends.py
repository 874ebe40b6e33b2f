"""Authentication that enforces access status: revoked or suspended accounts cannot sign in."""

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts.models import User

# One message for every refusal, shown whether or not the password was right.
ACCESS_REFUSED_MESSAGE = (
    "This account cannot sign in: its access has been suspended. "
    "If you think this is a mistake, contact support."
)


class AccessStatusBackend(ModelBackend):
    """ModelBackend that refuses revoked_pending, revoked and inactive accounts at login.

    Existing sessions of a revoked_pending account keep working until the staged revocation
    ends them (DESIGN.md), so get_user() keeps ModelBackend's is_active rule only.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(User.USERNAME_FIELD)
        if username is None or password is None:
            return None
        try:
            user = User._default_manager.get_by_natural_key(username)
        except User.DoesNotExist:
            User().set_password(password)  # same hashing time as for a real account (#20760)
            return None
        # Hash either way, so the refusal takes as long as a login and says nothing about
        # whether the password was right.
        password_ok = user.check_password(password)
        if not user.can_log_in:
            if request is not None:
                request.access_refused = True
            raise PermissionDenied(ACCESS_REFUSED_MESSAGE)
        if password_ok and self.user_can_authenticate(user):
            return user
        return None
