"""Direct mode: Janitor deletes a product's session keys itself, in the product's own Redis
(JANITOR_PRODUCT_SESSION_REDIS_URL), named by a key template or listed in a per-user index set.

The one module that talks to the product's session store: plain values in and out, one error
type (every failure here is one a retry can fix: the store was unreachable or refused)."""

from __future__ import annotations

import re
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


# Up to this many members, each one's keys are found by a SCAN MATCH of their own (the server
# filters); above it, one SCAN of the template with every placeholder a wildcard walks the
# keyspace once for the whole team and the keys are told apart here. A SCAN walks the whole
# keyspace whatever its pattern, so per-member scans cost one walk per member.
SCAN_PER_MEMBER_MAX = 8


def _glob_regex(glob: str) -> str:
    """A Redis glob (*, ?, [...], backslash escapes) as a regular expression."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            close = glob.find("]", i + 2 if glob[i + 1 : i + 2] == "^" else i + 1)
            if close == -1:
                out.append(re.escape(ch))
            else:
                body = glob[i + 1 : close]
                negate = body.startswith("^")
                body = body[1:] if negate else body
                # Ranges and backslash escapes mean the same in both; a nested [ is literal.
                out.append("[" + ("^" if negate else "") + body.replace("[", "\\[") + "]")
                i = close + 1
                continue
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _owner_regex(template: str, owner: SessionOwner) -> str:
    """The template for one owner as a regular expression: its own text as a glob, the values
    put in it as literals."""
    values = {
        "user_public_id": owner.user_public_id,
        "email": owner.email,
        "account_public_id": owner.account_public_id,
    }
    parts = []
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        parts.append(_glob_regex(literal))
        if field is not None:
            parts.append(re.escape(values[field]))
    return "".join(parts)


def _scan_pattern(client: redis.Redis, owners: list[SessionOwner], template: str) -> dict[str, int]:
    if len(owners) <= SCAN_PER_MEMBER_MAX:
        # SCAN, never KEYS: the product's store keeps serving while Janitor walks it. The keys
        # are collected first, so deleting does not disturb the cursor.
        return {
            owner.user_public_id: _unlink(
                client,
                list(client.scan_iter(match=_fill(template, owner, escape=True), count=BATCH)),
            )
            for owner in owners
        }
    wildcard = "".join(
        literal + ("*" if field is not None else "")
        for literal, field, _spec, _conversion in string.Formatter().parse(template)
    )
    whose = re.compile(
        "|".join(f"(?P<m{n}>{_owner_regex(template, owner)})" for n, owner in enumerate(owners)),
        re.DOTALL,
    )
    found: dict[int, list[bytes]] = {n: [] for n in range(len(owners))}
    for key in client.scan_iter(match=wildcard, count=BATCH):
        match = whose.fullmatch(key.decode("utf-8", "surrogateescape"))
        if match is not None and match.lastgroup is not None:
            found[int(match.lastgroup[1:])].append(key)
    return {owner.user_public_id: _unlink(client, found[n]) for n, owner in enumerate(owners)}


def _delete_all(client: redis.Redis, owners: list[SessionOwner]) -> dict[str, int]:
    removed = dict.fromkeys((owner.user_public_id for owner in owners), 0)
    key_template = settings.JANITOR_PRODUCT_SESSION_KEY_TEMPLATE
    if key_template:
        if _is_pattern(key_template):
            counts = _scan_pattern(client, owners, key_template)
        else:
            pipe = client.pipeline(transaction=False)
            for owner in owners:
                pipe.unlink(_fill(key_template, owner, escape=False))
            counts = {
                owner.user_public_id: int(n)
                for owner, n in zip(owners, pipe.execute(), strict=True)
            }
        for public_id, n in counts.items():
            removed[public_id] += n
    index_template = settings.JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE
    if index_template:
        for owner in owners:
            index = _fill(index_template, owner, escape=False)
            listed = list(client.sscan_iter(index, count=BATCH))
            removed[owner.user_public_id] += _unlink(client, listed)
            client.unlink(index)
    return removed


def product_sessions_delete(*, owners: list[SessionOwner]) -> dict[str, int]:
    """Delete every session key of each owner from the product's store: {public id: keys
    deleted}. Running it again deletes nothing and returns zeros."""
    if not product_session_store_configured():
        return {}
    try:
        client = _client()
        return _delete_all(client, owners)
    except redis.RedisError as exc:
        raise ProductSessionStoreError(
            f"product session store {_store_name()}: {exc.__class__.__name__}: {exc}"
        ) from exc
