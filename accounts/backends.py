"""Authentication that enforces access status: revoked or suspended accounts cannot sign in."""

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts.models import User

# Shown only to someone who proved the password: a wrong guess gets the generic error, so the
# message never tells a stranger that an email belongs to a suspended account.
ACCESS_REFUSED_MESSAGE = (
    "This account cannot sign in: its access has been suspended. "
    "If you think this is a mistake, contact support."
)


class AccessStatusBackend(ModelBackend):
    """ModelBackend that refuses disabled members and members of revoked_pending or revoked
    accounts at login.

    Existing sessions of a revoked_pending account keep working until the staged revocation
    ends them (docs/design.md), so get_user() keeps ModelBackend's is_active rule only.
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
        # The hasher runs on every path (an unusable password runs it too: Django's
        # check_password hashes a dummy), so timing says nothing about the account.
        if not user.check_password(password):
            return None
        if not user.can_log_in:
            if request is not None:
                request.access_refused = True
            raise PermissionDenied(ACCESS_REFUSED_MESSAGE)
        if self.user_can_authenticate(user):
            return user
        return None

    def get_user(self, user_id):
        # Every request reads the member's account (its access status): one query, not two.
        try:
            user = User._default_manager.select_related("account").get(pk=user_id)
        except User.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None
