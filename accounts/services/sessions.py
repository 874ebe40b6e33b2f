"""The per-user session index: which sessions a user holds, and ending all of them at once."""

from __future__ import annotations

import threading
from datetime import timedelta
from importlib import import_module
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import caches
from django.db.models import Value
from django.db.models.functions import Concat
from django.utils import timezone

from accounts.models import Account, SessionRecord, User

if TYPE_CHECKING:
    import redis

# Ended sessions leave a marker under their key for as long as the browser's cookie could
# live, so the owner's next click can be told why they were signed out.
TOMBSTONE = "revoked:"

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _redis() -> redis.Redis:
    """A client for settings.REDIS_URL, read at call time so a changed setting takes effect."""
    url = settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        with _clients_lock:
            client = _clients.get(url)
            if client is None:
                # Imported here: a process whose sessions are not in Redis never loads it.
                import redis

                client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
                _clients[url] = client
    return client


def _text(member: bytes | str) -> str:
    """A set member as text (the client reads bytes: it does not decode responses)."""
    return member.decode() if isinstance(member, bytes) else member


def _index_key(user_id: int) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:sessions:user:{user_id}"


def _tombstone_key(session_key: str) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:sessions:{TOMBSTONE}{session_key}"


def _session_store_key(session_key: str) -> str:
    """The Redis key Django's cache session backend stores this session under."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    return caches[settings.SESSION_CACHE_ALIAS].make_key(store.cache_key_prefix + session_key)


def _uses_redis() -> bool:
    return bool(settings.REDIS_URL)


def session_index_record(*, user: User, session_key: str | None) -> None:
    """Remember that `session_key` belongs to `user` (called on every login; a session not
    saved yet has no key, and nothing is recorded)."""
    if not session_key:
        return
    if _uses_redis():
        index = _index_key(user.pk)
        pipe = _redis().pipeline(transaction=False)
        pipe.sadd(index, session_key)
        # The set outlives its newest session by nothing, so an idle user's index expires too.
        pipe.expire(index, settings.SESSION_COOKIE_AGE)
        pipe.execute()
    else:
        SessionRecord.objects.get_or_create(session_key=session_key, defaults={"user": user})
    session_index_prune(user=user)


def session_index_forget(*, session_key: str, user_id: int | None = None) -> None:
    """Drop one session from the index (logout)."""
    if not session_key:
        return
    if _uses_redis():
        if user_id is not None:
            _redis().srem(_index_key(user_id), session_key)
    else:
        SessionRecord.objects.filter(session_key=session_key).delete()


def session_keys_for(*, user: User) -> list[str]:
    """The live session keys the index holds for `user`."""
    if _uses_redis():
        return sorted(_text(k) for k in _redis().smembers(_index_key(user.pk)))
    return list(
        SessionRecord.objects.filter(user=user)
        .exclude(session_key__startswith=TOMBSTONE)
        .order_by("created_at")
        .values_list("session_key", flat=True)
    )


def session_index_prune(*, user: User) -> int:
    """Forget this user's sessions that expired in the store, and stale tombstones."""
    if _uses_redis():
        client = _redis()
        keys = [_text(k) for k in client.smembers(_index_key(user.pk))]
        if not keys:
            return 0
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(_session_store_key(key))
        gone = [key for key, alive in zip(keys, pipe.execute(), strict=True) if not alive]
        if gone:
            client.srem(_index_key(user.pk), *gone)
        return len(gone)
    from django.contrib.sessions.models import Session

    records = SessionRecord.objects.filter(user=user)
    live = set(
        Session.objects.filter(
            session_key__in=records.exclude(session_key__startswith=TOMBSTONE).values(
                "session_key"
            ),
            expire_date__gt=timezone.now(),
        ).values_list("session_key", flat=True)
    )
    cookie_limit = timezone.now() - timedelta(seconds=settings.SESSION_COOKIE_AGE)
    stale = [
        pk
        for pk, key, created in records.values_list("pk", "session_key", "created_at")
        if (key.startswith(TOMBSTONE) and created < cookie_limit)
        or (not key.startswith(TOMBSTONE) and key not in live)
    ]
    if stale:
        SessionRecord.objects.filter(pk__in=stale).delete()
    return len(stale)


def sessions_revoke_all(*, user: User) -> int:
    """Delete every indexed session of `user` from the session store; return how many existed.

    Each ended key leaves a tombstone so the owner's next request can be told why. Running it
    again finds nothing left and returns 0. Redis errors propagate: the caller records them.
    """
    if _uses_redis():
        return _revoke_all_redis(user)
    return _revoke_all_database(user)


def _revoke_all_redis(user: User) -> int:
    client = _redis()
    index = _index_key(user.pk)
    keys = [_text(k) for k in client.smembers(index)]
    if not keys:
        return 0
    # One round trip for every delete, tombstone and the index itself.
    pipe = client.pipeline(transaction=True)
    pipe.delete(*[_session_store_key(key) for key in keys])
    for key in keys:
        pipe.set(_tombstone_key(key), user.pk, ex=settings.SESSION_COOKIE_AGE)
    pipe.srem(index, *keys)
    return int(pipe.execute()[0])


def _revoke_all_database(user: User) -> int:
    from django.contrib.sessions.models import Session

    keys = list(
        SessionRecord.objects.filter(user=user)
        .exclude(session_key__startswith=TOMBSTONE)
        .values_list("session_key", flat=True)
    )
    if not keys:
        return 0
    removed, _ = Session.objects.filter(session_key__in=keys).delete()
    SessionRecord.objects.filter(user=user, session_key__in=keys).update(
        session_key=Concat(Value(TOMBSTONE), "session_key"), created_at=timezone.now()
    )
    return removed


# One atomic round trip for a whole account: for each member's index (KEYS[i]), delete every
# session it lists from the store, leave a tombstone naming the member, drop the index, and
# count the store keys that existed. ARGV: store prefix, tombstone prefix, tombstone TTL, then
# the member ids in the order of KEYS.
_REVOKE_ACCOUNT_LUA = """
local removed = {}
for i, index in ipairs(KEYS) do
  local keys = redis.call('SMEMBERS', index)
  local n = 0
  for _, key in ipairs(keys) do
    n = n + redis.call('DEL', ARGV[1] .. key)
    redis.call('SET', ARGV[2] .. key, ARGV[3 + i], 'EX', ARGV[3])
  end
  if #keys > 0 then redis.call('DEL', index) end
  removed[i] = n
end
return removed
"""


def sessions_revoke_account(*, account: Account) -> dict[int, int]:
    """End every indexed session of every member of `account`: {member id: sessions ended}.

    On Redis one script does it all atomically (500 members holding 5,000 sessions is one
    round trip); on the embedded default, three queries. Tombstones name the member, so each
    one's next click is told why. Running it again ends nothing. Errors propagate.
    """
    member_ids = list(
        User.objects.filter(account=account).order_by("pk").values_list("pk", flat=True)
    )
    if not member_ids:
        return {}
    if _uses_redis():
        prefix = _session_store_key("")
        tombstone_prefix = _tombstone_key("")
        script = _redis().register_script(_REVOKE_ACCOUNT_LUA)
        counts = script(
            keys=[_index_key(pk) for pk in member_ids],
            args=[prefix, tombstone_prefix, settings.SESSION_COOKIE_AGE, *member_ids],
        )
        return {pk: int(n) for pk, n in zip(member_ids, counts, strict=True)}
    return _revoke_account_database(account, member_ids)


def _revoke_account_database(account: Account, member_ids: list[int]) -> dict[int, int]:
    """The embedded default's step 2 for a whole team: counts, deletes and tombstones by
    subqueries, so no query carries one parameter per session (SQLite bounds them)."""
    from django.contrib.sessions.models import Session
    from django.db.models import Count

    records = SessionRecord.objects.filter(user__account=account).exclude(
        session_key__startswith=TOMBSTONE
    )
    counts = dict.fromkeys(member_ids, 0)
    live = Session.objects.filter(session_key__in=records.values("session_key"))
    counts.update(
        dict(
            records.filter(session_key__in=live.values("session_key"))
            .values("user_id")
            .annotate(n=Count("pk"))
            .values_list("user_id", "n")
        )
    )
    live.delete()
    records.update(session_key=Concat(Value(TOMBSTONE), "session_key"), created_at=timezone.now())
    return counts


# For each member's index (KEYS[i]): how many of its session keys exist in the store.
_LIVE_COUNTS_LUA = """
local counts = {}
for i, index in ipairs(KEYS) do
  local n = 0
  for _, key in ipairs(redis.call('SMEMBERS', index)) do
    n = n + redis.call('EXISTS', ARGV[1] .. key)
  end
  counts[i] = n
end
return counts
"""


def sessions_live_counts(*, member_ids: list[int]) -> dict[int, int]:
    """How many live sessions each member holds now (one round trip or one query): sessions
    the index knows of and the store still has."""
    if not member_ids:
        return {}
    if _uses_redis():
        # The index keeps a member's expired keys until their next login prunes it: count the
        # keys whose session still exists in the store, in one script.
        script = _redis().register_script(_LIVE_COUNTS_LUA)
        counts = script(keys=[_index_key(pk) for pk in member_ids], args=[_session_store_key("")])
        return {pk: int(n) for pk, n in zip(member_ids, counts, strict=True)}
    from django.contrib.sessions.models import Session
    from django.db.models import Count

    live = Session.objects.filter(expire_date__gt=timezone.now()).values("session_key")
    counts = dict.fromkeys(member_ids, 0)
    rows = (
        SessionRecord.objects.filter(user_id__in=member_ids, session_key__in=live)
        .values("user_id")
        .annotate(n=Count("pk"))
        .values_list("user_id", "n")
    )
    counts.update(dict(rows))
    return counts


def session_revoked_owner(*, session_key: str) -> int | None:
    """The user id whose revocation ended this session, if it was ended that way."""
    if not session_key:
        return None
    if _uses_redis():
        raw = _redis().get(_tombstone_key(session_key))
        return int(raw) if raw is not None else None
    return (
        SessionRecord.objects.filter(session_key=TOMBSTONE + session_key)
        .values_list("user_id", flat=True)
        .first()
    )
