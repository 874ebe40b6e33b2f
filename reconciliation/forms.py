"""Forms of the reconciliation app: every POST it handles (the review queue's actions, evidence
exports and disputes, starting a run) is read by a form; the rules themselves stay in the
services (their messages are the ones staff see)."""

from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.utils import timezone

from reconciliation.selectors.evidence import EVIDENCE_MAX_DAYS
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


# --- Evidence exports and disputes ------------------------------------------------------------


class EvidenceWindowForm(forms.Form):
    """The evidence window Finance chose: `since`/`until` dates (whole UTC days) or a number of
    `days`, and for an export the dispute it is for. Lenient by design, as the pages were: a
    date that does not parse means "the default window", never an error page."""

    since = forms.CharField(required=False, strip=False)
    until = forms.CharField(required=False, strip=False)
    days = forms.CharField(required=False)
    dispute = forms.CharField(required=False)

    def __init__(self, data) -> None:
        super().__init__(data)
        self.is_valid()

    def clean_days(self) -> int | None:
        try:
            days = int(self.cleaned_data["days"])
        except (TypeError, ValueError):
            return None
        return min(max(days, 1), EVIDENCE_MAX_DAYS)

    def window(self) -> tuple[datetime | None, datetime | None]:
        """(since, until) as aware datetimes, or (None, None) for the default window. Reversed
        dates are swapped; never wider than a year (the pack must stay under Stripe's 5 MB)."""
        try:
            since = date.fromisoformat(self.cleaned_data.get("since", ""))
        except ValueError:
            return None, None
        try:
            until_day: date | None = date.fromisoformat(self.cleaned_data.get("until", ""))
        except ValueError:
            until_day = None
        now = timezone.now()
        # A start in the future is today: the selector would swap it with now, and a window to
        # the year 9999 is millions of days, one chart bar each.
        since_at = min(datetime.combine(since, time.min, tzinfo=UTC), now)
        until_at = (
            min(datetime.combine(until_day, time.max, tzinfo=UTC), now) if until_day else None
        )
        if until_day is not None and until_at is not None and until_at < since_at:
            since_at, until_at = datetime.combine(until_day, time.min, tzinfo=UTC), since_at
        if (until_at or now) - since_at > timedelta(days=EVIDENCE_MAX_DAYS):
            since_at = (until_at or now) - timedelta(days=EVIDENCE_MAX_DAYS)
        return since_at, until_at


class DisputeSubmitForm(forms.Form):
    """Submitting evidence is final at Stripe: the form must carry confirm=submit."""

    confirm = forms.ChoiceField(
        choices=[("submit", "submit")],
        error_messages={
            "required": "Not submitted: confirm that the evidence goes to Stripe for good.",
            "invalid_choice": "Not submitted: confirm that the evidence goes to Stripe for good.",
        },
    )


# --- Reconciliation runs ----------------------------------------------------------------------


class RunStartForm(forms.Form):
    """ "Run now": dry_run=1 for a dry run; anything else is a real run (the button's value)."""

    dry_run = forms.CharField(required=False)

    def is_dry_run(self) -> bool:
        return self.is_valid() and self.cleaned_data["dry_run"] == "1"
