"""Staff actions on review-queue flags: each one recorded as a FlagNote, access changes audited."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from accounts.models import AccessComp, AccessStatus, User
from accounts.services.access_status import access_status_change
from janitor.errors import JanitorError
from reconciliation.models import Flag, FlagNote, FlagStatus
from reconciliation.services.access_decisions import (
    GRACE_EXTENSION_MAX_DAYS,
    comp_record,
    grace_period_extend,
)
from reconciliation.services.flags import flag_resolve


class FlagActionError(JanitorError):
    """The action is not possible on this flag; the message is shown to staff."""


def _open_flag_locked(flag: Flag) -> Flag:
    locked = Flag.objects.select_for_update().select_related("account").get(pk=flag.pk)
    if locked.status != FlagStatus.OPEN:
        raise FlagActionError("This flag is already resolved.")
    return locked


def flag_assign(*, flag: Flag, assignee: User, actor_user: User) -> Flag:
    """Give the flag to `assignee` (usually the person clicking "assign to me")."""
    with transaction.atomic():
        locked = _open_flag_locked(flag)
        locked.assignee = assignee
        locked.save(update_fields=["assignee"])
        FlagNote.objects.create(
            flag=locked, author=actor_user, action="assign", body=f"Assigned to {assignee.email}."
        )
    return locked


def flag_note_add(*, flag: Flag, body: str, author: User) -> FlagNote:
    body = body.strip()
    if not body:
        raise FlagActionError("A note cannot be empty.")
    return FlagNote.objects.create(flag=flag, author=author, action="note", body=body)


def flag_grace_extend(*, flag: Flag, days: int, reason: str, actor_user: User) -> Flag:
    """Extend the account's grace period by 1..GRACE_EXTENSION_MAX_DAYS days, with a reason
    (audited)."""
    reason = reason.strip()
    if not reason:
        raise FlagActionError("Say why the grace period is extended.")
    if not 1 <= days <= GRACE_EXTENSION_MAX_DAYS:
        raise FlagActionError(f"Extend by 1 to {GRACE_EXTENSION_MAX_DAYS} days.")
    with transaction.atomic():
        locked = _open_flag_locked(flag)
        if locked.account.access_status != AccessStatus.GRACE_PERIOD:
            raise FlagActionError("Only an account in its grace period can have it extended.")
        try:
            grace_period_extend(
                account=locked.account, days=days, reason=reason, actor_user=actor_user
            )
        except ValueError as exc:
            raise FlagActionError(str(exc)) from exc
        locked.account.refresh_from_db(fields=["access_status", "grace_ends_at", "is_active"])
        FlagNote.objects.create(
            flag=locked,
            author=actor_user,
            action="extend_grace",
            body=f"Grace extended by {days} day(s) to "
            f"{locked.account.grace_ends_at:%Y-%m-%d %H:%M} UTC: {reason}",
        )
    return locked


def flag_comp_record(
    *, flag: Flag, reason: str, expires_at: datetime, actor_user: User
) -> tuple[Flag, AccessComp]:
    """Record a deliberate manual grant for the flag's account until `expires_at`."""
    reason = reason.strip()
    if not reason:
        raise FlagActionError("A comp needs a reason.")
    with transaction.atomic():
        locked = _open_flag_locked(flag)
        try:
            comp = comp_record(
                account=locked.account, reason=reason, expires_at=expires_at, granted_by=actor_user
            )
        except ValueError as exc:
            raise FlagActionError(str(exc)) from exc
        FlagNote.objects.create(
            flag=locked,
            author=actor_user,
            action="comp",
            body=f"Comp recorded until {expires_at:%Y-%m-%d}: {reason}",
        )
    return locked, comp


def flag_resolve_by_staff(
    *, flag: Flag, resolution: str, actor_user: User, restore_access: bool = False
) -> Flag:
    """Resolve with a resolution; for an account in grace, staff may end the grace period too."""
    resolution = resolution.strip()
    if not resolution:
        raise FlagActionError("A resolution is required.")
    with transaction.atomic():
        locked = _open_flag_locked(flag)
        account = locked.account
        if restore_access:
            if account.access_status != AccessStatus.GRACE_PERIOD:
                raise FlagActionError("Only an account in its grace period can be set active here.")
            access_status_change(
                account=account,
                to_status=AccessStatus.ACTIVE,
                actor=actor_user.email,
                actor_user=actor_user,
                reason=f"Grace period ended by staff: {resolution}",
                source=f"flag:{locked.pk}",
            )
        resolved = flag_resolve(
            flag=locked, resolution=resolution, actor=actor_user.email, author=actor_user
        )
    resolved.account = account
    return resolved
