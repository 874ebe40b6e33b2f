"""Forms for sign-in, revocation requests and decisions, restores, the audit filters, 2FA, API
tokens."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from accounts.models import ApiScope
from janitor.forms import AccessRefusalMixin, ThrottledAuthenticationForm


class CustomerLoginForm(AccessRefusalMixin, ThrottledAuthenticationForm):
    """The product's sign-in: throttled like the staff one; staff are sent to /login/."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "staff": "Staff sign in to the dashboard at /login/.",
    }

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if user.is_staff:
            raise forms.ValidationError(self.error_messages["staff"], code="staff")


class RevocationRequestForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="Why this account must lose access.",
    )
    reference = forms.CharField(
        required=False,
        max_length=200,
        label="Case reference",
        widget=forms.TextInput(attrs={"placeholder": "Chargeback Case #12345"}),
    )

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A reason is required.")
        return reason


class RestoreForm(RevocationRequestForm):
    pass


class DecisionForm(forms.Form):
    comment = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )


class AuditFilterForm(forms.Form):
    account = forms.CharField(required=False, max_length=254, label="Account (public id or email)")
    actor = forms.CharField(required=False, max_length=254)
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )


class TwoFactorCodeForm(forms.Form):
    token = forms.CharField(
        label="Code",
        max_length=16,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}
        ),
        help_text="The 6 digits your authenticator app shows, or one of your backup codes.",
    )


class TwoFactorResetForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why: e.g. the ticket of the lost phone, and how you checked who asked.",
    )

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A reason is required.")
        return reason


class MemberChangeForm(forms.Form):
    """Disable or enable one member of an account: a reason for the audit."""

    reason = forms.CharField(max_length=500)

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why (for the audit).")
        return reason


class TwoFactorEnrolActionForm(forms.Form):
    """Which step of the enrol page was posted: start (show the secret), confirm (with a code),
    or new backup codes. Anything else starts over, as the page always did."""

    action = forms.CharField(required=False)

    def action_name(self) -> str:
        return self.cleaned_data["action"] if self.is_valid() else ""


class ApiTokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="Which product (or which of its services) uses it.",
        widget=forms.TextInput(attrs={"placeholder": "Billing backend"}),
    )
    scopes = forms.MultipleChoiceField(
        choices=ApiScope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only what the product needs: a token cannot call outside its scopes.",
        error_messages={"required": "Choose at least one scope."},
    )

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("A token needs a name.")
        return name


class ApiTokenRevokeForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.TextInput(attrs={"placeholder": "Product retired / token leaked"}),
    )

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why the token is revoked.")
        return reason
