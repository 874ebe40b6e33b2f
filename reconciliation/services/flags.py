"""Opening and resolving review-queue flags: one open flag per (account, kind)."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account, User
from reconciliation.models import Flag, FlagNote, FlagStatus, ReconciliationRun, WebhookEvent


def flag_open(
    *,
    account: Account,
    kind: str,
    reason: str,
    opened_by: str,
    run: ReconciliationRun | None = None,
    event: WebhookEvent | None = None,
) -> tuple[Flag, bool]:
    """Open a flag, or return the one already open for (account, kind). Idempotent.

    Returns (flag, created). The partial unique index settles a race between two writers.
    """
    existing = Flag.objects.filter(account=account, kind=kind, status=FlagStatus.OPEN).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            flag = Flag.objects.create(
                account=account,
                kind=kind,
                reason=reason,
                opened_by=opened_by,
                opened_by_run=run,
                opened_by_event=event,
                opened_at=timezone.now(),
            )
    except IntegrityError:
        return Flag.objects.get(account=account, kind=kind, status=FlagStatus.OPEN), False
    return flag, True


def flag_resolve(*, flag: Flag, resolution: str, actor: str, author: User | None = None) -> Flag:
    """Close a flag with its resolution; a no-op on a flag already resolved."""
    if not resolution.strip():
        raise ValueError("A resolution is required to resolve a flag.")
    with transaction.atomic():
        locked = Flag.objects.select_for_update().get(pk=flag.pk)
        if locked.status == FlagStatus.RESOLVED:
            return locked
        locked.status = FlagStatus.RESOLVED
        locked.resolution = resolution.strip()
        locked.resolved_at = timezone.now()
        locked.resolved_by = actor
        locked.save(update_fields=["status", "resolution", "resolved_at", "resolved_by"])
        if author is not None:
            FlagNote.objects.create(flag=locked, author=author, action="resolve", body=resolution)
    return locked


def flags_resolve_for_account(
    *, account: Account, kinds: list[str], resolution: str, actor: str
) -> int:
    """Resolve the account's open flags of these kinds (e.g. payment recovered); returns a count."""
    return Flag.objects.filter(account=account, kind__in=kinds, status=FlagStatus.OPEN).update(
        status=FlagStatus.RESOLVED,
        resolution=resolution,
        resolved_at=timezone.now(),
        resolved_by=actor,
    )


def flags_resolve_revoked(*, account: Account, resolution: str, actor: str, author: User) -> int:
    """Resolve every open flag of an account whose revocation completed, each recorded like a
    resolution by hand (a note by the deciding Admin). Returns how many were open."""
    count = 0
    for flag in Flag.objects.filter(account=account, status=FlagStatus.OPEN):
        flag_resolve(flag=flag, resolution=resolution, actor=actor, author=author)
        count += 1
    return count
