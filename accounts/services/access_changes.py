"""What every change of an account's access leaves behind, in the change's own transaction: the
account's version bumped, a row in the changes feed, and an outbound event per product; and the
feed's retention (its old rows deleted behind a horizon the feed refuses older cursors at)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from accounts.models import AccessChange, AccessFeedHorizon, AccessStatus, Account
from products.models import AccessEvent


def access_event_type(*, from_status: str, to_status: str, actor: str) -> str:
    """The outbound event for a move of the state machine (docs/integration.md)."""
    if to_status == AccessStatus.GRACE_PERIOD:
        if from_status == AccessStatus.GRACE_PERIOD:
            return AccessEvent.GRACE_EXTENDED
        if from_status == AccessStatus.REVOKED_PENDING:
            return AccessEvent.RESTORED  # an abandoned revocation gives the grace back
        return AccessEvent.GRACE_STARTED
    if to_status == AccessStatus.REVOKED_PENDING:
        return AccessEvent.REVOCATION_PENDING
    if to_status == AccessStatus.REVOKED:
        return AccessEvent.REVOKED
    # to active
    if from_status == AccessStatus.GRACE_PERIOD:
        return AccessEvent.GRACE_ENDED
    if from_status == AccessStatus.REVOKED and actor.startswith("system:"):
        return AccessEvent.REACTIVATED
    return AccessEvent.RESTORED


def _txid() -> RawSQL | int:
    """The writing transaction's id, read by the INSERT itself (0 where writers are serialised)."""
    if connection.vendor != "postgresql":
        return 0
    return RawSQL("pg_current_xact_id()::text::bigint", ())


def access_version_next(account: Account) -> None:
    """Set the account's next access version and change time on the instance (not saved)."""
    account.access_version = (account.access_version or 0) + 1
    account.access_changed_at = timezone.now()


def access_changed(
    *,
    account: Account,
    event_type: str,
    extra: dict[str, Any] | None = None,
    version_saved: bool = False,
) -> int:
    """Bump `account`'s access version and record the change for the feed and the products.

    The caller holds the account's row lock inside a transaction and has already written the
    new status. With `version_saved` the caller has also bumped and saved access_version and
    access_changed_at (access_version_next) in that same write. Returns the new version;
    `account` is updated in place."""
    from products.services.outbox import deliveries_create

    if not version_saved:
        access_version_next(account)
        Account.objects.filter(pk=account.pk).update(
            access_version=account.access_version, access_changed_at=account.access_changed_at
        )
    AccessChange.objects.create(
        account=account,
        version=account.access_version,
        at=account.access_changed_at or timezone.now(),
        txid=_txid(),
        event_type=event_type,
    )
    deliveries_create(account=account, event_type=event_type, extra=extra)
    return account.access_version


def access_changes_purge(*, older_than: datetime, batch_size: int) -> int:
    """Delete the feed's changes made before `older_than`, `batch_size` rows a transaction.
    Returns how many were deleted; idempotent.

    Each batch raises the feed's horizon (AccessFeedHorizon) to the highest (txid, id) it
    deletes, in the same transaction, so no reader sees rows gone without the horizon that
    explains it: a product whose cursor is before the horizon is told to resync (410) rather
    than served a page with a hole. Rows below the horizon may stay (a long transaction's
    change made after the cutoff): they are served from the start of the feed, and a cursor
    below the horizon is refused all the same."""
    total = 0
    while True:
        with transaction.atomic():
            rows = list(
                AccessChange.objects.filter(at__lt=older_than)
                .order_by()
                .values_list("txid", "id")[:batch_size]
            )
            if not rows:
                return total
            txid, change_id = max(rows)
            horizon, _ = AccessFeedHorizon.objects.select_for_update().get_or_create(pk=1)
            if (txid, change_id) > (horizon.txid, horizon.change_id):
                horizon.txid, horizon.change_id = txid, change_id
                horizon.purged_at = timezone.now()
                horizon.save()
            deleted, _ = AccessChange.objects.filter(pk__in=[pk for _, pk in rows]).delete()
            total += deleted
