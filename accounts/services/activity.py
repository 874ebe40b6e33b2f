"""Capturing what a member does in the product: throttled requests and logins, with the
client's address read through trusted proxies. API tokens: services/tokens.py; the
product's batch reports: services/ingest.py."""

from __future__ import annotations

import hashlib
import ipaddress
import logging

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import ActivityKind, ActivityLog, User

logger = logging.getLogger(__name__)

PATH_MAX = 500
USER_AGENT_MAX = 500


# --- Request capture ------------------------------------------------------------------------


def client_ip(request: HttpRequest) -> str | None:
    """The caller's IP: X-Forwarded-For is believed only when the direct peer is a trusted proxy.

    Walks the header from the right (each proxy appends), skipping trusted proxies, so a client
    cannot forge its address by sending its own X-Forwarded-For.
    """
    remote = valid_ip(request.META.get("REMOTE_ADDR", ""))
    trusted = settings.JANITOR_TRUSTED_PROXIES
    if remote is None or remote not in trusted:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        ip = valid_ip(hop)
        if ip is None:
            # A garbled hop means nothing left of it can be trusted either.
            return remote
        if ip not in trusted:
            return ip
    return remote


def valid_ip(value: str) -> str | None:
    """The address in its canonical form, or None when `value` is not an IP address."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _throttle_key(*, user: User, path: str) -> str:
    # public_id, not pk: ids are reused on a fresh database, public ids are random.
    digest = hashlib.sha1(path.encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"activity:{user.public_id}:{digest}"


def activity_record_request(*, user: User, request: HttpRequest) -> ActivityLog | None:
    """Record one request, at most once per (user, path) per throttle window.

    The window lives in the shared cache (Redis in production): cache.add is atomic there, so
    several processes agree on who writes the row. Returns None when throttled.
    """
    path = request.path[:PATH_MAX]
    window = settings.JANITOR_ACTIVITY_THROTTLE_SECONDS
    key = _throttle_key(user=user, path=path)
    if window > 0 and not cache.add(key, 1, timeout=window):
        return None
    try:
        return ActivityLog.objects.create(
            member=user,
            occurred_at=timezone.now(),
            kind=ActivityKind.REQUEST,
            path=path,
            ip_address=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX],
            source="app",
        )
    except Exception:
        # Free the window so the next request records it instead of losing the whole window.
        if window > 0:
            cache.delete(key)
        raise


def activity_record_login(*, user: User, request: HttpRequest | None) -> ActivityLog:
    """Record a login (never throttled: every login is evidence). Call it from user_logged_in."""
    return ActivityLog.objects.create(
        member=user,
        occurred_at=timezone.now(),
        kind=ActivityKind.LOGIN,
        path=request.path[:PATH_MAX] if request is not None else "",
        ip_address=client_ip(request) if request is not None else None,
        user_agent=(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[
            :USER_AGENT_MAX
        ],
        source="app",
    )
