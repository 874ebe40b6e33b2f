"""Stripe-Signature headers made by hand with hmac (not the SDK), to check the SDK's verdict."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

from sandbox.stripe_fake import event_object


def stripe_signature_header(
    payload: bytes,
    secret: str,
    timestamp: int | None = None,
    extra_signatures: Sequence[str] = (),
) -> str:
    """`t=<ts>,v1=<hmac>`; extra_signatures are further v1 values, as during secret rotation."""
    signed_at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{signed_at}.".encode() + payload, hashlib.sha256)
    items = [f"t={signed_at}", f"v1={digest.hexdigest()}"]
    items += [f"v1={signature}" for signature in extra_signatures]
    return ",".join(items)


def event_payload(
    type: str, obj: dict[str, Any], *, id: str | None = None, created: int | None = None
) -> bytes:
    """The raw body Stripe would POST for an event of `type` about `obj`."""
    return json.dumps(event_object(type, obj, id=id, created=created)).encode()
