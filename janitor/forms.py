"""Forms of the dashboard shell: sign-in (every one throttled; customers cannot sign in to the
dashboard) and notice preferences."""

from typing import TYPE_CHECKING

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from accounts.backends import ACCESS_REFUSED_MESSAGE
from janitor.models import NoticeKind
from janitor.ratelimit import (
    LOCKED_MESSAGE,
    LoginThrottled,
    login_failure_record,
    login_success_record,
    login_throttle_check,
)


class ThrottledAuthenticationForm(AuthenticationForm):
    """AuthenticationForm that refuses a client address after repeated failures, for one email
    or across emails (janitor/ratelimit.py). Every sign-in form derives from it."""

    def clean(self):
        email = self.data.get("username", "")
        email = email if isinstance(email, str) else ""
        try:
            login_throttle_check(request=self.request, email=email)
        except LoginThrottled:
            raise forms.ValidationError(LOCKED_MESSAGE, code="locked") from None
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            login_failure_record(request=self.request, email=email)
            raise
        login_success_record(request=self.request, email=email)
        return cleaned


# The mixin goes in front of an AuthenticationForm: the type checker reads it as one.
if TYPE_CHECKING:
    _AuthenticationFormBase = AuthenticationForm
else:
    _AuthenticationFormBase = object


class AccessRefusalMixin(_AuthenticationFormBase):
    """Shows the access-refused message instead of "wrong password" when the backend refused
    the account itself. AccessStatusBackend marks the request only after the password was
    verified, so a wrong guess never learns that an account is suspended."""

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


class AdminLoginForm(ThrottledAuthenticationForm, AdminAuthenticationForm):
    """The Django admin's own form (staff only, its own messages), behind the same throttle."""


class _KnownChoices(forms.MultipleChoiceField):
    """A multiple choice that drops the values it does not know instead of refusing the form."""

    def clean(self, value: object) -> list[str]:
        return [choice for choice in self.to_python(value) if self.valid_value(choice)]


class NoticePreferencesForm(forms.Form):
    """The kinds of notice a staff member mutes. Lenient as the page always was: values that
    are not kinds are dropped (the service also leaves out the kinds that cannot be muted)."""

    muted = _KnownChoices(choices=NoticeKind.choices, required=False)
