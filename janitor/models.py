"""Notices: every notification Janitor sends (to staff roles, a staff member or a customer)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class NoticeKind(models.TextChoices):
    # Finance
    DISPUTE_NEW = "dispute_new", "New dispute"
    DISPUTE_DUE = "dispute_due", "Dispute due within 48 hours, no evidence staged"
    EVIDENCE_SUBMITTED = "evidence_submitted", "Dispute evidence submitted"
    # Admins
    REVOCATION_WAITING = "revocation_waiting", "Revocation request waiting for approval"
    RUN_HALTED = "run_halted", "Reconciliation run halted or failed"
    REVOCATION_STUCK = "revocation_stuck", "Revocation stalled or failed"
    WEBHOOKS_DEAD = "webhooks_dead", "Webhooks dead-lettered"
    PROVIDER_KEY = "provider_key", "Stripe key refused (401/403)"
    # Support
    SUPPORT_DIGEST = "support_digest", "Morning digest"
    REVOCATION_DECIDED = "revocation_decided", "Your revocation request completed or was rejected"
    # Customers
    GRACE_STARTED = "grace_started", "Payment issue: grace period (customer)"


# Kinds a staff member cannot mute: an approval waits on them.
UNMUTABLE_KINDS = frozenset({NoticeKind.REVOCATION_WAITING})


class NoticeStatus(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    SENDING = "sending", "Being sent"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed, will retry"
    DEAD = "dead", "Failed, gave up"
    MUTED = "muted", "Not sent: muted by the recipient"


class Notice(models.Model):
    """One message to one target. Its dedup key makes a retried task or a duplicated webhook
    send it once."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=32, choices=NoticeKind.choices)
    audience = models.CharField(max_length=16)  # support, finance, admins, staff, customer
    # "mailto:someone@example.com", or "apprise:<role>:<digest>" naming one of the role's
    # Apprise URLs in the settings (the URL itself, which holds secrets, is never stored).
    target = models.TextField()
    target_label = models.CharField(max_length=254)
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    dedup_key = models.CharField(max_length=255, unique=True)
    subject = models.CharField(max_length=255)
    body = models.TextField()
    link = models.CharField(max_length=500, blank=True)
    status = models.CharField(
        max_length=10, choices=NoticeStatus.choices, default=NoticeStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=NoticeStatus.values), name="notice_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=NoticeKind.values), name="notice_kind_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="notice_due_idx"),
            models.Index(fields=["-created_at"], name="notice_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.target_label}"


class NoticeMute(models.Model):
    """A kind a staff member chose not to receive by email (role channels still get it)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notice_mutes"
    )
    kind = models.CharField(max_length=32, choices=NoticeKind.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="notice_mute_once"),
        ]
