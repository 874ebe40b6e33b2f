"""Helpers for the webhook tests: Stripe-shaped objects, signed bodies, posting, a dead event."""

from __future__ import annotations

import time
from typing import Any

from django.urls import reverse

from reconciliation.models import WebhookStatus
from sandbox.signing import event_payload, stripe_signature_header
from sandbox.stripe_fake import subscription_sample
from tests.factories import WebhookEventFactory

SECRET = "whsec_janitor_test_primary"
OLD_SECRET = "whsec_janitor_test_rotated_out"


def sub_obj(
    id: str, customer: str, status: str = "active", *, legacy: bool = False, **extra: Any
) -> dict[str, Any]:
    """The fake's sample subscription, created a day ago; `extra` overrides its keys."""
    created = int(time.time()) - 86_400
    metadata = extra.pop("metadata", {})
    obj = subscription_sample(
        id,
        customer=customer,
        status=status,
        created=created,
        metadata=metadata,
        legacy_shape=legacy,
    )
    obj.update(extra)
    return obj


def dead_event(event_id: str, subscription: str, customer: str, *, last_error: str):
    """A customer.subscription.created event that failed its five attempts (dead)."""
    return WebhookEventFactory(
        provider_event_id=event_id,
        type="customer.subscription.created",
        status=WebhookStatus.DEAD,
        attempts=5,
        last_error=last_error,
        payload={
            "id": event_id,
            "object": "event",
            "type": "customer.subscription.created",
            "data": {"object": sub_obj(subscription, customer)},
        },
    )


def body_for(type: str, obj: dict[str, Any], *, id: str | None = None, created: int | None = None):
    return event_payload(type, obj, id=id, created=created)


def post_signed(
    client,
    body: bytes,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    header: str | None = None,
):
    signature = header if header is not None else stripe_signature_header(body, secret, timestamp)
    return client.post(
        reverse("stripe_webhook"),
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": signature},
    )


def rejections_reset() -> None:
    """Forget the rejection counters (never cache.clear(): sessions live in the cache too)."""
    from django.core.cache import cache

    from reconciliation.services.webhooks import REJECTION_KEY, REJECTION_KINDS, REJECTION_LAST_KEY

    cache.delete_many(
        [REJECTION_KEY.format(kind=k) for k in REJECTION_KINDS] + [REJECTION_LAST_KEY]
    )
