"""Products beside Janitor: their endpoints, the outbox of access events, session revocations."""

import secrets
from base64 import b64encode
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, ApiToken, RevocationRequest, User


class AccessEvent(models.TextChoices):
    """The events a product endpoint receives (docs/integration.md)."""

    GRACE_STARTED = "access.grace_started", "Grace period started"
    GRACE_EXTENDED = "access.grace_extended", "Grace period extended"
    GRACE_ENDED = "access.grace_ended", "Grace period ended, access kept"
    REVOCATION_PENDING = "access.revocation_pending", "Revocation pending"
    REVOKED = "access.revoked", "Revoked"
    RESTORED = "access.restored", "Restored by staff"
    REACTIVATED = "access.reactivated", "Re-activated by the audit"
    MEMBER_DISABLED = "access.member_disabled", "Member disabled"
    MEMBER_ENABLED = "access.member_enabled", "Member enabled"
    SESSIONS_REVOKE = "access.sessions_revoke", "End every session (confirm when done)"


def endpoint_secret_generate() -> str:
    """A Standard Webhooks secret: whsec_ and 32 random bytes in base64."""
    return "whsec_" + b64encode(secrets.token_bytes(32)).decode("ascii")


def webhook_id_generate() -> str:
    return "msg_" + secrets.token_urlsafe(18)


class ProductEndpoint(models.Model):
    """Where one product receives Janitor's access events, signed with its own secret."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500)
    # Kept in clear: Janitor signs with it (Standard Webhooks uses a shared HMAC secret).
    secret = models.CharField(max_length=100, default=endpoint_secret_generate)
    # The product keeps its own sessions: a staged revocation asks it to end them and waits
    # for its confirmation, made with `token`.
    holds_sessions = models.BooleanField(default=False)
    token = models.ForeignKey(
        ApiToken, on_delete=models.PROTECT, null=True, blank=True, related_name="endpoints"
    )
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(holds_sessions=False) | Q(token__isnull=False),
                name="endpoint_sessions_need_token",
            ),
            # A confirmation made with a token counts for its one endpoint only.
            models.UniqueConstraint(
                fields=["token"], condition=Q(token__isnull=False), name="endpoint_token_once"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    FAILING = "failing", "Failing, retrying"
    DELIVERED = "delivered", "Delivered"
    SUPERSEDED = "superseded", "Superseded by a newer event"
    DEAD = "dead", "Dead: gave up after three days"


OPEN_DELIVERY_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.FAILING)


class Delivery(models.Model):
    """One event for one endpoint: the outbox row, written in the same transaction as the
    access change, delivered from the queue at least once (receivers dedupe on webhook_id)."""

    id = models.BigAutoField(primary_key=True)
    webhook_id = models.CharField(max_length=64, unique=True, default=webhook_id_generate)
    endpoint = models.ForeignKey(ProductEndpoint, on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    event_type = models.CharField(max_length=64, choices=AccessEvent.choices)
    # The Standard Webhooks body: {"type", "timestamp", "data"}.
    payload = models.JSONField()
    account_version = models.PositiveBigIntegerField()
    revocation = models.ForeignKey(
        RevocationRequest, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Set while a worker holds the delivery (claimed, its POST in flight), cleared when the
    # outcome is recorded: a newer event for the same account waits for it, so an endpoint
    # never receives two versions of one account at once (products.services.delivery).
    leased_until = models.DateTimeField(null=True, blank=True)
    # A replay by staff starts a new three-day retry window from this time.
    replayed_at = models.DateTimeField(null=True, blank=True)
    replayed_by = models.CharField(max_length=254, blank=True)
    superseded_by = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="delivery_status_valid"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "failing"]),
                name="delivery_due_idx",
            ),
            models.Index(
                fields=["endpoint", "account", "account_version"], name="delivery_account_idx"
            ),
            models.Index(fields=["status", "created_at"], name="delivery_status_idx"),
        ]


class DeliveryAttempt(models.Model):
    """One POST of a delivery: what the endpoint answered, or why it could not."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_rows")
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.FloatField(default=0)


class SessionRevocation(models.Model):
    """Step 2 of a staged revocation for one product that holds sessions: asked with an
    access.sessions_revoke event, done only when the product confirms."""

    revocation = models.ForeignKey(
        RevocationRequest, on_delete=models.PROTECT, related_name="session_revocations"
    )
    endpoint = models.ForeignKey(ProductEndpoint, on_delete=models.PROTECT, related_name="+")
    delivery = models.ForeignKey(
        Delivery, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    sessions_ended = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["revocation", "endpoint"], name="session_revocation_once"
            )
        ]

    @property
    def deadline(self) -> datetime:
        """When step 2 stops waiting for this product (asked again on a retry: a new deadline)."""
        return self.requested_at + timedelta(seconds=settings.JANITOR_REVOCATION_CONFIRM_SECONDS)

    @property
    def is_waited_for(self) -> bool:
        """Unconfirmed, and the endpoint still holds sessions: the revocation waits for it."""
        return (
            self.confirmed_at is None and self.endpoint.is_enabled and self.endpoint.holds_sessions
        )


class EndpointChangeKind(models.TextChoices):
    CREATED = "created", "Endpoint added"
    CHANGED = "changed", "Settings changed"
    DISABLED = "disabled", "Disabled"
    ENABLED = "enabled", "Enabled"
    SECRET_ROTATED = "secret_rotated", "Signing secret rotated"
    DELIVERY_REPLAYED = "delivery_replayed", "Delivery replayed"


class EndpointChange(models.Model):
    """What staff did to an endpoint or its deliveries, who and when. Append-only; it never
    holds the secret itself."""

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(ProductEndpoint, on_delete=models.PROTECT, related_name="changes")
    kind = models.CharField(max_length=32, choices=EndpointChangeKind.choices)
    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=254, help_text='A staff email or "system:<job>".')
    actor_user = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["endpoint", "at"], name="endpointchange_time_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=EndpointChangeKind.values), name="endpointchange_kind_valid"
            ),
            models.CheckConstraint(condition=~Q(actor=""), name="endpointchange_actor_required"),
        ]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("The endpoint change log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The endpoint change log is append-only.")


class Permissions(models.Model):
    """Holds the dashboard's product permissions (no table rows of its own)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_deliveries", "Can read outbound access events and their attempts"),
            ("replay_deliveries", "Can replay an outbound access event"),
            ("manage_endpoints", "Can add, change, disable product endpoints and rotate secrets"),
        ]
