"""Sign-in throttling for every sign-in path: per (client address, email) and per address.

The address is the client's as `client_ip()` resolves it through JANITOR_TRUSTED_PROXIES, so
behind the load balancer one attacker cannot lock a real user out from the user's own address,
and one address cannot spray passwords across many emails. Every sign-in step (the staff,
customer and Django admin logins, and any later step such as a second factor) calls
`login_throttle_check` before checking a secret, then `login_failure_record` or
`login_success_record`.
"""

import hashlib

from django.conf import settings
from django.core.cache import cache

from accounts.services.activity import client_ip

LOCKED_MESSAGE = "Too many failed sign-ins. Wait a few minutes and try again."
# A request whose peer address is unusable still counts, all such requests together.
UNKNOWN_ADDRESS = "unknown"


class LoginThrottled(Exception):
    """Too many recent failures from this address (for this email, or across emails)."""

    message = LOCKED_MESSAGE


def login_address(request) -> str:
    """The address a sign-in is counted against."""
    if request is None:
        return UNKNOWN_ADDRESS
    return client_ip(request) or UNKNOWN_ADDRESS


def _digest(text: str) -> str:
    # Hashed: an email or address never appears in the cache's key space.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _email_key(ip: str, email: str) -> str:
    return f"login-failures:{_digest(f'{ip}|{email.strip().lower()}')}"


def _address_key(ip: str) -> str:
    return f"login-failures-address:{_digest(ip)}"


def _count(key: str) -> int:
    return cache.get(key, 0)


def _increment(key: str) -> None:
    timeout = settings.JANITOR_LOGIN_LOCKOUT_SECONDS
    # add() then incr() is atomic on Redis, so parallel guesses all count.
    cache.add(key, 0, timeout=timeout)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=timeout)


def login_throttle_check(*, request, email: str) -> None:
    """Raise LoginThrottled if this address may not try `email` (or any email) now."""
    ip = login_address(request)
    if _count(_email_key(ip, email)) >= settings.JANITOR_LOGIN_MAX_FAILURES:
        raise LoginThrottled
    if _count(_address_key(ip)) >= settings.JANITOR_LOGIN_MAX_FAILURES_PER_ADDRESS:
        raise LoginThrottled


def login_failure_record(*, request, email: str) -> None:
    """Count a failed sign-in against (address, email) and against the address alone."""
    ip = login_address(request)
    _increment(_email_key(ip, email))
    _increment(_address_key(ip))


def login_success_record(*, request, email: str) -> None:
    """A success forgives this (address, email) only: the address's own count stands, so
    guessing other emails between one's own successful sign-ins still adds up."""
    cache.delete(_email_key(login_address(request), email))
