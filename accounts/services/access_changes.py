"""What every change of an account's access leaves behind, in the change's own transaction: the
account's version bumped, a row in the changes feed, and an outbound event per product; and the
feed's retention (its old rows deleted behind a horizon the feed refuses older cursors at)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import BooleanField
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
        status=account.access_status,
        is_active=account.is_active,
        grace_ends_at=account.grace_ends_at,
    )
    deliveries_create(account=account, event_type=event_type, extra=extra)
    return account.access_version


def access_changes_purge(*, older_than: datetime, batch_size: int) -> int:
    """Delete the feed's changes made before `older_than`, a prefix of the feed's (txid, id)
    order at a time, `batch_size` changes a transaction. Returns how many were deleted;
    idempotent.

    Each batch takes the first `batch_size` changes older than `older_than` in feed order and
    deletes every change up to the last of them, so nothing is ever kept below the horizon
    (AccessFeedHorizon, raised in the same transaction): a cursor before it is told to resync
    (410) rather than served a page with a hole, and a feed read without a cursor starts there.
    On PostgreSQL only transactions that have ended are purged (txid below the oldest one still
    running, as the feed reads them): a change a long transaction commits later can never land
    below the horizon. A change made after `older_than` but ordered before an aged one (a
    long transaction's) goes with the prefix: products resyncing read it in the account's
    current state."""
    from accounts.selectors.access_api import _feed_horizon

    table = AccessChange._meta.db_table
    total = 0
    while True:
        with transaction.atomic():
            aged = AccessChange.objects.filter(at__lt=older_than)
            if connection.vendor == "postgresql":
                aged = aged.filter(txid__lt=_feed_horizon())
            rows = list(aged.order_by("txid", "id").values_list("txid", "id")[:batch_size])
            if not rows:
                return total
            txid, change_id = rows[-1]
            horizon, _ = AccessFeedHorizon.objects.select_for_update().get_or_create(pk=1)
            if (txid, change_id) > (horizon.txid, horizon.change_id):
                horizon.txid, horizon.change_id = txid, change_id
                horizon.purged_at = timezone.now()
                horizon.save()
            deleted, _ = AccessChange.objects.filter(
                RawSQL(
                    f'("{table}"."txid", "{table}"."id") <= (%s, %s)',
                    [txid, change_id],
                    output_field=BooleanField(),
                )
            ).delete()
            total += deleted
