"""Forms of the product pages: an endpoint's settings."""

from django import forms
from django.core.validators import URLValidator

from accounts.models import ApiScope, ApiToken


def token_choices():
    """Live tokens that may confirm revocations (access:read)."""
    live = ApiToken.objects.filter(revoked_at__isnull=True).order_by("name", "id")
    # Scopes are a JSON list: checked here, the same on SQLite and PostgreSQL.
    return ApiToken.objects.filter(
        pk__in=[t.pk for t in live if t.has_scope(ApiScope.ACCESS_READ)]
    ).order_by("name", "id")


class EndpointForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="The product, as staff know it.")
    url = forms.CharField(
        label="URL",
        max_length=500,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Where Janitor POSTs the signed events (https in production).",
    )
    holds_sessions = forms.BooleanField(
        required=False,
        label="Holds sessions",
        help_text="The product keeps its own sessions: a staged revocation asks it to end "
        "them and waits for its confirmation.",
    )
    token = forms.ModelChoiceField(
        queryset=ApiToken.objects.none(),
        required=False,
        empty_label="No token",
        help_text="An API token with access:read: the product confirms revocations with it. "
        "Required when the product holds sessions.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["token"].queryset = token_choices()  # type: ignore[attr-defined]

    def clean(self):
        cleaned = super().clean() or {}
        if cleaned.get("holds_sessions") and not cleaned.get("token"):
            self.add_error(
                "token",
                "A product that holds sessions needs a token (with access:read) to confirm "
                "that it ended them.",
            )
        return cleaned
