"""Keeps the per-user session index in step with logins and logouts (staff and customers)."""

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from accounts.services.sessions import session_index_forget, session_index_record


@receiver(user_logged_in, dispatch_uid="accounts.session_index_record")
def _session_index_on_login(sender, request, user, **kwargs):
    session = getattr(request, "session", None)
    if session is not None and user is not None:
        session_index_record(user=user, session_key=session.session_key)


@receiver(user_logged_out, dispatch_uid="accounts.session_index_forget")
def _session_index_on_logout(sender, request, user, **kwargs):
    session = getattr(request, "session", None)
    if session is not None:
        session_index_forget(
            session_key=session.session_key, user_id=user.pk if user is not None else None
        )
