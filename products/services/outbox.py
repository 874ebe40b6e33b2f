"""The outbox: one Delivery row per enabled endpoint for every access change, written in the
same transaction as the change, so an event exists exactly when its change committed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from accounts.models import Account, RevocationRequest
from products.models import AccessEvent, Delivery, ProductEndpoint


def _iso(value: datetime | None) -> str | None:
    # Timezone-aware UTC, as Standard Webhooks asks ("...Z").
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def access_payload(
    *, account: Account, event_type: str, at: datetime, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The Standard Webhooks body of an access event: what the account's members may do now."""
    data: dict[str, Any] = {
        "account": account.public_id,
        "status": account.access_status,
        "is_active": account.is_active,
        "grants_access": account.grants_access,
        "grace_ends_at": _iso(account.grace_ends_at),
        "version": account.access_version,
        "changed_at": _iso(account.access_changed_at),
    }
    data.update(extra or {})
    return {"type": event_type, "timestamp": _iso(at), "data": data}


def deliveries_create(
    *,
    account: Account,
    event_type: str,
    endpoints: list[ProductEndpoint] | None = None,
    extra: dict[str, Any] | None = None,
    revocation: RevocationRequest | None = None,
) -> list[Delivery]:
    """Write one pending delivery per endpoint (every enabled one unless `endpoints` is given).

    Call inside the transaction that made the change, with `account` as it now stands."""
    if endpoints is None:
        endpoints = list(ProductEndpoint.objects.filter(is_enabled=True))
    if not endpoints:
        return []
    now = timezone.now()
    payload = access_payload(account=account, event_type=event_type, at=now, extra=extra)
    deliveries = [
        Delivery(
            endpoint=endpoint,
            account=account,
            event_type=event_type,
            payload=payload,
            account_version=account.access_version,
            revocation=revocation,
            created_at=now,
            next_attempt_at=now,
        )
        for endpoint in endpoints
    ]
    created = Delivery.objects.bulk_create(deliveries)
    # Delivered from the queue once the change commits (a rolled-back change queues nothing).
    from products.services.delivery import deliveries_kick_on_commit

    deliveries_kick_on_commit()
    return created


__all__ = ["AccessEvent", "access_payload", "deliveries_create"]
