"""Helpers for the webhook tests: Stripe-shaped objects, signed bodies, posting them."""

from __future__ import annotations

import time
from typing import Any

from django.urls import reverse

from tests.fakes.signing import event_payload, stripe_signature_header
from tests.fakes.stripe_fake import subscription_object

SECRET = "whsec_janitor_test_primary"
OLD_SECRET = "whsec_janitor_test_rotated_out"


def sub_obj(
    id: str, customer: str, status: str = "active", *, legacy: bool = False, **extra: Any
) -> dict[str, Any]:
    now = int(time.time())
    obj = subscription_object(
        id=id,
        customer=customer,
        status=status,
        price_id="price_basic",
        amount=1500,
        currency="usd",
        interval="month",
        current_period_end=now + 30 * 86_400,
        cancel_at_period_end=False,
        created=now - 86_400,
        metadata=extra.pop("metadata", {}),
        legacy_shape=legacy,
        ended_at=now,
    )
    obj.update(extra)
    return obj


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
