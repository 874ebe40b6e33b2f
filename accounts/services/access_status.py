"""Writes to accounts: every access-status change goes through here, with its audit row."""

import time
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import AccessAudit, AccessStatus, Account, User
from accounts.services.access_changes import (
    access_changed,
    access_event_type,
    access_version_next,
)
from janitor.errors import ErrorKind, JanitorError

# The state machine of docs/design.md: which moves exist at all. Who may make them is the callers'
# business (automation never reaches revoked_pending/revoked: see AUTOMATION_FORBIDDEN).
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    AccessStatus.ACTIVE: {AccessStatus.GRACE_PERIOD, AccessStatus.REVOKED_PENDING},
    AccessStatus.GRACE_PERIOD: {
        AccessStatus.ACTIVE,
        AccessStatus.GRACE_PERIOD,  # grace extended: same status, new end, still audited
        AccessStatus.REVOKED_PENDING,
    },
    AccessStatus.REVOKED_PENDING: {
        AccessStatus.REVOKED,
        AccessStatus.REVOKED_PENDING,
        # An abandoned revocation gives back the access the account had (staff only).
        AccessStatus.ACTIVE,
        AccessStatus.GRACE_PERIOD,
    },
    AccessStatus.REVOKED: {AccessStatus.ACTIVE},
}
AUTOMATION_FORBIDDEN = {AccessStatus.REVOKED_PENDING, AccessStatus.REVOKED}


class AccessTransitionError(JanitorError):
    """A change the state machine does not allow."""

    kind = ErrorKind.CONFLICT


def system_actor(job: str) -> str:
    return f"system:{job}"


@transaction.atomic
def access_status_change(
    *,
    account: Account,
    to_status: str,
    actor: str,
    reason: str,
    actor_user: User | None = None,
    approver: User | None = None,
    reference: str = "",
    source: str = "",
    grace_ends_at: datetime | None = None,
    details: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> AccessAudit:
    """Move one account to `to_status` and write its audit row, in one transaction.

    The account row is locked and re-read first, so two concurrent changes serialise and the
    audit's from_status is the real one. `timings`, when given, receives the milliseconds of
    the status write (lock, re-read, update) and of the audit insert, each on its own.
    """
    started = time.perf_counter()
    if not reason.strip():
        raise AccessTransitionError("A reason is required for every access change.")
    if actor.startswith("system:") and to_status in AUTOMATION_FORBIDDEN:
        raise AccessTransitionError("Automation never revokes: a staff approval is required.")
    locked = Account.objects.select_for_update().get(pk=account.pk)
    from_status = locked.access_status
    if (
        actor.startswith("system:")
        and from_status in AUTOMATION_FORBIDDEN
        and (to_status != AccessStatus.ACTIVE or from_status != AccessStatus.REVOKED)
    ):
        # Automation may re-activate an account it did not revoke (docs/design.md), nothing else
        # out of a revocation.
        raise AccessTransitionError("Automation never moves an account out of a revocation.")
    if to_status not in ALLOWED_TRANSITIONS.get(from_status, set()):
        raise AccessTransitionError(
            f"{locked.public_id}: {from_status} -> {to_status} is not an allowed access change."
        )
    if to_status == AccessStatus.GRACE_PERIOD and grace_ends_at is None:
        raise AccessTransitionError("A grace period needs grace_ends_at.")

    locked.access_status = to_status
    locked.is_active = to_status != AccessStatus.REVOKED
    locked.grace_ends_at = grace_ends_at if to_status == AccessStatus.GRACE_PERIOD else None
    access_version_next(locked)
    locked.save(
        update_fields=[
            "access_status",
            "is_active",
            "grace_ends_at",
            "access_version",
            "access_changed_at",
        ]
    )
    access_changed(
        account=locked,
        event_type=access_event_type(from_status=from_status, to_status=to_status, actor=actor),
        version_saved=True,
    )
    # Keep the caller's instance true to the database.
    account.access_status, account.is_active = locked.access_status, locked.is_active
    account.grace_ends_at = locked.grace_ends_at
    account.access_version, account.access_changed_at = (
        locked.access_version,
        locked.access_changed_at,
    )
    if timings is not None:
        timings["status_ms"] = round((time.perf_counter() - started) * 1000, 2)
        started = time.perf_counter()

    audit_details = dict(details or {})
    if grace_ends_at is not None and to_status == AccessStatus.GRACE_PERIOD:
        audit_details.setdefault("grace_ends_at", grace_ends_at.isoformat())
    audit = AccessAudit.objects.create(
        account=locked,
        at=timezone.now(),
        actor=actor,
        actor_user=actor_user,
        approver=approver,
        from_status=from_status,
        to_status=to_status,
        reason=reason.strip(),
        reference=reference.strip(),
        source=source,
        details=audit_details,
    )
    if timings is not None:
        timings["audit_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return audit


def last_revoked_by_staff(*, account_ids: list[int]) -> set[int]:
    """Of these accounts, the ones whose latest move to "revoked" was made by a person.

    Automation must never undo those (docs/design.md); one query whatever the batch size.
    """
    rows = (
        AccessAudit.objects.filter(account_id__in=account_ids, to_status=AccessStatus.REVOKED)
        .order_by("account_id", "-at", "-id")
        .values_list("account_id", "actor")
    )
    latest: dict[int, str] = {}
    for account_id, actor in rows:
        latest.setdefault(account_id, actor)
    return {account_id for account_id, actor in latest.items() if not actor.startswith("system:")}
