"""The product's accounts and their access: users, sessions, activity, revocations, the audit."""

import re
import secrets
from datetime import datetime, timedelta
from typing import ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone

# The documented alphabet of public ids (README "Bringing your users in"): ASCII letters and
# digits, then also "-", "_" and ".", at most 64 characters. The ids travel in URLs, file names
# and Content-Disposition headers, so nothing that could end a header parameter, a path segment
# or a quoted string (quotes, ";", "/", "\\", spaces, control or non-ASCII characters) is allowed.
PUBLIC_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PUBLIC_ID_RULE = (
    "1 to 64 characters from A-Z, a-z, 0-9, '-', '_' and '.', starting with a letter or digit"
)


def public_id_is_valid(value) -> bool:
    return isinstance(value, str) and PUBLIC_ID_RE.fullmatch(value) is not None


def public_id_validate(value) -> None:
    """Raise ValidationError unless `value` is in the public id alphabet."""
    if not public_id_is_valid(value):
        raise ValidationError(
            f"public_id {value!r} is not allowed: use {PUBLIC_ID_RULE}.", code="invalid_public_id"
        )


def public_id_field_validate(value) -> None:
    """public_id_validate for a model's clean(): the error names the public_id field."""
    try:
        public_id_validate(value)
    except ValidationError as error:
        raise ValidationError({"public_id": error}) from None


def public_id_generate() -> str:
    """A stable, URL-safe id shaped like the product's own (user-aaf21-bb34-cc55)."""
    raw = secrets.token_hex(7)
    return f"user-{raw[:5]}-{raw[5:9]}-{raw[9:13]}"


# Where an erased account's placeholder email lives (.invalid never resolves, RFC 2606).
ERASED_EMAIL_DOMAIN = "erased.invalid"


class AccessStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    GRACE_PERIOD = "grace_period", "Grace period"
    REVOKED_PENDING = "revoked_pending", "Revocation pending"
    REVOKED = "revoked", "Revoked"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, username):
        # Emails are unique case-insensitively, so logins are too. LOWER() = LOWER() uses the
        # unique index on PostgreSQL; iexact would be a LIKE (which SQLite refuses for long,
        # wildcard-heavy input). Nothing longer than an email column can match.
        if not isinstance(username, str) or len(username) > 254:
            raise self.model.DoesNotExist("No account with that email.")
        return self.annotate(email_ci=Lower("email")).get(email_ci=username.lower())

    def create_user(self, email, password=None, **extra):
        if "public_id" in extra:
            public_id_validate(extra["public_id"])
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class Account(models.Model):
    """The billing entity: one Stripe customer, its access status, grace period, flags, comps,
    disputes, revocations and audit trail. The people who sign in are its members (User)."""

    public_id = models.CharField(max_length=64, unique=True, default=public_id_generate)
    name = models.CharField(max_length=200, blank=True)
    # The billing contact's email: the audit links a provider customer to the account by it.
    email = models.EmailField(max_length=254, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # False exactly when revoked (the state machine's table, a database constraint).
    is_active = models.BooleanField(default=True)
    access_status = models.CharField(
        max_length=20, choices=AccessStatus.choices, default=AccessStatus.ACTIVE
    )
    grace_ends_at = models.DateTimeField(null=True, blank=True)
    stripe_customer_id = models.CharField(max_length=255, blank=True, default="")
    # Bumped by every change of what the account's members may do (its access status, grace end,
    # a member disabled or enabled): products beside Janitor drop an event or a cached answer
    # older than the version they hold. Not indexed, so the audit's link writes stay cheap.
    access_version = models.PositiveBigIntegerField(default=0)
    access_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("email"), condition=~Q(email=""), name="account_email_unique_ci"
            ),
            models.UniqueConstraint(
                fields=["stripe_customer_id"],
                condition=~Q(stripe_customer_id=""),
                name="account_stripe_customer_unique",
            ),
            models.CheckConstraint(
                condition=Q(access_status__in=AccessStatus.values),
                name="account_access_status_valid",
            ),
            # The state machine's table: only "revoked" is inactive, and it always is.
            models.CheckConstraint(
                condition=Q(access_status=AccessStatus.REVOKED, is_active=False)
                | (~Q(access_status=AccessStatus.REVOKED) & Q(is_active=True)),
                name="account_is_active_matches_status",
            ),
            models.CheckConstraint(
                condition=~Q(access_status=AccessStatus.GRACE_PERIOD)
                | Q(grace_ends_at__isnull=False),
                name="account_grace_has_end",
            ),
        ]
        indexes = [
            models.Index(fields=["access_status"], name="account_access_status_idx"),
            # The review queue sorts by days of grace left.
            models.Index(fields=["grace_ends_at"], name="account_grace_ends_idx"),
        ]

    def __str__(self) -> str:
        return self.name or self.email or self.public_id

    def clean(self):
        super().clean()
        public_id_field_validate(self.public_id)

    @property
    def is_erased(self) -> bool:
        """Personal data erased on request (reconciliation.services.privacy.account_erase)."""
        return self.email.endswith(f"@{ERASED_EMAIL_DOMAIN}")

    @property
    def grants_access(self) -> bool:
        """Whether the account's members may sign in and use the product (each member must
        also be enabled)."""
        return self.is_active and self.access_status in {
            AccessStatus.ACTIVE,
            AccessStatus.GRACE_PERIOD,
        }


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in: a member of a customer account, or staff (is_staff, role by
    group, no account). `is_active` is the member's own switch (a person who left the team is
    disabled); the account's access status decides for all its members."""

    public_id = models.CharField(max_length=64, unique=True, default=public_id_generate)
    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, null=True, blank=True, related_name="members"
    )
    # Bumped on revocation; folded into the session auth hash so every session dies with it.
    session_version = models.PositiveIntegerField(default=0)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_unique_ci"),
        ]
        permissions = [
            ("view_dashboard", "Can open the staff dashboard"),
            ("request_revocation", "Can request a revocation"),
            ("approve_revocation", "Can approve or reject a revocation"),
            ("restore_access", "Can restore a revoked account"),
            ("view_access_audit", "Can read the access audit"),
            ("export_access_audit", "Can export the access audit"),
            ("reset_two_factor", "Can reset another staff member's two-factor devices"),
            ("erase_customer", "Can erase a customer's personal data on request"),
            ("manage_members", "Can disable and enable an account's members"),
            ("manage_api_tokens", "Can create and revoke API tokens"),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self):
        super().clean()
        # Run by ModelForms (the Django admin) and full_clean(); import_accounts and
        # create_user check the same rule, since bulk_create and save() skip clean().
        public_id_field_validate(self.public_id)

    def get_session_auth_hash(self) -> str:
        # Bumping session_version changes the hash, so Django drops every existing session
        # on its next request, including any the session index never saw.
        from django.utils.crypto import salted_hmac

        return salted_hmac(
            "janitor.accounts.User.get_session_auth_hash",
            f"{self.password}:{self.session_version}",
            algorithm="sha256",
        ).hexdigest()

    @property
    def is_erased(self) -> bool:
        """Personal data erased on request (reconciliation.services.privacy.account_erase)."""
        return self.email.endswith(f"@{ERASED_EMAIL_DOMAIN}")

    def refresh_from_db(self, *args, **kwargs):
        """Re-read the member, and the account it reads its access from when that is loaded
        (a member's access_status must not go stale behind a fresh member row)."""
        super().refresh_from_db(*args, **kwargs)
        if User.account.is_cached(self) and (account := self._account) is not None:
            account.refresh_from_db()

    @property
    def _account(self) -> Account | None:
        """The member's account; None for staff, read without a query when there is none."""
        return self.account if self.account_id else None

    # The account's access, read through the member (staff have no account: always active).
    @property
    def access_status(self) -> str:
        account = self._account
        return account.access_status if account is not None else AccessStatus.ACTIVE

    @property
    def grace_ends_at(self) -> datetime | None:
        account = self._account
        return account.grace_ends_at if account is not None else None

    @property
    def stripe_customer_id(self) -> str:
        account = self._account
        return account.stripe_customer_id if account is not None else ""

    @property
    def can_log_in(self) -> bool:
        """Enabled, and (for a customer) the account grants access."""
        if not self.is_active:
            return False
        account = self._account
        return account is None or account.grants_access

    _staff_role_cache: str

    @property
    def staff_role(self) -> str:
        """The first role group the user belongs to ("" for customers).

        Read once per instance, as Django's permission checks cache theirs on the user: a page
        asks several times (the two-factor policy, the header), each a query otherwise. Read
        the user again after changing their groups (as for permissions)."""
        from accounts.roles import ROLE_NAMES

        if not self.is_staff:
            return ""
        cached = self.__dict__.get("_staff_role_cache")
        if cached is None:
            names = {group.name for group in self.groups.all()}
            cached = self._staff_role_cache = next(
                (role for role in ROLE_NAMES if role in names), ""
            )
        return cached


class SessionRecord(models.Model):
    """The per-user session index on the embedded default (Redis keeps it when configured)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="session_records")
    session_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)


class ActivityKind(models.TextChoices):
    REQUEST = "request", "Request"
    LOGIN = "login", "Login"
    API = "api", "Reported by the product"


class ActivityLog(models.Model):
    """One thing a customer did: proof of usage for chargeback evidence."""

    id = models.BigAutoField(primary_key=True)
    # The member who did it; the account is member.account (the column keeps its old name).
    member = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="activity", db_column="account_id"
    )
    occurred_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16, choices=ActivityKind.choices)
    path = models.CharField(max_length=500, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    # Who reported it ("app", "demo" or an API token's id) and its own id, so retries dedupe.
    source = models.CharField(max_length=64, default="app")
    client_event_id = models.CharField(max_length=128, null=True, blank=True)

    class Meta:
        indexes = [
            # Covering on PostgreSQL: evidence reads the kind and address of a member's window
            # from the index alone (a team's rows lie scattered over the table's pages).
            models.Index(
                fields=["member", "occurred_at"],
                name="activity_account_time_idx",
                include=["kind", "ip_address"],
            )
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "client_event_id"],
                condition=Q(client_event_id__isnull=False),
                name="activity_client_event_unique",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=ActivityKind.values), name="activity_kind_valid"
            ),
        ]


class ApiScope(models.TextChoices):
    ACCOUNTS_WRITE = "accounts:write", "Write accounts and members"
    ACTIVITY_WRITE = "activity:write", "Report activity"
    ACCESS_READ = "access:read", "Read access (and confirm session revocations)"


class ApiToken(models.Model):
    """A bearer token a product uses to call the API within its scopes; only its hash is
    stored."""

    name = models.CharField(max_length=100)
    # ApiScope values. Tokens made before scopes existed could only report activity.
    scopes = models.JSONField(default=list, blank=True)
    # Uses counted in memory and written in batches (accounts.services.tokens), not per request.
    use_count = models.PositiveBigIntegerField(default=0)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise it.")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])


class AccessChange(models.Model):
    """One change of an account's access, in the order of the transactions that wrote them
    (overlapping ones can put one account's versions out of order): the feed products that
    keep a local copy page through (GET /api/v1/access?changed_since=). Written in the same
    transaction as the change. `txid` is the writing transaction's PostgreSQL id (0 on
    SQLite, where writers are serialised): the feed orders by (txid, id) and only serves
    transactions older than every one still running, so a slow commit is never skipped."""

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    version = models.PositiveBigIntegerField()
    at = models.DateTimeField(default=timezone.now)
    txid = models.BigIntegerField(default=0)
    # What changed: an access event type (access.grace_started, access.member_disabled, ...).
    event_type = models.CharField(max_length=64)
    # The account's access as of this version, so the feed serves each change with its own
    # state. Null on changes written before these columns existed: served with the account's
    # current state and version.
    status = models.CharField(max_length=16, null=True, blank=True)
    is_active = models.BooleanField(null=True)
    grace_ends_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The feed's order; the retention purge deletes prefixes of it too.
            models.Index(fields=["txid", "id"], name="accesschange_order_idx"),
        ]


class AccessFeedHorizon(models.Model):
    """How far the retention purge has deleted the changes feed: the highest (txid, id) of an
    AccessChange it removed. One row, absent until the first purge. A cursor before it may have
    missed changes that are gone, so the feed answers 410 to it instead of a silent gap."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    txid = models.BigIntegerField(default=0)
    change_id = models.BigIntegerField(default=0)
    purged_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="accessfeedhorizon_single_row")
        ]


class AccessComp(models.Model):
    """A deliberate manual grant: the audit does not flag it until it expires."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="comps")
    reason = models.TextField()
    expires_at = models.DateTimeField()
    granted_by = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="comps_granted", null=True
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["account", "expires_at"], name="comp_account_expiry_idx")]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="comp_reason_required"),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")), name="comp_expires_after_creation"
            ),
        ]


class RevocationStatus(models.TextChoices):
    PENDING = "pending", "Awaiting approval"
    APPROVED = "approved", "Approved, running"
    FAILED = "failed", "Failed, retryable"
    COMPLETED = "completed", "Completed"
    REJECTED = "rejected", "Rejected"
    ABANDONED = "abandoned", "Abandoned, access restored"


class RevocationRequest(models.Model):
    """A request to revoke an account, approved by an admin who is not the requester."""

    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="revocation_requests"
    )
    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    reference = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(
        max_length=16, choices=RevocationStatus.choices, default=RevocationStatus.PENDING
    )
    decided_by = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)
    sessions_removed = models.PositiveIntegerField(null=True, blank=True)
    steps = models.JSONField(default=dict, blank=True)  # step name -> ISO time it completed
    last_error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    completed_at = models.DateTimeField(null=True, blank=True)
    # The last time the staged run said it was alive (started an attempt, finished a step).
    reported_at = models.DateTimeField(null=True, blank=True)
    # Step 2 is ending the sessions (outside any transaction) since then: an abandon or a retry
    # waits for it (is_purging), up to the longest a task may run.
    purge_started_at = models.DateTimeField(null=True, blank=True)
    # Retries and abandonment: [{"action", "by", "at", ...}], oldest first.
    history = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="revocation_reason_required"),
            models.CheckConstraint(
                condition=Q(status__in=RevocationStatus.values), name="revocation_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=F("requested_by")),
                name="revocation_not_self_approved",
            ),
            # One live request per account: a second one would race the first.
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(status__in=["pending", "approved", "failed"]),
                name="revocation_one_open_per_account",
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="revocation_status_idx")]

    @property
    def is_purging(self) -> bool:
        """Step 2 is ending the sessions right now: started, not recorded, and within the
        longest a task may run (JANITOR_QUEUE_TIMEOUT, after which django-q2 has killed it)."""
        if self.purge_started_at is None:
            return False
        longest = timedelta(seconds=int(settings.Q_CLUSTER.get("timeout", 300)) + 60)
        return timezone.now() - self.purge_started_at < longest

    @property
    def is_stalled(self) -> bool:
        """Approved, and its task has not reported for JANITOR_REVOCATION_STALL_SECONDS: the
        task was lost (a broker can lose one) or its worker died mid-run. Retry or abandon it.
        Not while step 2 is ending the sessions: that can take longer, and it is alive."""
        if self.status != RevocationStatus.APPROVED or self.decided_at is None:
            return False
        if self.is_purging:
            return False
        times = [self.decided_at]
        if self.reported_at is not None:
            times.append(self.reported_at)
        for entry in self.history or []:
            try:
                times.append(datetime.fromisoformat(entry["at"]))
            except (KeyError, TypeError, ValueError):
                continue
        for step in (self.steps or {}).values():
            try:
                times.append(datetime.fromisoformat(step["at"]))
            except (KeyError, TypeError, ValueError):
                continue
        stall = timedelta(seconds=settings.JANITOR_REVOCATION_STALL_SECONDS)
        return timezone.now() - max(times) > stall

    @property
    def status_label(self) -> str:
        return "Stalled: no word from its task" if self.is_stalled else self.get_status_display()


class AuditQuerySet(models.QuerySet):
    """For the append-only audits (AccessAudit, StaffActionAudit): refuses every ORM path that
    rewrites rows. As the base manager's queryset it also covers related managers and
    Model.save() of an existing row (which updates through _update); the database's triggers
    and grants stop the rest (accounts/audit_protection.py)."""

    def update(self, **kwargs):
        raise PermissionError("The audit is append-only: rows cannot be updated.")

    def _update(self, values):
        raise PermissionError("The audit is append-only: rows cannot be updated.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise PermissionError("The audit is append-only: rows cannot be updated.")

    def update_or_create(self, defaults=None, create_defaults=None, **kwargs):
        raise PermissionError("The audit is append-only: rows cannot be updated.")

    def delete(self):
        raise PermissionError("The audit is append-only: rows cannot be deleted.")

    def _raw_delete(self, using):
        raise PermissionError("The audit is append-only: rows cannot be deleted.")


class AccessAudit(models.Model):
    """One change of access status, written in the same transaction as the change. Append-only."""

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="access_audit")
    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=254, help_text='A staff email or "system:<job>".')
    actor_user = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    approver = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    from_status = models.CharField(max_length=20, choices=AccessStatus.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=AccessStatus.choices)
    reason = models.TextField()
    reference = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=200, blank=True, help_text="event:<id>, run:<id>, ...")
    details = models.JSONField(default=dict, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        # Django saves existing rows and follows relations through the base manager: make it
        # the guarded one, or `AccessAudit._base_manager.update(...)` would rewrite history.
        base_manager_name = "objects"
        indexes = [
            models.Index(fields=["account", "at"], name="audit_account_time_idx"),
            models.Index(fields=["at"], name="audit_time_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(actor=""), name="audit_actor_required"),
            models.CheckConstraint(condition=~Q(reason=""), name="audit_reason_required"),
        ]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("The access audit is append-only: rows cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The access audit is append-only: rows cannot be deleted.")


class StaffActionKind(models.TextChoices):
    TWO_FACTOR_RESET = "two_factor_reset", "Two-factor devices reset"
    ACCOUNT_ERASED = "account_erased", "Personal data erased"
    MEMBER_DISABLED = "member_disabled", "Member disabled"
    MEMBER_ENABLED = "member_enabled", "Member enabled"
    API_TOKEN_CREATED = "api_token_created", "API token created"
    API_TOKEN_REVOKED = "api_token_revoked", "API token revoked"


class StaffActionAudit(models.Model):
    """A staff action on a person that changes no access status (a two-factor reset, an
    erasure), or on what a product may do through the API (a token created or revoked: no
    subject, the token in `details`). Append-only like AccessAudit, and it names the account,
    never its details."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=32, choices=StaffActionKind.choices)
    # The person acted on (a staff member, or a customer account's member), and the customer
    # account concerned when there is one (an erasure names the account, member actions both).
    subject = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=254, help_text='A staff email or "system:<job>".')
    actor_user = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    reason = models.TextField()
    details = models.JSONField(default=dict, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        base_manager_name = "objects"
        indexes = [models.Index(fields=["subject", "at"], name="staffaction_subject_time_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=StaffActionKind.values), name="staffaction_kind_valid"
            ),
            models.CheckConstraint(condition=~Q(actor=""), name="staffaction_actor_required"),
            models.CheckConstraint(condition=~Q(reason=""), name="staffaction_reason_required"),
        ]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("The staff action audit is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The staff action audit is append-only.")
