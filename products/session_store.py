"""Direct mode: Janitor deletes a product's session keys itself, in the product's own Redis
(JANITOR_PRODUCT_SESSION_REDIS_URL), named by a key template or listed in a per-user index set.

The one module that talks to the product's session store: plain values in and out, one error
type (every failure here is one a retry can fix: the store was unreachable or refused)."""

from __future__ import annotations

import string
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import redis
from django.conf import settings

# Keys deleted per UNLINK, and the COUNT hint of each SCAN/SSCAN page.
BATCH = 500
_GLOB = "*?["

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


class ProductSessionStoreError(Exception):
    """The product's session store could not be read or written; a retry can succeed (the
    staged revocation records it and fails retryable, as a failure of Janitor's own store)."""

    retryable = True


@dataclass(frozen=True)
class SessionOwner:
    """A member whose product sessions end: the names the templates can use."""

    user_public_id: str
    email: str
    account_public_id: str


def product_session_store_configured() -> bool:
    return bool(settings.JANITOR_PRODUCT_SESSION_REDIS_URL)


def _store_name() -> str:
    """The store's address without credentials, fit for an error message."""
    parsed = urlparse(settings.JANITOR_PRODUCT_SESSION_REDIS_URL)
    where = parsed.hostname or parsed.path or "?"
    port = f":{parsed.port}" if parsed.port else ""
    db = parsed.path if parsed.hostname and parsed.path not in ("", "/") else ""
    return f"{parsed.scheme}://{where}{port}{db}"


def _client() -> redis.Redis:
    url = settings.JANITOR_PRODUCT_SESSION_REDIS_URL
    client = _clients.get(url)
    if client is None:
        with _clients_lock:
            client = _clients.get(url)
            if client is None:
                client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
                _clients[url] = client
    return client


def _glob_escape(value: str) -> str:
    """A value placed in a SCAN MATCH pattern matches only itself (a public id holding * must
    not reach another member's keys)."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in value)


def _is_pattern(template: str) -> bool:
    """Whether the template's own text (not the values put in it) holds a glob character."""
    return any(
        ch in literal for literal, _, _, _ in string.Formatter().parse(template) for ch in _GLOB
    )


def _fill(template: str, owner: SessionOwner, *, escape: bool) -> str:
    values = {
        "user_public_id": owner.user_public_id,
        "email": owner.email,
        "account_public_id": owner.account_public_id,
    }
    if escape:
        values = {name: _glob_escape(value) for name, value in values.items()}
    return template.format(**values)


def _batches(keys: Iterable[bytes], size: int = BATCH) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _unlink(client: redis.Redis, keys: Iterable[bytes]) -> int:
    removed = 0
    for batch in _batches(keys):
        removed += int(client.unlink(*batch))
    return removed


def _delete_for(client: redis.Redis, owner: SessionOwner) -> int:
    removed = 0
    key_template = settings.JANITOR_PRODUCT_SESSION_KEY_TEMPLATE
    if key_template:
        if _is_pattern(key_template):
            pattern = _fill(key_template, owner, escape=True)
            # SCAN, never KEYS: the product's store keeps serving while Janitor walks it. The
            # keys are collected first, so deleting does not disturb the cursor.
            found = list(client.scan_iter(match=pattern, count=BATCH))
            removed += _unlink(client, found)
        else:
            removed += int(client.unlink(_fill(key_template, owner, escape=False)))
    index_template = settings.JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE
    if index_template:
        index = _fill(index_template, owner, escape=False)
        listed = list(client.sscan_iter(index, count=BATCH))
        removed += _unlink(client, listed)
        client.unlink(index)
    return removed


def product_sessions_delete(*, owners: list[SessionOwner]) -> dict[str, int]:
    """Delete every session key of each owner from the product's store: {public id: keys
    deleted}. Running it again deletes nothing and returns zeros."""
    if not product_session_store_configured():
        return {}
    try:
        client = _client()
        return {owner.user_public_id: _delete_for(client, owner) for owner in owners}
    except redis.RedisError as exc:
        raise ProductSessionStoreError(
            f"product session store {_store_name()}: {exc.__class__.__name__}: {exc}"
        ) from exc
