"""The provider's view turned into access: one decision function, one way to apply its outcome."""

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from accounts.models import AccessAudit, AccessComp, AccessStatus, Account, User
from accounts.services.access_status import access_status_change, last_revoked_by_staff
from reconciliation.models import (
    FlagKind,
    Outcome,
    ReconciliationRun,
    Subscription,
    SubscriptionStatus,
    WebhookEvent,
)
from reconciliation.services.flags import flag_open, flags_resolve_for_account

# The one limit on a grace extension: services, forms and the page's input read it from here.
GRACE_EXTENSION_MAX_DAYS = 30


def access_decide(
    *,
    access_status: str,
    grace_ends_at: datetime | None,
    sub_statuses: Collection[str],
    has_active_comp: bool,
    revoked_by_staff: bool,
    now: datetime,
) -> str:
    """The access rules of docs/design.md for one account, as a pure function of what is known
    about it."""
    granting = any(status in settings.JANITOR_ACCESS_STATUSES for status in sub_statuses)
    past_due = SubscriptionStatus.PAST_DUE in sub_statuses

    if access_status == AccessStatus.REVOKED:
        if not granting:
            return Outcome.IN_SYNC
        return Outcome.FLAG_MISMATCH if revoked_by_staff else Outcome.REACTIVATE
    if access_status == AccessStatus.REVOKED_PENDING:
        # A staff revocation is under way: never undo it, only make someone look.
        return Outcome.FLAG_MISMATCH if granting else Outcome.IN_SYNC
    if access_status == AccessStatus.GRACE_PERIOD:
        if granting:
            return Outcome.END_GRACE
        if has_active_comp:
            # A comp is staff's deliberate grant: the audit stops flagging the account (the
            # grace period stands; staff end it when they resolve the flag).
            return Outcome.IN_SYNC
        if grace_ends_at is not None and grace_ends_at <= now:
            return Outcome.FLAG_GRACE_EXPIRED
        return Outcome.IN_SYNC
    # active
    if granting:
        return Outcome.IN_SYNC
    if has_active_comp:
        return Outcome.IN_SYNC
    if not sub_statuses:
        return Outcome.FLAG_MANUAL_GRANT
    if past_due:
        return Outcome.PAYMENT_FAILED
    return Outcome.START_GRACE


# Outcomes that change an account's access status (what a reconciliation run's safety brake counts).
STATUS_CHANGING = frozenset(
    {Outcome.START_GRACE, Outcome.PAYMENT_FAILED, Outcome.END_GRACE, Outcome.REACTIVATE}
)

# Keyed by the outcome's value (Outcome is a str enum: its members are those strings).
_FLAG_FOR_OUTCOME: dict[str, FlagKind] = {
    Outcome.START_GRACE: FlagKind.MISSING_SUBSCRIPTION,
    Outcome.PAYMENT_FAILED: FlagKind.PAYMENT_FAILED,
    Outcome.REACTIVATE: FlagKind.REACTIVATED,
    Outcome.FLAG_MISMATCH: FlagKind.PROVIDER_MISMATCH,
    Outcome.FLAG_MANUAL_GRANT: FlagKind.MANUAL_GRANT,
    Outcome.FLAG_GRACE_EXPIRED: FlagKind.GRACE_EXPIRED,
}

_FLAG_REASON: dict[str, str] = {
    Outcome.START_GRACE: "No access-granting subscription at the provider.",
    Outcome.PAYMENT_FAILED: "The provider reports a failed payment (past_due).",
    Outcome.REACTIVATE: "Inactive in the app but valid at the provider: re-activated. Why did they "
    "drift?",
    Outcome.FLAG_MISMATCH: "Revoked in Janitor but the provider shows a valid subscription.",
    Outcome.FLAG_MANUAL_GRANT: "Active in the app, no subscription at the provider, no comp.",
    Outcome.FLAG_GRACE_EXPIRED: "The grace period ended and the provider still grants nothing.",
}


def _grace_end(now: datetime) -> datetime:
    return now + timedelta(days=settings.JANITOR_GRACE_DAYS)


def customer_notify_payment_issue(*, account: Account) -> None:
    """Tell the customer (queued after commit, recorded, retried; never for a rolled-back
    change)."""
    from janitor.services.notify import grace_started

    grace_started(account=account)


@transaction.atomic
def outcome_apply(
    *,
    account: Account,
    outcome: str,
    actor: str,
    source: str,
    run: ReconciliationRun | None = None,
    event: WebhookEvent | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Carry out one outcome of access_decide. Re-applying an outcome already applied is a no-op."""
    if outcome == Outcome.IN_SYNC:
        return
    now = timezone.now()
    current = Account.objects.select_for_update().only("access_status").get(pk=account.pk)
    if outcome in {Outcome.START_GRACE, Outcome.PAYMENT_FAILED}:
        if current.access_status == AccessStatus.ACTIVE:
            access_status_change(
                account=account,
                to_status=AccessStatus.GRACE_PERIOD,
                actor=actor,
                reason=_FLAG_REASON[outcome],
                source=source,
                grace_ends_at=_grace_end(now),
                details=detail,
            )
            customer_notify_payment_issue(account=account)
    elif outcome == Outcome.END_GRACE:
        if current.access_status == AccessStatus.GRACE_PERIOD:
            access_status_change(
                account=account,
                to_status=AccessStatus.ACTIVE,
                actor=actor,
                reason="The provider shows a valid subscription again.",
                source=source,
                details=detail,
            )
        flags_resolve_for_account(
            account=account,
            kinds=[
                FlagKind.MISSING_SUBSCRIPTION,
                FlagKind.PAYMENT_FAILED,
                FlagKind.GRACE_EXPIRED,
            ],
            resolution="Resolved automatically: the provider shows a valid subscription again.",
            actor=actor,
        )
        return
    elif outcome == Outcome.REACTIVATE:
        if current.access_status == AccessStatus.REVOKED:
            access_status_change(
                account=account,
                to_status=AccessStatus.ACTIVE,
                actor=actor,
                reason="Inactive in the app but the provider shows a valid subscription.",
                source=source,
                details=detail,
            )
    flag_open(
        account=account,
        kind=_FLAG_FOR_OUTCOME[outcome],
        reason=_FLAG_REASON[outcome],
        opened_by=source or actor,
        run=run,
        event=event,
    )


def active_comp_account_ids(*, account_ids: Iterable[int], now: datetime | None = None) -> set[int]:
    return set(
        AccessComp.objects.filter(
            account_id__in=list(account_ids), expires_at__gt=now or timezone.now()
        ).values_list("account_id", flat=True)
    )


def _mirror_statuses_for(account: Account) -> list[str]:
    """Statuses of the account's subscriptions in the mirror: linked to it, or its customer's."""
    linked = Q(account_id=account.pk)
    if account.stripe_customer_id:
        linked |= Q(customer_id=account.stripe_customer_id)
    return list(Subscription.objects.filter(linked).values_list("status", flat=True))


def _staff_change_since(*, account_id: int, since: datetime) -> AccessAudit | None:
    """The latest access change a person made to this account after `since`, if any."""
    return (
        AccessAudit.objects.filter(account_id=account_id, at__gt=since)
        .exclude(actor__startswith="system:")
        .order_by("-at", "-id")
        .first()
    )


def _why_no_longer(*, planned: str, now_outcome: str, sub_statuses: list[str], comp: bool) -> str:
    granting = any(status in settings.JANITOR_ACCESS_STATUSES for status in sub_statuses)
    if planned in GRACE_OR_FLAG_FOR_NO_ACCESS and granting:
        return "resubscribed since the run"
    if comp and planned in GRACE_OR_FLAG_FOR_NO_ACCESS:
        return "a comp was recorded since the run"
    return f"the provider's state changed since the run (now: {Outcome(now_outcome).label})"


# Outcomes that say "the provider grants nothing": a subscription since makes them wrong.
GRACE_OR_FLAG_FOR_NO_ACCESS = frozenset(
    {
        Outcome.START_GRACE,
        Outcome.PAYMENT_FAILED,
        Outcome.FLAG_MANUAL_GRANT,
        Outcome.FLAG_GRACE_EXPIRED,
    }
)


@transaction.atomic
def access_outcome_apply_checked(
    *,
    account: Account,
    actor: str,
    source: str,
    planned: str | None = None,
    planned_status: str | None = None,
    decided_at: datetime | None = None,
    run: ReconciliationRun | None = None,
    event: WebhookEvent | None = None,
    detail: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """The one way automation changes access: decide again under the account's row lock from
    its current state, its latest staff change and the mirror, and apply only what is right now.

    `planned` is an outcome decided earlier (a run's saved outcome, decided at `decided_at` for
    an account then in `planned_status`); it is applied only if a person has not changed the
    account since and deciding now gives the same outcome. Without a plan (webhooks, the
    catch-up) the decision is simply taken now. Returns (outcome, skip reason or "").
    """
    now = timezone.now()
    locked = Account.objects.select_for_update().get(pk=account.pk)
    if planned is not None:
        if decided_at is not None:
            staff = _staff_change_since(account_id=locked.pk, since=decided_at)
            if staff is not None:
                if staff.to_status == AccessStatus.REVOKED:
                    return planned, "revoked by staff since the run"
                return planned, (
                    f"changed by staff since the run ({staff.from_status or 'new'} → "
                    f"{staff.to_status}, {staff.actor})"
                )
        if planned_status is not None and locked.access_status != planned_status:
            return planned, (
                f"status changed since the run ({planned_status} → {locked.access_status})"
            )
    sub_statuses = _mirror_statuses_for(locked)
    comp = bool(active_comp_account_ids(account_ids=[locked.pk], now=now))
    outcome = access_decide(
        access_status=locked.access_status,
        grace_ends_at=locked.grace_ends_at,
        sub_statuses=sub_statuses,
        has_active_comp=comp,
        revoked_by_staff=bool(last_revoked_by_staff(account_ids=[locked.pk])),
        now=now,
    )
    if planned is not None and outcome != planned:
        return planned, _why_no_longer(
            planned=planned, now_outcome=outcome, sub_statuses=sub_statuses, comp=comp
        )
    outcome_apply(
        account=locked,
        outcome=outcome,
        actor=actor,
        source=source,
        run=run,
        event=event,
        detail=detail,
    )
    account.access_status, account.is_active = locked.access_status, locked.is_active
    account.grace_ends_at = locked.grace_ends_at
    return outcome, ""


def account_access_sync(
    *,
    account: Account,
    actor: str,
    source: str,
    run: ReconciliationRun | None = None,
    event: WebhookEvent | None = None,
) -> str:
    """Decide now and apply for one account from its mirrored subscriptions. Returns the outcome."""
    outcome, _ = access_outcome_apply_checked(
        account=account, actor=actor, source=source, run=run, event=event
    )
    account.refresh_from_db(fields=["access_status", "is_active", "grace_ends_at"])
    return outcome


def grace_period_extend(
    *, account: Account, days: int, reason: str, actor_user: User
) -> AccessAudit:
    """Push an account's grace end out by 1..GRACE_EXTENSION_MAX_DAYS days (from now or the
    current end, the later)."""
    if not 1 <= days <= GRACE_EXTENSION_MAX_DAYS:
        raise ValueError(f"Extend grace by 1 to {GRACE_EXTENSION_MAX_DAYS} days.")
    if not reason.strip():
        raise ValueError("A reason is required to extend a grace period.")
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        if locked.access_status != AccessStatus.GRACE_PERIOD:
            raise ValueError("Only an account in its grace period can have it extended.")
        start = max(locked.grace_ends_at or timezone.now(), timezone.now())
        return access_status_change(
            account=account,
            to_status=AccessStatus.GRACE_PERIOD,
            actor=actor_user.email,
            actor_user=actor_user,
            reason=f"Grace extended by {days} day(s): {reason.strip()}",
            grace_ends_at=start + timedelta(days=days),
            details={"extended_days": days},
        )


def comp_record(
    *, account: Account, reason: str, expires_at: datetime, granted_by: User
) -> AccessComp:
    """Record a deliberate manual grant so reconciliation stops flagging it until it expires."""
    if not reason.strip():
        raise ValueError("A reason is required to record a comp.")
    now = timezone.now()
    if expires_at <= now:
        raise ValueError("A comp must expire in the future.")
    if expires_at > now + timedelta(days=366):
        raise ValueError("A comp can last at most a year; record a new one when it ends.")
    return AccessComp.objects.create(
        account=account,
        reason=reason.strip(),
        expires_at=expires_at,
        granted_by=granted_by,
        created_at=now,
    )


def seats_enabled_members(*, account_ids: list[int]) -> dict[int, int]:
    """Enabled members per account, for the accounts given (one grouped query)."""
    if not account_ids:
        return {}
    rows = (
        User.objects.filter(account_id__in=account_ids, is_active=True)
        .values("account_id")
        .annotate(n=Count("pk"))
        .values_list("account_id", "n")
    )
    return dict(rows)


def seats_paid(*, account: Account) -> int | None:
    """Seats the account's access-granting per-seat subscriptions pay for (None: no per-seat
    subscription), from the mirror: linked to it, or its customer's."""
    linked = Q(account_id=account.pk)
    if account.stripe_customer_id:
        linked |= Q(customer_id=account.stripe_customer_id)
    quantities = [
        quantity
        for quantity in Subscription.objects.filter(
            linked,
            status__in=settings.JANITOR_ACCESS_STATUSES,
            seat_quantity__isnull=False,
        ).values_list("seat_quantity", flat=True)
        if quantity is not None  # none is: the filter says so, the column's type does not
    ]
    return sum(quantities) if quantities else None


SEATS_NAMED = 10


@transaction.atomic
def seats_flag_apply_checked(
    *, account: Account, actor: str, source: str, run: ReconciliationRun | None = None
) -> str:
    """Open the seats_exceeded flag a run decided on, after counting again under the account's
    lock: still more enabled members than seats paid, the account still has access and no comp.
    Never changes access. Returns a skip reason, or "" when the flag is open (new or not)."""
    locked = Account.objects.select_for_update().get(pk=account.pk)
    if locked.access_status not in {AccessStatus.ACTIVE, AccessStatus.GRACE_PERIOD}:
        return f"the account is {locked.get_access_status_display().lower()} now"
    if active_comp_account_ids(account_ids=[locked.pk]):
        return "a comp was recorded since the run"
    seats = seats_paid(account=locked)
    if seats is None:
        return "no per-seat subscription any more"
    enabled = list(
        User.objects.filter(account=locked, is_active=True)
        .order_by("email")
        .values_list("email", flat=True)
    )
    if len(enabled) <= seats:
        return f"{len(enabled)} enabled members for {seats} seats now"
    named = ", ".join(enabled[:SEATS_NAMED]) + (
        f" and {len(enabled) - SEATS_NAMED} more" if len(enabled) > SEATS_NAMED else ""
    )
    flag_open(
        account=locked,
        kind=FlagKind.SEATS_EXCEEDED,
        reason=(
            f"{len(enabled)} enabled members for {seats} paid seats ({len(enabled) - seats} "
            f"over). Members: {named}. Record a comp, disable members, or note the sale."
        ),
        opened_by=actor,
        run=run,
    )
    return ""
