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
# A reconciliation run's phase timings (seconds), as the run page names them.
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

REVOCATION_STEP = {
    "1_revoked_pending": "new logins refused",
    "2_local_sessions_ended": "Janitor's sessions ended",
    "2_sessions_ended": "sessions ended",
    "3_revoked": "access revoked",
    "4_audited": "audited",
}

LABELS: dict[str, dict[str, str]] = {
    "revocation_step": REVOCATION_STEP,
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


STRIPE_DASHBOARD = "https://dashboard.stripe.com/"


def stripe_dashboard_url(stripe_id: str) -> str:
    """The id's page on the Stripe Dashboard: test-mode pages unless Janitor's key is a live
    one, so a test key never sends staff to live data (or the other way round)."""
    live = (settings.STRIPE_API_KEY or "").startswith(("sk_live_", "rk_live_"))
    for prefix, path in STRIPE_PATHS.items():
        if stripe_id.startswith(prefix):
            return f"{STRIPE_DASHBOARD}{'' if live else 'test/'}{path}{stripe_id}"
    return ""


# Provider errors as staff should read them: what happened, and what to do. Matched in order
# against the developer wording the gateway and the SDK give (case-insensitive).
PROVIDER_ERRORS = [
    (
        ("stripe_api_key is not set",),
        "Janitor has no Stripe key, so it cannot reach Stripe. Ask an Admin to set "
        "STRIPE_API_KEY in Janitor's environment, then try again.",
    ),
    (
        ("invalid api key", "authenticationerror", "expired api key", "api key provided"),
        "Stripe refused Janitor's key (revoked, expired or mistyped). Ask an Admin to replace "
        "STRIPE_API_KEY, then try again.",
    ),
    (
        ("permissionerror", "does not have the required permissions", "restricted key"),
        "Janitor's Stripe key is not allowed to do this. Ask an Admin to give the restricted "
        "key the missing permission in the Stripe Dashboard.",
    ),
    (
        ("ratelimiterror", "rate limit", "too many requests"),
        "Stripe asked Janitor to slow down. Wait a minute, then try again.",
    ),
    (
        ("apiconnectionerror", "could not connect", "connection", "timed out", "timeout"),
        "Stripe could not be reached (a network problem or a Stripe outage). Try again in a "
        "few minutes; status.stripe.com says whether Stripe is down.",
    ),
    (
        ("no such",),
        "Stripe does not know this object: it was deleted, or it lives in the other mode (test "
        "or live) than Janitor's key. Check the id in the Stripe Dashboard.",
    ),
    (
        ("listed no subscriptions",),
        "Stripe listed no subscriptions at all: the key probably belongs to another Stripe "
        "account or mode. Ask an Admin to check STRIPE_API_KEY before applying anything.",
    ),
]


def provider_error_plain(text: str) -> str:
    """What a provider error means and what to do, in plain words ("" if not a known one)."""
    lowered = (text or "").lower()
    for needles, plain in PROVIDER_ERRORS:
        if any(needle in lowered for needle in needles):
            return plain
    return ""
