"""The billing provider's side: subscription mirror, webhook events, reconciliation runs,
flags, disputes."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

PROVIDER_STRIPE = "stripe"


class SubscriptionStatus(models.TextChoices):
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"


class Subscription(models.Model):
    """The mirror of one provider subscription, as last applied."""

    provider = models.CharField(max_length=20, default=PROVIDER_STRIPE)
    provider_id = models.CharField(max_length=255, unique=True)
    # Indexed by subscription_account_idx (account, status) and subscription_customer_idx
    # below: a first night writes a million rows and links each, and every index of its own
    # (a second one on the account, a LIKE one on the customer nobody searches) is written too.
    account = models.ForeignKey(
        "accounts.Account",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="subscriptions",
        db_index=False,
    )
    customer_id = models.CharField(max_length=255)
    status = models.CharField(max_length=24, choices=SubscriptionStatus.choices)
    price_id = models.CharField(max_length=255, blank=True)
    plan_name = models.CharField(max_length=255, blank=True)
    amount = models.BigIntegerField(null=True, blank=True, help_text="Minor units (cents).")
    currency = models.CharField(max_length=3, blank=True)
    interval = models.CharField(max_length=10, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    # Seats paid for: the summed quantity of the per-seat items (JANITOR_SEAT_PRICES or a price
    # whose metadata says per_seat), None when no item is per-seat (a flat price never counts).
    seat_quantity = models.PositiveIntegerField(null=True, blank=True)
    # Provider time of the newest change applied here: older events must not roll it back.
    provider_updated_at = models.DateTimeField()
    raw = models.JSONField(default=dict)
    # The customer's email as the provider gave it, kept while the row waits for its account:
    # an account created later with that email links the row (unique, case-insensitive).
    customer_email = models.CharField(max_length=254, blank=True)
    # When reconciliation last looked the customer up and found no account: not asked again each
    # night (a later account with that email is matched from customer_email, without a call).
    customer_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=SubscriptionStatus.values), name="subscription_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gte=0),
                name="subscription_amount_not_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "status"], name="subscription_account_idx"),
            models.Index(fields=["customer_id"], name="subscription_customer_idx"),
            # Rows waiting for their account, found by the customer's email when it appears.
            models.Index(
                Lower("customer_email"),
                name="subscription_waiting_email_idx",
                condition=Q(account__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} ({self.status})"

    @property
    def grants_access(self) -> bool:
        return self.status in settings.JANITOR_ACCESS_STATUSES


class WebhookStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored (type not handled)"
    FAILED = "failed", "Failed, will retry"
    DEAD = "dead", "Dead-lettered"


class WebhookEvent(models.Model):
    """A verified provider event, stored before it is acknowledged."""

    id = models.BigAutoField(primary_key=True)
    provider_event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    created = models.DateTimeField(help_text="The provider's event time.")
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=WebhookStatus.choices, default=WebhookStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=16, default="webhook")  # webhook, catch_up, demo
    customer_id = models.CharField(max_length=255, blank=True, db_index=True)
    # The API version Stripe rendered the event in (the endpoint's or the account's).
    api_version = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=WebhookStatus.values), name="webhook_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="webhook_status_idx"),
            models.Index(fields=["created"], name="webhook_created_idx"),
            # /metrics reads the last hour's deliveries by type and their processing time.
            models.Index(fields=["received_at"], name="webhook_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_event_id} {self.type}"


class WebhookAttempt(models.Model):
    """One try at processing an event: its history on the Webhooks page."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="attempts_log")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16)
    error = models.TextField(blank=True)
    trigger = models.CharField(max_length=32, blank=True)  # queue, sweeper, replay:<staff>


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    DRY_RUN = "dry_run", "Dry run"
    APPLIED = "applied", "Applied"
    HALTED = "halted", "Halted by the safety brake"
    DISCARDED = "discarded", "Discarded"
    FAILED = "failed", "Failed"


class ReconciliationRun(models.Model):
    """One nightly (or manual) reconciliation run: its counts, timings and verdict."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    dry_run = models.BooleanField(default=False)
    triggered_by = models.CharField(max_length=254, default="system:schedule")
    counts = models.JSONField(default=dict, blank=True)  # outcome -> number of accounts
    pages_read = models.PositiveIntegerField(default=0)
    subscriptions_read = models.PositiveIntegerField(default=0)
    change_ratio = models.FloatField(null=True, blank=True)
    halt_reason = models.TextField(blank=True)
    errors = models.TextField(blank=True)
    durations = models.JSONField(default=dict, blank=True)  # phase -> seconds
    progress = models.JSONField(default=dict, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    # When the outcomes were decided: an apply skips an account a person changed after this.
    outcomes_decided_at = models.DateTimeField(null=True, blank=True)

    # What the run pages show, set by reconciliation.selectors.runs (not stored).
    changes: int
    flags_found: int
    count_rows: list[tuple[str, str, int]]
    change_percent: float | None
    links_skipped: list["RunLink"]

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values), name="run_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["-started_at"], name="run_started_idx")]


class Outcome(models.TextChoices):
    IN_SYNC = "in_sync", "In sync"
    START_GRACE = "start_grace", "Start grace period"
    PAYMENT_FAILED = "payment_failed", "Payment failed: grace period"
    REACTIVATE = "reactivate", "Re-activate"
    FLAG_MANUAL_GRANT = "flag_manual_grant", "Flag manual grant"
    FLAG_MISMATCH = "flag_mismatch", "Flag provider mismatch"
    FLAG_GRACE_EXPIRED = "flag_grace_expired", "Flag grace expired"
    END_GRACE = "end_grace", "End grace period"
    # More enabled members than the per-seat subscription pays for (never changes access).
    FLAG_SEATS_EXCEEDED = "flag_seats_exceeded", "Flag seats exceeded"
    # The account could not be verified this run (a capped or failed customer lookup, a partial
    # listing): no change and no flag, only counted and listed with the reason.
    NOT_CHECKED = "not_checked", "Not checked"


class RunOutcome(models.Model):
    """A run's computed outcome for one account that needs a change (in-sync ones are counted)."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="outcomes")
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="+")
    outcome = models.CharField(max_length=24, choices=Outcome.choices)
    detail = models.JSONField(default=dict, blank=True)
    applied = models.BooleanField(default=False)
    # Set when the apply re-decided this account and found the outcome no longer right.
    skip_reason = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "account"], name="run_outcome_one_per_account"),
        ]


class RunLink(models.Model):
    """A provider customer a run found for an account that had none (by metadata or email).

    Decided with the outcomes (a dry run reports it too) and written only when the run is
    applied, so a dry or halted run changes no account.
    """

    id = models.BigAutoField(primary_key=True)
    # Indexed by run_link_one_per_account (run, account): a first night stages a link per
    # account, and a second index on the run alone costs each insert and misleads the planner.
    run = models.ForeignKey(
        ReconciliationRun, on_delete=models.CASCADE, related_name="links", db_index=False
    )
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="+")
    customer_id = models.CharField(max_length=255)
    how = models.CharField(max_length=32)  # metadata.account_id or email
    applied = models.BooleanField(default=False)
    skip_reason = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "account"], name="run_link_one_per_account"),
        ]


class FlagKind(models.TextChoices):
    MISSING_SUBSCRIPTION = "missing_subscription", "Missing subscription"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    REACTIVATED = "reactivated", "Re-activated"
    MANUAL_GRANT = "manual_grant", "Manual grant"
    DISPUTED = "disputed", "Disputed"
    CHARGEBACK_LOST = "chargeback_lost", "Chargeback lost"
    GRACE_EXPIRED = "grace_expired", "Grace expired"
    PROVIDER_MISMATCH = "provider_mismatch", "Provider mismatch"
    SEATS_EXCEEDED = "seats_exceeded", "Seats exceeded"


class FlagStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class Flag(models.Model):
    """One thing a person must look at. One open flag per (account, kind)."""

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="flags")
    kind = models.CharField(max_length=32, choices=FlagKind.choices)
    status = models.CharField(max_length=10, choices=FlagStatus.choices, default=FlagStatus.OPEN)
    reason = models.TextField(blank=True, help_text="Why it was opened, in words.")
    opened_by_run = models.ForeignKey(
        ReconciliationRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="flags"
    )
    opened_by_event = models.ForeignKey(
        WebhookEvent, on_delete=models.SET_NULL, null=True, blank=True, related_name="flags"
    )
    opened_by = models.CharField(max_length=254, default="system")
    opened_at = models.DateTimeField(default=timezone.now)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolution = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=254, blank=True)

    # What the review queue shows, set by reconciliation.selectors.queue (not stored).
    grace_days_left: int | None
    members_total: int
    members_enabled: int
    sessions_now: int

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "kind"],
                condition=Q(status="open"),
                name="flag_one_open_per_account_kind",
            ),
            models.CheckConstraint(condition=Q(kind__in=FlagKind.values), name="flag_kind_valid"),
            models.CheckConstraint(
                condition=Q(status="open") | (Q(resolved_at__isnull=False) & ~Q(resolution="")),
                name="flag_resolved_has_resolution",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "kind", "opened_at"], name="flag_queue_idx"),
            models.Index(fields=["status", "opened_at"], name="flag_open_age_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.account_id}"


class FlagNote(models.Model):
    """A note, assignment, grace extension or other staff action on a flag: its history."""

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=32, default="note")
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)


class Dispute(models.Model):
    """A chargeback (or inquiry) on one of the account's charges."""

    provider = models.CharField(max_length=20, default=PROVIDER_STRIPE)
    provider_id = models.CharField(max_length=255, unique=True)
    account = models.ForeignKey(
        "accounts.Account",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="disputes",
    )
    charge_id = models.CharField(max_length=255, blank=True)
    customer_id = models.CharField(max_length=255, blank=True, db_index=True)
    # Found through the charge (a Stripe dispute names no customer): when it was paid and
    # the service period it paid for, the default window of the evidence.
    charge_created = models.DateTimeField(null=True, blank=True)
    service_period_start = models.DateTimeField(null=True, blank=True)
    service_period_end = models.DateTimeField(null=True, blank=True)
    # Why the dispute has no account yet, in words (empty once linked).
    link_problem = models.CharField(max_length=255, blank=True)
    amount = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True)
    reason = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=32)
    due_by = models.DateTimeField(null=True, blank=True)
    submission_count = models.PositiveIntegerField(default=0)
    evidence_staged = models.JSONField(default=dict, blank=True)
    staged_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    provider_updated_at = models.DateTimeField()
    raw = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="dispute_amount_not_negative"),
        ]
        indexes = [models.Index(fields=["status", "due_by"], name="dispute_urgency_idx")]
        permissions = [
            ("export_evidence", "Can export chargeback evidence"),
            ("submit_dispute_evidence", "Can stage and submit dispute evidence"),
        ]


class EvidenceExport(models.Model):
    """Who exported or sent which evidence, when."""

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    dispute = models.ForeignKey(Dispute, on_delete=models.SET_NULL, null=True, blank=True)
    kind = models.CharField(max_length=16)  # pdf, csv, stripe_stage, stripe_submit
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    details = models.JSONField(default=dict, blank=True)


class Permissions(models.Model):
    """Holds the dashboard's reconciliation permissions (no table rows of its own)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_review_queue", "Can read the review queue"),
            ("work_review_queue", "Can assign, note, extend grace and resolve flags"),
            ("record_comp", "Can record a comp (deliberate manual grant)"),
            ("view_webhooks", "Can read webhook events"),
            ("replay_webhooks", "Can replay webhook events"),
            ("view_reconciliation", "Can read reconciliation runs"),
            ("run_reconciliation", "Can start, apply or discard reconciliation runs"),
            ("view_disputes", "Can read disputes and evidence"),
        ]
