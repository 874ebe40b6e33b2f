"""Forms for the review queue's actions: each POST the app handles is read by a form, the rules
themselves stay in the services (their messages are the ones staff see)."""

from datetime import datetime, time

from django import forms
from django.utils import timezone

from reconciliation.services.access_decisions import GRACE_EXTENSION_MAX_DAYS

EXTEND_RANGE = f"Extend by 1 to {GRACE_EXTENSION_MAX_DAYS} days."
EXPIRY_FORMAT = "Give the comp's expiry as a date (YYYY-MM-DD)."


class FlagNoteForm(forms.Form):
    # Blank allowed here: the service says "A note cannot be empty."
    body = forms.CharField(required=False, max_length=5000, strip=False)


class FlagExtendForm(forms.Form):
    days = forms.IntegerField(
        min_value=1,
        max_value=GRACE_EXTENSION_MAX_DAYS,
        error_messages={
            "required": EXTEND_RANGE,
            "invalid": EXTEND_RANGE,
            "min_value": EXTEND_RANGE,
            "max_value": EXTEND_RANGE,
        },
    )
    reason = forms.CharField(required=False, max_length=2000, strip=False)


class FlagCompForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000, strip=False)
    expires_on = forms.DateField(
        input_formats=["%Y-%m-%d"],
        error_messages={"required": EXPIRY_FORMAT, "invalid": EXPIRY_FORMAT},
    )

    def expires_at(self) -> datetime:
        """The end of the expiry day, in the server's time zone."""
        return timezone.make_aware(datetime.combine(self.cleaned_data["expires_on"], time(23, 59)))


class FlagResolveForm(forms.Form):
    resolution = forms.CharField(required=False, max_length=5000, strip=False)
    restore_access = forms.BooleanField(required=False)


def form_error(form: forms.Form) -> str:
    """A form's errors as one sentence for the queue row."""
    return " ".join(str(message) for errors in form.errors.values() for message in errors)
