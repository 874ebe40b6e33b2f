"""API tokens: the bearer tokens products call the API with, within their scopes. Only a hash
is stored.

Authenticating is on the path of every API request, so it neither reads nor writes the database
each time:

- **Lookups are cached in process** for `JANITOR_API_TOKEN_CACHE_SECONDS` (default 5 s). A
  revocation made through `api_token_revoke` takes effect at once in the process that made it
  and within that bound everywhere else (each gunicorn worker re-reads the token once its entry
  is older than the bound). Changed scopes likewise. Unknown tokens are never cached, so a new
  token works at once.
- **Uses are counted in process** and written in one UPDATE per token
  (`use_count = use_count + n`, `last_used_at` = the later of the stored and the counted) when
  `JANITOR_API_TOKEN_FLUSH_SECONDS` (default 5 s) have passed since the last write or
  `JANITOR_API_TOKEN_FLUSH_USES` (default 1,000) uses are waiting, on the request that crosses
  the line, and at the process's exit (atexit: gunicorn's graceful stops and `max_requests`
  recycling end a worker through the interpreter's normal exit).

What can be lost: a process killed without a normal exit (SIGKILL, the OOM killer, a power cut)
loses the uses it had counted and not yet written, at most `FLUSH_USES - 1` uses and
`FLUSH_SECONDS` of them per process; the writes commit without waiting for the disk
(synchronous_commit off, PostgreSQL), so a crash of the database server may also lose the last
fraction of a second of them; a write that fails (database away) keeps its counts for
the next one. An idle worker's counted uses wait for its next API request or its exit, so
`last_used_at` can lag behind by that long; it is for humans ("is this token still in use?").
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from accounts.models import ApiScope, ApiToken, StaffActionAudit, StaffActionKind, User
from janitor.errors import ErrorKind, JanitorError

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "jan_"
CACHE_SECONDS = 5.0
FLUSH_SECONDS = 5.0
FLUSH_USES = 1000


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def _token_hash(raw: str) -> str:
    # The token is 256 random bits, so a plain SHA-256 is enough: nothing to brute-force.
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass
class _Uses:
    """What this process knows and has not yet written: cached tokens and counted uses."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # token_hash -> (monotonic time it was read, the token as read)
    cache: dict[str, tuple[float, ApiToken]] = field(default_factory=dict)
    # token id -> [uses, latest use]
    pending: dict[int, list[Any]] = field(default_factory=dict)
    pending_total: int = 0
    last_flush: float = field(default_factory=time.monotonic)


_uses = _Uses()


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


def api_token_forget(*, token: ApiToken) -> None:
    """Drop `token` from this process's lookup cache (other processes re-read it within
    JANITOR_API_TOKEN_CACHE_SECONDS). Call after changing a token's scopes or revoking it.

    Inside a transaction, dropped now and again once it commits: a request of this process
    that read the token meanwhile (the change not committed yet) cached the old one."""

    def forget() -> None:
        with _uses.lock:
            _uses.cache.pop(token.token_hash, None)

    forget()
    transaction.on_commit(forget)


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    api_token_forget(token=token)
    return token


def _lookup(token_hash: str) -> ApiToken | None:
    now = time.monotonic()
    ttl = _setting("JANITOR_API_TOKEN_CACHE_SECONDS", CACHE_SECONDS)
    with _uses.lock:
        entry = _uses.cache.get(token_hash)
    if entry is not None and now - entry[0] < ttl:
        return entry[1]
    token = ApiToken.objects.filter(token_hash=token_hash, revoked_at__isnull=True).first()
    with _uses.lock:
        if token is None or ttl <= 0:
            _uses.cache.pop(token_hash, None)
        else:
            _uses.cache[token_hash] = (now, token)
    return token


def api_token_authenticate(*, raw: str) -> ApiToken | None:
    """The live token behind `raw`, or None (unknown or revoked); counts the use.

    At most one query (none while the token is cached); the use is written later, in a batch
    (see the module's docstring). The returned token is the caller's own copy."""
    if not raw or not raw.startswith(TOKEN_PREFIX):
        return None
    token = _lookup(_token_hash(raw))
    if token is None:
        return None
    now = timezone.now()
    with _uses.lock:
        counted = _uses.pending.get(token.pk)
        if counted is None:
            _uses.pending[token.pk] = [1, now]
        else:
            counted[0] += 1
            counted[1] = now
        _uses.pending_total += 1
        due = _uses.pending_total >= _setting(
            "JANITOR_API_TOKEN_FLUSH_USES", FLUSH_USES
        ) or time.monotonic() - _uses.last_flush >= _setting(
            "JANITOR_API_TOKEN_FLUSH_SECONDS", FLUSH_SECONDS
        )
    if due:
        api_token_uses_flush()
    return copy.copy(token)


def api_token_uses_flush() -> int:
    """Write the uses this process has counted: one UPDATE per token. Returns the uses written
    (0 when there were none, or when the write failed: those counts wait for the next flush)."""
    with _uses.lock:
        pending, _uses.pending = _uses.pending, {}
        _uses.pending_total = 0
        _uses.last_flush = time.monotonic()
    if not pending:
        return 0
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # The request that flushes does not wait for the WAL to reach the disk (a
                # commit under a busy disk took over a second in the bench); a crash may lose
                # this write, which the counts accept anyway (see above).
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            # In id order, so two processes flushing the same tokens never deadlock.
            for token_id, (uses, last_used) in sorted(pending.items()):
                ApiToken.objects.filter(pk=token_id).update(
                    use_count=F("use_count") + uses,
                    last_used_at=Case(
                        When(
                            Q(last_used_at__isnull=True) | Q(last_used_at__lt=last_used),
                            then=Value(last_used),
                        ),
                        default=F("last_used_at"),
                    ),
                )
    except DatabaseError:
        logger.warning("Could not write API token uses; kept for the next flush.", exc_info=True)
        _uses_restore(pending)
        return 0
    return sum(uses for uses, _ in pending.values())


def _uses_restore(pending: dict[int, list[Any]]) -> None:
    with _uses.lock:
        for token_id, (uses, last_used) in pending.items():
            counted = _uses.pending.setdefault(token_id, [0, last_used])
            counted[0] += uses
            counted[1] = max(counted[1], last_used)
            _uses.pending_total += uses


def api_token_uses_pending() -> dict[int, tuple[int, datetime]]:
    """What this process has counted and not yet written, by token id (for tests and admin)."""
    with _uses.lock:
        return {pk: (uses, at) for pk, (uses, at) in _uses.pending.items()}


def api_token_state_reset() -> None:
    """Forget every cached token and counted use of this process (tests start clean)."""
    with _uses.lock:
        _uses.cache.clear()
        _uses.pending.clear()
        _uses.pending_total = 0
        _uses.last_flush = time.monotonic()


def _flush_at_exit() -> None:
    try:
        api_token_uses_flush()
    except Exception:  # the interpreter is stopping: nothing left to tell but the log
        logger.warning("Could not write API token uses at exit.", exc_info=True)


atexit.register(_flush_at_exit)


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
