"""Sign-in throttling: after N failures for one (address, email), refuse for a cool-down."""

import hashlib

from django.conf import settings
from django.core.cache import cache


def _key(ip: str, email: str) -> str:
    digest = hashlib.sha256(f"{ip}|{email.strip().lower()}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


def login_is_locked(*, ip: str, email: str) -> bool:
    return cache.get(_key(ip, email), 0) >= settings.JANITOR_LOGIN_MAX_FAILURES


def login_failure_record(*, ip: str, email: str) -> None:
    key = _key(ip, email)
    # add() then incr() is atomic on Redis, so parallel guesses all count.
    cache.add(key, 0, timeout=settings.JANITOR_LOGIN_LOCKOUT_SECONDS)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=settings.JANITOR_LOGIN_LOCKOUT_SECONDS)


def login_failures_clear(*, ip: str, email: str) -> None:
    cache.delete(_key(ip, email))


LOCKED_MESSAGE = "Too many failed sign-ins. Wait a few minutes and try again."
