"""Human labels for every provider and internal value the dashboard shows: the one place."""

from django.conf import settings

from accounts.models import AccessStatus, RevocationStatus
from reconciliation.models import FlagKind, Outcome, RunStatus, WebhookStatus

SUBSCRIPTION_STATUS = {
    "incomplete": "Incomplete (first payment pending)",
    "incomplete_expired": "Incomplete, expired",
    "trialing": "Trialing",
    "active": "Active",
    "past_due": "Past due",
    "canceled": "Canceled",
    "unpaid": "Unpaid",
    "paused": "Paused",
}
DISPUTE_STATUS = {
    "warning_needs_response": "Inquiry: needs response",
    "warning_under_review": "Inquiry: under review",
    "warning_closed": "Inquiry closed",
    "needs_response": "Needs response",
    "under_review": "Under review",
    "won": "Won",
    "lost": "Lost",
    "charge_refunded": "Charge refunded",
    "prevented": "Prevented",
}
DISPUTE_REASON = {
    "bank_cannot_process": "Bank cannot process",
    "check_returned": "Check returned",
    "credit_not_processed": "Credit not processed",
    "customer_initiated": "Customer initiated",
    "debit_not_authorized": "Debit not authorized",
    "duplicate": "Duplicate charge",
    "fraudulent": "Fraudulent",
    "general": "General",
    "incorrect_account_details": "Incorrect account details",
    "insufficient_funds": "Insufficient funds",
    "noncompliant": "Noncompliant",
    "product_not_received": "Product not received",
    "product_unacceptable": "Product unacceptable",
    "subscription_canceled": "Subscription canceled",
    "unrecognized": "Unrecognized",
}
EXPORT_KIND = {
    "pdf": "PDF evidence pack",
    "csv": "Activity CSV",
    "stripe_stage": "Staged on Stripe",
    "stripe_submit": "Submitted to Stripe",
}
# The audit's phase timings (seconds), as the run page names them.
RUN_PHASE = {
    "total": "Total",
    "listing": "Waiting for Stripe",
    "listing_cpu": "Reading Stripe's pages (CPU)",
    "parsing": "Reading subscriptions",
    "mirror": "Updating the subscription mirror",
    "own_work": "Janitor's own work",
    "own_work_cpu": "Janitor's own work (CPU)",
    "linking": "Linking customers",
    "deciding": "Deciding outcomes",
    "applying": "Applying outcomes",
}
FLAG_NOTE_ACTION = {
    "note": "Note",
    "assign": "Assigned",
    "extend_grace": "Grace extended",
    "comp": "Comp recorded",
    "resolve": "Resolved",
}
ATTEMPT_OUTCOME = {
    "processed": "Processed",
    "ignored": "Ignored (type not handled)",
    "failed": "Failed",
    "dead": "Dead-lettered",
    "stale": "Skipped: older than the mirror",
    "running": "Running",
}

LABELS: dict[str, dict[str, str]] = {
    "access_status": dict(AccessStatus.choices),
    "subscription_status": SUBSCRIPTION_STATUS,
    "dispute_status": DISPUTE_STATUS,
    "dispute_reason": DISPUTE_REASON,
    "flag_kind": dict(FlagKind.choices),
    "run_status": dict(RunStatus.choices),
    "run_phase": RUN_PHASE,
    "outcome": dict(Outcome.choices),
    "webhook_status": dict(WebhookStatus.choices),
    "attempt_outcome": ATTEMPT_OUTCOME,
    "revocation_status": dict(RevocationStatus.choices),
    "export_kind": EXPORT_KIND,
    "flag_note_action": FLAG_NOTE_ACTION,
}


def label(value, kind: str) -> str:
    """The human label of a value of a kind; an unknown value still reads as words."""
    if value in (None, ""):
        return ""
    text = str(value)
    known = LABELS.get(kind, {}).get(text)
    if known is not None:
        return known
    return text.replace("_", " ").replace(".", " ").capitalize()


# Stripe id prefix -> the Dashboard's path for it.
STRIPE_PATHS = {
    "cus_": "customers/",
    "sub_": "subscriptions/",
    "ch_": "payments/",
    "py_": "payments/",
    "pi_": "payments/",
    "dp_": "disputes/",
    "du_": "disputes/",
    "evt_": "events/",
    "in_": "invoices/",
    "file_": "files/",
}
# Ids the account search finds: their "account" link goes through it.
SEARCHABLE_PREFIXES = ("cus_", "sub_", "ch_", "py_", "dp_", "du_")


def stripe_dashboard_url(stripe_id: str) -> str:
    for prefix, path in STRIPE_PATHS.items():
        if stripe_id.startswith(prefix):
            return f"{settings.STRIPE_DASHBOARD_URL}{path}{stripe_id}"
    return ""
