"""Product endpoints as Admins manage them: create, change, disable or enable, rotate the
signing secret. Each change is recorded (EndpointChange) in its own transaction."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import ApiScope, ApiToken, User
from janitor.errors import ErrorKind, JanitorError
from products.models import (
    EndpointChange,
    EndpointChangeKind,
    ProductEndpoint,
    endpoint_secret_generate,
)

logger = logging.getLogger(__name__)


class EndpointError(JanitorError):
    """An endpoint change the rules refuse; the message is fit to show to staff."""


class EndpointConflict(EndpointError):
    kind = ErrorKind.CONFLICT


def endpoint_change_record(
    *,
    endpoint: ProductEndpoint,
    kind: str,
    actor: str,
    actor_user: User | None = None,
    details: dict[str, Any] | None = None,
) -> EndpointChange:
    return EndpointChange.objects.create(
        endpoint=endpoint, kind=kind, actor=actor, actor_user=actor_user, details=details or {}
    )


def _settings(endpoint: ProductEndpoint) -> dict[str, Any]:
    return {
        "name": endpoint.name,
        "url": endpoint.url,
        "holds_sessions": endpoint.holds_sessions,
        "token": endpoint.token_id,
    }


def secret_fingerprint(secret: str) -> str:
    """A short, non-reversible name for a signing secret (the change log keeps it forever)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def endpoint_token_check(
    *, token: ApiToken | None, holds_sessions: bool, endpoint: ProductEndpoint | None = None
) -> None:
    """A product that holds sessions confirms revocations with a live access:read token of its
    own: a token two endpoints shared would confirm for both (one product's confirmation would
    say the other's sessions were gone too)."""
    if token is None:
        if holds_sessions:
            raise EndpointError(
                "A product that holds sessions needs a token (with access:read) to confirm "
                "that it ended them."
            )
        return
    if token.revoked_at is not None:
        raise EndpointError(f"The token {token} is revoked.")
    if not token.has_scope(ApiScope.ACCESS_READ):
        raise EndpointError(f"The token {token} lacks the access:read scope.")
    others = ProductEndpoint.objects.filter(token=token)
    if endpoint is not None:
        others = others.exclude(pk=endpoint.pk)
    holder = others.values_list("name", flat=True).first()
    if holder is not None:
        raise EndpointError(
            f"The token {token} already confirms for {holder}: give each product its own token."
        )


def _refused_by_constraint(
    *, name: str, token: ApiToken | None, holds_sessions: bool, endpoint: ProductEndpoint | None
) -> None:
    """Another Admin saved an endpoint with the same name or token between our checks and our
    write, and a unique constraint refused ours: say which, as the checks would have."""
    endpoint_token_check(token=token, holds_sessions=holds_sessions, endpoint=endpoint)
    same_name = ProductEndpoint.objects.filter(name__iexact=name.strip())
    if endpoint is not None:
        same_name = same_name.exclude(pk=endpoint.pk)
    if same_name.exists():
        raise EndpointError(f"An endpoint named {name.strip()} already exists.")


def endpoint_create(
    *, name: str, url: str, holds_sessions: bool, token: ApiToken | None, actor: User
) -> ProductEndpoint:
    endpoint_token_check(token=token, holds_sessions=holds_sessions)
    try:
        return _endpoint_create(
            name=name, url=url, holds_sessions=holds_sessions, token=token, actor=actor
        )
    except IntegrityError:
        _refused_by_constraint(name=name, token=token, holds_sessions=holds_sessions, endpoint=None)
        raise


def _endpoint_create(
    *, name: str, url: str, holds_sessions: bool, token: ApiToken | None, actor: User
) -> ProductEndpoint:
    with transaction.atomic():
        if ProductEndpoint.objects.filter(name__iexact=name.strip()).exists():
            raise EndpointError(f"An endpoint named {name.strip()} already exists.")
        endpoint = ProductEndpoint.objects.create(
            name=name.strip(),
            url=url.strip(),
            holds_sessions=holds_sessions,
            token=token,
            created_by=actor,
        )
        endpoint_change_record(
            endpoint=endpoint,
            kind=EndpointChangeKind.CREATED,
            actor=actor.email,
            actor_user=actor,
            details=_settings(endpoint),
        )
    logger.info("endpoint %s (%s) created by %s", endpoint.pk, endpoint.name, actor.email)
    return endpoint


def endpoint_update(
    *,
    endpoint: ProductEndpoint,
    name: str,
    url: str,
    holds_sessions: bool,
    token: ApiToken | None,
    actor: User,
) -> ProductEndpoint:
    endpoint_token_check(token=token, holds_sessions=holds_sessions, endpoint=endpoint)
    try:
        with transaction.atomic():
            locked = ProductEndpoint.objects.select_for_update().get(pk=endpoint.pk)
            if (
                ProductEndpoint.objects.filter(name__iexact=name.strip())
                .exclude(pk=locked.pk)
                .exists()
            ):
                raise EndpointError(f"An endpoint named {name.strip()} already exists.")
            before = _settings(locked)
            locked.name, locked.url = name.strip(), url.strip()
            locked.holds_sessions, locked.token = holds_sessions, token
            after = _settings(locked)
            changed = {f: [before[f], after[f]] for f in after if before[f] != after[f]}
            if changed:
                locked.save(update_fields=list(changed))
                endpoint_change_record(
                    endpoint=locked,
                    kind=EndpointChangeKind.CHANGED,
                    actor=actor.email,
                    actor_user=actor,
                    details=changed,
                )
    except IntegrityError:
        _refused_by_constraint(
            name=name, token=token, holds_sessions=holds_sessions, endpoint=endpoint
        )
        raise
    if changed:
        logger.info(
            "endpoint %s changed by %s: %s", locked.pk, actor.email, ", ".join(sorted(changed))
        )
    return locked


def endpoint_set_enabled(
    *, endpoint: ProductEndpoint, enabled: bool, actor: User
) -> ProductEndpoint:
    """A disabled endpoint gets no new events and its waiting ones are held (sent once it is
    enabled again, newest per account, while inside their three days)."""
    with transaction.atomic():
        locked = ProductEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if locked.is_enabled == enabled:
            raise EndpointConflict(
                f"{locked.name} is already {'enabled' if enabled else 'disabled'}."
            )
        locked.is_enabled = enabled
        locked.save(update_fields=["is_enabled"])
        endpoint_change_record(
            endpoint=locked,
            kind=EndpointChangeKind.ENABLED if enabled else EndpointChangeKind.DISABLED,
            actor=actor.email,
            actor_user=actor,
        )
        if enabled:
            from products.services.delivery import deliveries_kick_on_commit

            deliveries_kick_on_commit()  # what waited goes out now
    logger.info(
        "endpoint %s %s by %s", locked.pk, "enabled" if enabled else "disabled", actor.email
    )
    return locked


def endpoint_secret_rotate(*, endpoint: ProductEndpoint, actor: User) -> ProductEndpoint:
    """A new signing secret, used from the next attempt on (the product must be given it)."""
    with transaction.atomic():
        locked = ProductEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        locked.secret = endpoint_secret_generate()
        locked.save(update_fields=["secret"])
        endpoint_change_record(
            endpoint=locked,
            kind=EndpointChangeKind.SECRET_ROTATED,
            actor=actor.email,
            actor_user=actor,
            # Which secret, never any of it: a fingerprint (the first 12 hex digits of its
            # SHA-256) to tell secrets apart, which gives away none of the key's bits.
            details={"secret_fingerprint": secret_fingerprint(locked.secret)},
        )
    logger.warning("endpoint %s secret rotated by %s", locked.pk, actor.email)
    return locked
