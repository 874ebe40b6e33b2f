"""Asking the products that hold sessions to end an account's sessions (step 2 of a staged
revocation): one SessionRevocation row and one access.sessions_revoke delivery per endpoint,
written in the same transaction, so a product is asked exactly when its row says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.urls import reverse

from accounts.models import Account, RevocationRequest, User
from products.models import (
    OPEN_DELIVERY_STATUSES,
    AccessEvent,
    Delivery,
    ProductEndpoint,
    SessionRevocation,
)
from products.services.delivery import deliveries_kick_on_commit
from products.services.outbox import deliveries_create


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def session_endpoints_list() -> list[ProductEndpoint]:
    """The endpoints a staged revocation asks: enabled, and declared to hold sessions."""
    return list(
        ProductEndpoint.objects.filter(is_enabled=True, holds_sessions=True).order_by("name")
    )


def session_revocation_rows(*, revocation: RevocationRequest) -> list[SessionRevocation]:
    """Every product asked for this revocation, by name."""
    return list(
        SessionRevocation.objects.filter(revocation=revocation)
        .select_related("endpoint", "delivery")
        .order_by("endpoint__name", "pk")
    )


def session_revocation_confirm_url(*, revocation_id: int) -> str:
    return settings.JANITOR_PUBLIC_URL + reverse("revocation_confirm_api", args=[revocation_id])


def _event_extra(*, revocation: RevocationRequest, now: datetime) -> dict[str, Any]:
    """The data an access.sessions_revoke event carries beside the account's access."""
    members = list(
        User.objects.filter(account_id=revocation.account_id)
        .order_by("pk")
        .values("public_id", "email")
    )
    deadline = now + timedelta(seconds=settings.JANITOR_REVOCATION_CONFIRM_SECONDS)
    return {
        "revocation": revocation.pk,
        "confirm_url": session_revocation_confirm_url(revocation_id=revocation.pk),
        "members": members,
        "deadline": _iso(deadline),
    }


def _ask(
    *, revocation: RevocationRequest, endpoints: list[ProductEndpoint], now: datetime
) -> list[Delivery]:
    # The account as it now stands (step 1 moved it to revoked_pending and bumped its version).
    account = Account.objects.get(pk=revocation.account_id)
    return deliveries_create(
        account=account,
        event_type=AccessEvent.SESSIONS_REVOKE,
        endpoints=endpoints,
        extra=_event_extra(revocation=revocation, now=now),
        revocation=revocation,
    )


def session_revocations_request(
    *, revocation: RevocationRequest, now: datetime
) -> list[SessionRevocation]:
    """Ask every enabled session-holding endpoint not asked yet for this revocation; return
    all its rows (asked before or now). Idempotent: a retried step asks nobody twice.

    Call inside the transaction that holds the revocation's row lock: the rows and their
    deliveries commit together, or neither does."""
    rows = session_revocation_rows(revocation=revocation)
    asked = {row.endpoint_id for row in rows}
    new = [endpoint for endpoint in session_endpoints_list() if endpoint.pk not in asked]
    if not new:
        return rows
    deliveries = _ask(revocation=revocation, endpoints=new, now=now)
    by_endpoint = {delivery.endpoint_id: delivery for delivery in deliveries}
    SessionRevocation.objects.bulk_create(
        [
            SessionRevocation(
                revocation=revocation,
                endpoint=endpoint,
                delivery=by_endpoint[endpoint.pk],
                requested_at=now,
            )
            for endpoint in new
        ]
    )
    return session_revocation_rows(revocation=revocation)


def session_revocations_reask(*, revocation: RevocationRequest, now: datetime) -> list[str]:
    """On a retry: ask again every product that has not confirmed, with a new deadline.

    A delivery that is still being retried is sent again now; one that gave up (dead), was
    superseded, or was received without a confirmation following is replaced by a new event.
    Returns the names of the products asked again. Call inside the retry's transaction."""
    waiting = [
        row
        for row in SessionRevocation.objects.select_for_update(of=("self",))
        .filter(revocation=revocation, confirmed_at__isnull=True)
        .filter(Q(endpoint__is_enabled=True) & Q(endpoint__holds_sessions=True))
        .select_related("endpoint", "delivery")
        .order_by("endpoint__name", "pk")
    ]
    if not waiting:
        return []
    still_trying = [
        row
        for row in waiting
        if row.delivery is not None and row.delivery.status in OPEN_DELIVERY_STATUSES
    ]
    if still_trying:
        # Sent again now, unless a worker holds it this moment (its lease): that send is the
        # retry, and a second POST of the same webhook-id would only be deduped by the product.
        # It carries the new deadline: a product that honours data.deadline would otherwise
        # read the first one, already past, and might not end the sessions at all.
        deadline = _iso(now + timedelta(seconds=settings.JANITOR_REVOCATION_CONFIRM_SECONDS))
        resend = list(
            Delivery.objects.select_for_update()
            .filter(
                pk__in=[row.delivery_id for row in still_trying],
                status__in=OPEN_DELIVERY_STATUSES,
            )
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now))
        )
        for delivery in resend:
            delivery.payload = {
                **delivery.payload,
                "data": {**delivery.payload["data"], "deadline": deadline},
            }
            delivery.next_attempt_at = now
        Delivery.objects.bulk_update(resend, ["payload", "next_attempt_at"])
        deliveries_kick_on_commit()
    replace = [row for row in waiting if row not in still_trying]
    if replace:
        deliveries = _ask(
            revocation=revocation, endpoints=[row.endpoint for row in replace], now=now
        )
        by_endpoint = {delivery.endpoint_id: delivery for delivery in deliveries}
        for row in replace:
            row.delivery = by_endpoint[row.endpoint_id]
    for row in waiting:
        row.requested_at = now
    SessionRevocation.objects.bulk_update(waiting, ["requested_at", "delivery"])
    return [row.endpoint.name for row in waiting]


def session_revocation_summary(row: SessionRevocation) -> dict[str, Any]:
    """What the step's details and the final audit row say about one product."""
    return {
        "product": row.endpoint.name,
        "asked_at": row.requested_at.isoformat(),
        "confirmed_at": row.confirmed_at.isoformat() if row.confirmed_at else None,
        "sessions_ended": row.sessions_ended,
        "delivery": row.delivery.webhook_id if row.delivery else None,
    }
