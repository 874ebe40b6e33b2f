"""API tokens: the bearer tokens a product reports activity with. Only a hash is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiScope, ApiToken, StaffActionAudit, StaffActionKind, User
from janitor.errors import ErrorKind, JanitorError

TOKEN_PREFIX = "jan_"
# last_used_at is for humans ("is this token still in use?"): minute precision spares a write
# per request.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def _token_hash(raw: str) -> str:
    # The token is 256 random bits, so a plain SHA-256 is enough: nothing to brute-force.
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def api_token_create(
    *,
    name: str,
    created_by: User | None,
    scopes: tuple[str, ...] | list[str] = (ApiScope.ACTIVITY_WRITE,),
) -> tuple[ApiToken, str]:
    """Make a token with `scopes`; the raw value is returned once and only its hash is stored."""
    if not name.strip():
        raise ValueError("A token needs a name (which product uses it).")
    unknown = sorted(set(scopes) - set(ApiScope.values))
    if unknown:
        raise ValueError(f"Unknown scope(s): {', '.join(unknown)}.")
    if not scopes:
        raise ValueError("A token needs at least one scope.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name.strip(),
        scopes=sorted(set(scopes)),
        prefix=raw[:12],
        token_hash=_token_hash(raw),
        created_by=created_by,
    )
    return token, raw


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_authenticate(*, raw: str) -> ApiToken | None:
    """The live token behind `raw`, or None (unknown or revoked)."""
    if not raw or not raw.startswith(TOKEN_PREFIX):
        return None
    token = ApiToken.objects.filter(token_hash=_token_hash(raw), revoked_at__isnull=True).first()
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


class ApiTokenError(JanitorError):
    """A token the dashboard cannot create or revoke as asked (the message says why)."""

    kind = ErrorKind.INVALID


def api_token_issue(
    *, name: str, scopes: list[str] | tuple[str, ...], actor: User
) -> tuple[ApiToken, str]:
    """An Admin makes a token in the dashboard: the raw value is returned once, and the staff
    audit records who made which token with which scopes (never the value)."""
    try:
        with transaction.atomic():
            token, raw = api_token_create(name=name, created_by=actor, scopes=scopes)
            StaffActionAudit.objects.create(
                kind=StaffActionKind.API_TOKEN_CREATED,
                actor=actor.email,
                actor_user=actor,
                reason=f"API token for {token.name}",
                details={
                    "token": token.pk,
                    "name": token.name,
                    "prefix": token.prefix,
                    "scopes": token.scopes,
                },
            )
    except ValueError as error:
        raise ApiTokenError(str(error)) from None
    return token, raw


def api_token_revoke_by_staff(*, token: ApiToken, actor: User, reason: str) -> ApiToken:
    """An Admin revokes a token: it stops working at once, and the staff audit says who and
    why. Revoking a revoked token is refused, so the audit holds one revocation per token."""
    if not reason.strip():
        raise ApiTokenError("Say why the token is revoked (for the audit).")
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is not None:
            raise ApiTokenError(f"{locked.name} ({locked.prefix}…) is already revoked.")
        api_token_revoke(token=locked)
        StaffActionAudit.objects.create(
            kind=StaffActionKind.API_TOKEN_REVOKED,
            actor=actor.email,
            actor_user=actor,
            reason=reason.strip(),
            details={
                "token": locked.pk,
                "name": locked.name,
                "prefix": locked.prefix,
                "scopes": locked.scopes,
            },
        )
    token.revoked_at = locked.revoked_at
    return token
