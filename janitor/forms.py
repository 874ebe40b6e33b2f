"""The staff login form: customers cannot sign in to the dashboard; guessing is throttled."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from accounts.backends import ACCESS_REFUSED_MESSAGE
from janitor.ratelimit import (
    LOCKED_MESSAGE,
    login_failure_record,
    login_failures_clear,
    login_is_locked,
)


class ThrottledAuthenticationForm(AuthenticationForm):
    """AuthenticationForm that refuses a (client address, email) after repeated failures."""

    def clean(self):
        ip = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        email = self.data.get("username", "")
        if login_is_locked(ip=ip, email=email):
            raise forms.ValidationError(LOCKED_MESSAGE, code="locked")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            login_failure_record(ip=ip, email=email)
            raise
        login_failures_clear(ip=ip, email=email)
        return cleaned


class AccessRefusalMixin:
    """Shows the access-refused message instead of "wrong password" when the backend refused
    the account itself (set on the request by AccessStatusBackend)."""

    def get_invalid_login_error(self):
        if getattr(self.request, "access_refused", False):
            return forms.ValidationError(ACCESS_REFUSED_MESSAGE, code="access_refused")
        return super().get_invalid_login_error()


class StaffLoginForm(AccessRefusalMixin, ThrottledAuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "not_staff": "This sign-in is for Janitor staff. Customers sign in at /app/login/.",
    }

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not user.is_staff:
            raise forms.ValidationError(self.error_messages["not_staff"], code="not_staff")
