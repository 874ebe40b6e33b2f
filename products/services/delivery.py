"""Delivering the outbox to product endpoints: claim due deliveries safely across workers, POST
each as a signed Standard Webhooks event, record the outcome, retry with backoff for three days,
let a newer event for the same account supersede an older one, replay on request, and delete
finished ones once the retention period is over.

Ordering (per endpoint and account): every access event carries the account's whole access
state and its version, so only the newest matters. When a worker claims a delivery it first
supersedes every older open delivery of the same endpoint and account (an old failing one never
holds back the newer one), never sends a version lower than one already delivered there (it is
marked superseded instead), and while an older one is in flight (claimed by another worker, its
POST not answered yet) the newer one waits for it, so an endpoint receives an account's versions
in increasing order. access.sessions_revoke events stand outside this: they are never
superseded, never supersede, and never wait for an access event.

Claiming: a short transaction picks due rows (FOR UPDATE SKIP LOCKED on PostgreSQL), moves
next_attempt_at forward by a lease and marks them leased; the POSTs run with no transaction or
row lock open; the outcome is written in a second short transaction, only if the lease is still
this worker's. A worker that dies mid-POST leaves the lease to expire, and another delivers the
event again (at least once: receivers dedupe on webhook-id).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import floor
from typing import TYPE_CHECKING

import urllib3
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, F, Max, OuterRef, Q, QuerySet
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from accounts.models import AccessStatus, Account, RevocationStatus, User
from janitor.errors import ErrorKind, JanitorError
from janitor.services.schedules import minute_schedules_ensure
from products.models import (
    OPEN_DELIVERY_STATUSES,
    AccessEvent,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointChangeKind,
    SessionRevocation,
)
from products.services.endpoints import endpoint_change_record

if TYPE_CHECKING:
    from django_q.brokers import Broker

logger = logging.getLogger(__name__)

# Retries stop this long after the event was created (or replayed): then the delivery is dead.
DELIVERY_MAX_AGE = timedelta(days=3)
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 3600
# A newer event waiting for an older one in flight is looked at again this much later.
DEFER_SECONDS = 0.25
# How long a worker waits, in one call, for another worker's POSTs it has to come after.
DEFER_MAX_WAIT_SECONDS = 15.0
PROCESS_TASK = "products.tasks.deliveries_deliver_due_task"
SWEEP_SCHEDULE = ("deliveries: sweeper", PROCESS_TASK, 1)
# Set while a delivery task is queued and has not started: further commits need not queue
# another (the queued one will see their rows). Expires in case the broker loses the task.
KICK_KEY = "products:deliveries:kick"
KICK_TTL_SECONDS = 30
# A queued task stops claiming after this long and queues its successor, so it finishes well
# inside the queue's timeout.
QUEUED_RUN_BUDGET_SECONDS = 120
ERROR_TEXT_MAX = 500


class DeliveryError(JanitorError):
    """A delivery action the rules refuse; the message is fit to show to staff."""


class DeliveryConflict(DeliveryError):
    kind = ErrorKind.CONFLICT


class DeliveryGone(DeliveryConflict):
    """The delivery was purged (retention) after the page showing it was read."""


def _lease(size: int) -> timedelta:
    """How long a claim of up to `size` deliveries holds them: longer than sending them all can
    take (each POST is bounded by the timeout, JANITOR_DELIVERY_THREADS at once), with room
    for the database work. A shorter lease ran out while a slow endpoint's batch was still
    being sent: another worker then claimed (and superseded) rows still in flight, so an older
    version could reach the product after a newer one, and the first worker's outcomes were
    dropped as no longer its own."""
    rounds = -(-size // settings.JANITOR_DELIVERY_THREADS)  # ceil
    return timedelta(seconds=settings.JANITOR_DELIVERY_TIMEOUT_SECONDS * (rounds + 1) + 30)


def delivery_deadline(*, delivery: Delivery) -> datetime:
    return (delivery.replayed_at or delivery.created_at) + DELIVERY_MAX_AGE


def backoff_delay(*, attempts: int, rng: random.Random | None = None) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 5 s doubling with ±25 % jitter (so an
    endpoint coming back is not hit by every retry at once), never more than an hour."""
    base = BACKOFF_BASE_SECONDS * 2 ** min(max(attempts - 1, 0), 20)
    jitter = (rng or random).uniform(0.75, 1.25)
    return timedelta(seconds=min(base * jitter, BACKOFF_CAP_SECONDS))


# --- Claiming -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claimed:
    id: int
    webhook_id: str
    url: str
    secret: str
    body: bytes
    attempts: int
    deadline: datetime


@dataclass
class _ClaimRound:
    claimed: list[_Claimed]
    lease_until: datetime
    superseded: int
    deferred: int


@dataclass(frozen=True)
class _Row:
    id: int
    endpoint_id: int
    account_id: int
    account_version: int
    leased_until: datetime | None

    def in_flight(self, now: datetime) -> bool:
        return self.leased_until is not None and self.leased_until > now

    @property
    def order(self) -> tuple[int, int]:
        return (self.account_version, self.id)


def _locked(queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
    # SQLite has one writer at a time and no row locks; the guarded UPDATEs below keep it safe.
    if connection.vendor == "postgresql":
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset


def _supersede(*, ids: Iterable[int], by: int, now: datetime) -> tuple[int, int]:
    """Mark these older deliveries superseded by `by`. Returns (superseded, held elsewhere):
    a row another transaction holds right now (a claimer about to send it, or a worker
    recording its outcome) is left alone, and may be in flight."""
    ids = list(ids)
    if not ids:
        return 0, 0
    lockable = list(
        _locked(
            Delivery.objects.filter(pk__in=ids, status__in=OPEN_DELIVERY_STATUSES).filter(
                Q(leased_until__isnull=True) | Q(leased_until__lte=now)
            )
        ).values_list("id", flat=True)
    )
    done = Delivery.objects.filter(pk__in=lockable).update(
        status=DeliveryStatus.SUPERSEDED, superseded_by_id=by, leased_until=None
    )
    return done, len(ids) - len(lockable)


def _claim(*, now: datetime, seen: set[int], size: int) -> _ClaimRound:
    lease_until = now + _lease(size)
    superseded = deferred = 0
    with transaction.atomic():
        due = Delivery.objects.filter(
            status__in=OPEN_DELIVERY_STATUSES,
            next_attempt_at__lte=now,
            endpoint__is_enabled=True,
        ).order_by("next_attempt_at", "id")
        if seen:
            # Once per call: a row this call already tried (a retry fell due during a long
            # call) waits for a later call. Left out by the query, not after its limit: a
            # page of rows tried already must not hide the due ones behind it.
            due = due.exclude(pk__in=seen)
        candidates = list(
            _locked(due).values_list(
                "id", "endpoint_id", "account_id", "account_version", "event_type"
            )[:size]
        )
        if not candidates:
            return _ClaimRound([], lease_until, 0, 0)
        to_send, ended = _sessions_revokes_due(
            [c for c in candidates if c[4] == AccessEvent.SESSIONS_REVOKE]
        )
        superseded += ended
        access = [c for c in candidates if c[4] != AccessEvent.SESSIONS_REVOKE]
        if access:
            sent, access_superseded, deferred = _claim_access(access=access, now=now)
            superseded += access_superseded
            to_send.extend(sent)
        if to_send:
            # Guarded: on SQLite another process may have claimed the same rows meanwhile.
            Delivery.objects.filter(
                pk__in=to_send, status__in=OPEN_DELIVERY_STATUSES, next_attempt_at__lte=now
            ).update(next_attempt_at=lease_until, leased_until=lease_until)
        rows = list(
            Delivery.objects.filter(pk__in=to_send, leased_until=lease_until)
            .order_by("id")
            .values(
                "id",
                "webhook_id",
                "payload",
                "attempts",
                "created_at",
                "replayed_at",
                "endpoint__url",
                "endpoint__secret",
            )
        )
    claimed = [
        _Claimed(
            id=row["id"],
            webhook_id=row["webhook_id"],
            url=row["endpoint__url"],
            secret=row["endpoint__secret"],
            body=json.dumps(row["payload"], separators=(",", ":")).encode("utf-8"),
            attempts=row["attempts"],
            deadline=(row["replayed_at"] or row["created_at"]) + DELIVERY_MAX_AGE,
        )
        for row in rows
    ]
    return _ClaimRound(claimed, lease_until, superseded, deferred)


# The account states in which a product must still end its sessions: blocked (step 1 of a
# staged revocation) or revoked.
_SESSIONS_END_IN = (AccessStatus.REVOKED_PENDING, AccessStatus.REVOKED)
SESSIONS_REVOKE_ENDED = "not sent: the account's access was given back (the revocation ended)"


def _sessions_revokes_due(revokes: list[tuple[int, int, int, int, str]]) -> tuple[list[int], int]:
    """Of due access.sessions_revoke events (locked by this claim), the ids to send now, and
    how many were closed unsent: one whose account has its access back (the revocation was
    abandoned, or access restored after it) would end the sessions of people who may now sign
    in; a product carries out a session revocation whatever its version. Decided when sending,
    since a delivery can wait days (failing, or its endpoint disabled)."""
    if not revokes:
        return [], 0
    still = set(
        Account.objects.filter(
            pk__in={c[2] for c in revokes}, access_status__in=_SESSIONS_END_IN
        ).values_list("pk", flat=True)
    )
    ended = [c[0] for c in revokes if c[2] not in still]
    if ended:
        Delivery.objects.filter(pk__in=ended, status__in=OPEN_DELIVERY_STATUSES).update(
            status=DeliveryStatus.SUPERSEDED, leased_until=None, last_error=SESSIONS_REVOKE_ENDED
        )
    return [c[0] for c in revokes if c[2] in still], len(ended)


def _claim_access(
    *, access: list[tuple[int, int, int, int, str]], now: datetime
) -> tuple[list[int], int, int]:
    """Of due access events (locked by this claim), the ids to send now; the rest superseded or
    deferred. Returns (ids to send, superseded count, deferred count)."""
    account_ids = {c[2] for c in access}
    endpoint_ids = {c[1] for c in access}
    candidate_ids = {c[0] for c in access}
    groups: dict[tuple[int, int], list[_Row]] = defaultdict(list)
    siblings = (
        Delivery.objects.filter(
            account_id__in=account_ids,
            endpoint_id__in=endpoint_ids,
            status__in=OPEN_DELIVERY_STATUSES,
        )
        .exclude(event_type=AccessEvent.SESSIONS_REVOKE)
        .values_list("id", "endpoint_id", "account_id", "account_version", "leased_until")
    )
    for row in map(lambda values: _Row(*values), siblings):
        groups[(row.endpoint_id, row.account_id)].append(row)
    delivered = {
        (r["endpoint_id"], r["account_id"]): r["version"]
        for r in Delivery.objects.filter(
            account_id__in=account_ids,
            endpoint_id__in=endpoint_ids,
            status=DeliveryStatus.DELIVERED,
        )
        .exclude(event_type=AccessEvent.SESSIONS_REVOKE)
        .values("endpoint_id", "account_id")
        .annotate(version=Max("account_version"))
        .order_by()
    }
    send: list[int] = []
    superseded = deferred = 0
    wanted_groups = {(c[1], c[2]) for c in access}
    for key in wanted_groups:
        rows = groups.get(key, [])
        if not rows:
            continue
        newest = max(rows, key=lambda r: r.order)
        older = [r for r in rows if r is not newest]
        done, held = _supersede(
            ids=[r.id for r in older if not r.in_flight(now)], by=newest.id, now=now
        )
        superseded += done
        if newest.id not in candidate_ids:
            continue  # not due (in backoff) or in flight: it goes on its own schedule
        if held or any(r.in_flight(now) for r in older):
            # An older version's POST is (or may be about to be) in flight at another worker:
            # send this one after it.
            Delivery.objects.filter(pk=newest.id).update(
                next_attempt_at=now + timedelta(seconds=DEFER_SECONDS)
            )
            deferred += 1
            continue
        high = delivered.get(key)
        if high is not None and newest.account_version < high:
            # Never send a version lower than one the endpoint already received.
            holder = (
                Delivery.objects.filter(
                    endpoint_id=key[0],
                    account_id=key[1],
                    status=DeliveryStatus.DELIVERED,
                    account_version=high,
                )
                .exclude(event_type=AccessEvent.SESSIONS_REVOKE)
                .values_list("id", flat=True)
                .first()
            )
            Delivery.objects.filter(pk=newest.id).update(
                status=DeliveryStatus.SUPERSEDED, superseded_by_id=holder, leased_until=None
            )
            superseded += 1
            continue
        send.append(newest.id)
    return send, superseded, deferred


# --- Sending --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


_pool: urllib3.PoolManager | None = None
_executor: ThreadPoolExecutor | None = None
_setup_lock = threading.Lock()


def _http() -> tuple[urllib3.PoolManager, ThreadPoolExecutor]:
    # One per process (django-q2 forks its workers: made lazily, after the fork). The pool keeps
    # keep-alive connections per endpoint host, up to one per thread.
    global _pool, _executor
    with _setup_lock:
        threads = settings.JANITOR_DELIVERY_THREADS
        if _pool is None:
            _pool = urllib3.PoolManager(num_pools=64, maxsize=threads, block=False)
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="delivery")
        return _pool, _executor


def signed_headers(*, webhook_id: str, secret: str, body: bytes, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt, signed at `at` (timezone-aware UTC)."""
    return {
        "content-type": "application/json",
        "user-agent": "Janitor-Webhooks/1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(floor(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }


def _post(pool: urllib3.PoolManager, delivery: _Claimed) -> _Outcome:
    started = time.perf_counter()
    try:
        # Signed now, at each attempt: a retry carries a fresh timestamp, the same webhook-id.
        headers = signed_headers(
            webhook_id=delivery.webhook_id,
            secret=delivery.secret,
            body=delivery.body,
            at=datetime.now(UTC),
        )
        response = pool.request(
            "POST",
            delivery.url,
            body=delivery.body,
            headers=headers,
            timeout=urllib3.Timeout(total=settings.JANITOR_DELIVERY_TIMEOUT_SECONDS),
            retries=False,
            redirect=False,
        )
        status = response.status
        error = ""
        if not 200 <= status < 300:
            text = response.data[:200].decode("utf-8", errors="replace").strip()
            error = f"HTTP {status}" + (f": {text}" if text else "")
    except Exception as exc:  # every failure is an attempt to record, never a crashed worker
        status = None
        error = f"{exc.__class__.__name__}: {exc}"
    return _Outcome(status, error[:ERROR_TEXT_MAX], (time.perf_counter() - started) * 1000)


def _send(claimed: list[_Claimed]) -> list[_Outcome]:
    pool, executor = _http()
    if len(claimed) == 1:
        return [_post(pool, claimed[0])]
    return list(executor.map(lambda d: _post(pool, d), claimed))


# --- Recording ------------------------------------------------------------------------------


def _record(
    *, claimed: list[_Claimed], outcomes: list[_Outcome], lease_until: datetime, now: datetime
) -> None:
    delivered: dict[int, list[int]] = defaultdict(list)
    failed: list[tuple[_Claimed, _Outcome]] = []
    for delivery, outcome in zip(claimed, outcomes, strict=True):
        if outcome.ok:
            assert outcome.status_code is not None
            delivered[outcome.status_code].append(delivery.id)
        else:
            failed.append((delivery, outcome))
    with transaction.atomic():
        # Every attempt happened, whatever became of the lease: each one is on the record.
        DeliveryAttempt.objects.bulk_create(
            [
                DeliveryAttempt(
                    delivery_id=delivery.id,
                    at=now,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    duration_ms=round(outcome.duration_ms, 2),
                )
                for delivery, outcome in zip(claimed, outcomes, strict=True)
            ]
        )
        for status_code, ids in delivered.items():
            Delivery.objects.filter(pk__in=ids, leased_until=lease_until).update(
                status=DeliveryStatus.DELIVERED,
                delivered_at=now,
                attempts=F("attempts") + 1,
                last_attempt_at=now,
                last_status_code=status_code,
                last_error="",
                leased_until=None,
            )
        for delivery, outcome in failed:
            attempts = delivery.attempts + 1
            if now >= delivery.deadline:
                status, next_at = DeliveryStatus.DEAD, now
            else:
                status = DeliveryStatus.FAILING
                # The last try falls on the deadline itself, not after it.
                next_at = min(now + backoff_delay(attempts=attempts), delivery.deadline)
            Delivery.objects.filter(pk=delivery.id, leased_until=lease_until).update(
                status=status,
                attempts=F("attempts") + 1,
                last_attempt_at=now,
                last_status_code=outcome.status_code,
                last_error=outcome.error,
                next_attempt_at=next_at,
                leased_until=None,
            )
    if failed:
        dead = sum(1 for d, _ in failed if now >= d.deadline)
        logger.warning(
            "%s deliveries failed (%s dead); first: %s", len(failed), dead, failed[0][1].error
        )


# --- Entry points ---------------------------------------------------------------------------


def deliveries_deliver_due(*, limit: int | None = None, now: datetime | None = None) -> int:
    """Deliver every due delivery once (one attempt each); returns the attempts made.

    `now` (tests) fixes the clock that decides what is due and when retries fall; signatures
    always carry the real time, as receivers check it."""

    def clock() -> datetime:
        return now if now is not None else timezone.now()

    seen: set[int] = set()
    made = 0
    waited = 0.0
    while limit is None or made < limit:
        size = settings.JANITOR_DELIVERY_BATCH
        if limit is not None:
            size = min(size, limit - made)
        claim = _claim(now=clock(), seen=seen, size=size)
        if not claim.claimed:
            if claim.superseded:
                continue  # progress: what was superseded made room for others
            if claim.deferred and now is None and waited < DEFER_MAX_WAIT_SECONDS:
                time.sleep(DEFER_SECONDS)
                waited += DEFER_SECONDS
                continue
            break
        seen.update(d.id for d in claim.claimed)
        outcomes = _send(claim.claimed)
        _record(
            claimed=claim.claimed, outcomes=outcomes, lease_until=claim.lease_until, now=clock()
        )
        made += len(claim.claimed)
    return made


def deliveries_run_queued(*, budget_seconds: float = QUEUED_RUN_BUDGET_SECONDS) -> int:
    """What the queued task runs: deliver what is due, within a time budget (then queue a
    successor for the rest)."""
    try:
        cache.delete(KICK_KEY)  # from here on, a new commit queues a task of its own
    except Exception:
        logger.warning("could not clear the delivery kick flag", exc_info=True)
    started = time.monotonic()
    chunk = settings.JANITOR_DELIVERY_BATCH
    made = 0
    fanned_out = False
    while True:
        attempts = deliveries_deliver_due(limit=chunk)
        made += attempts
        if attempts < chunk:
            return made
        if not fanned_out and not settings.Q_CLUSTER.get("sync"):
            # A backlog: ask for one more worker (it does the same while the backlog lasts, so
            # idle workers join one by one; the kick flag keeps at most one task waiting).
            _kick()
            fanned_out = True
        if time.monotonic() - started > budget_seconds:
            _kick()
            return made


def deliveries_kick_on_commit() -> None:
    """After the current transaction commits, queue a delivery task (django-q2). Outside a
    transaction it queues now."""
    # One kick per transaction is enough (an import or a night's audit may change thousands
    # of accounts in one): a kick registered earlier in it, in this savepoint or an outer one,
    # commits or rolls back together with these rows.
    pending = getattr(connection, "run_on_commit", None) or []
    if connection.in_atomic_block and any(entry[1] is _kick for entry in pending):
        return
    transaction.on_commit(_kick, robust=True)


_broker: Broker | None = None


def _queue_broker() -> Broker:
    # One broker (one Redis connection) per process, not one per task queued.
    global _broker
    if _broker is None:
        from django_q.brokers import get_broker

        _broker = get_broker()
    return _broker


def _kick() -> None:
    from django_q.tasks import async_task

    try:
        if not cache.add(KICK_KEY, "1", timeout=KICK_TTL_SECONDS):
            return  # a task is queued and has not started: it will see these rows
    except Exception:
        logger.warning("delivery kick flag unavailable; queueing anyway", exc_info=True)
    try:
        async_task(PROCESS_TASK, save=False, task_name="deliveries", broker=_queue_broker())
    except Exception:
        # The sweeper schedule delivers them within a minute.
        logger.exception("could not queue a delivery task; the sweeper will deliver")
        try:
            cache.delete(KICK_KEY)
        except Exception:
            pass


REPLAYABLE_STATUSES = (DeliveryStatus.DEAD, DeliveryStatus.FAILING, DeliveryStatus.DELIVERED)


def delivery_replay(*, delivery: Delivery, actor: str, actor_user: User | None = None) -> Delivery:
    """Queue `delivery` again as a new attempt (same webhook-id, a fresh three-day window).

    Refused for a superseded or pending one, one in flight, one whose endpoint is disabled, and
    an access event older than another for the same account and endpoint (the product would
    drop it as stale: replay the newest instead)."""
    now = timezone.now()
    with transaction.atomic():
        locked = (
            Delivery.objects.select_for_update()
            .select_related("endpoint")
            .filter(pk=delivery.pk)
            .first()
        )
        if locked is None:  # the retention purge took it since the page was read
            raise DeliveryGone("This delivery has been purged (retention): nothing to replay.")
        if locked.status not in REPLAYABLE_STATUSES:
            raise DeliveryConflict(
                f"This delivery is {locked.get_status_display().lower()}: nothing to replay."
            )
        if locked.leased_until is not None and locked.leased_until > now:
            raise DeliveryConflict("This delivery is being sent right now; try again shortly.")
        if not locked.endpoint.is_enabled:
            raise DeliveryError(f"{locked.endpoint.name} is disabled: enable it first.")
        if locked.event_type != AccessEvent.SESSIONS_REVOKE:
            newer = (
                Delivery.objects.filter(
                    endpoint_id=locked.endpoint_id,
                    account_id=locked.account_id,
                    account_version__gt=locked.account_version,
                )
                .exclude(event_type=AccessEvent.SESSIONS_REVOKE)
                .order_by("-account_version")
                .values_list("account_version", flat=True)
                .first()
            )
            if newer is not None:
                raise DeliveryError(
                    f"A newer event (version {newer}) exists for this account and endpoint: "
                    "the product would drop this one as stale. Replay the newest instead."
                )
        Delivery.objects.filter(pk=locked.pk).update(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            replayed_at=now,
            replayed_by=actor,
            superseded_by=None,
            leased_until=None,
        )
        endpoint_change_record(
            endpoint=locked.endpoint,
            kind=EndpointChangeKind.DELIVERY_REPLAYED,
            actor=actor,
            actor_user=actor_user,
            details={
                "delivery": locked.pk,
                "webhook_id": locked.webhook_id,
                "was": locked.status,
            },
        )
        deliveries_kick_on_commit()
    logger.info("delivery %s (%s) replayed by %s", locked.pk, locked.webhook_id, actor)
    locked.refresh_from_db()
    return locked


# --- Retention ------------------------------------------------------------------------------

FINISHED_DELIVERY_STATUSES = (
    DeliveryStatus.DELIVERED,
    DeliveryStatus.SUPERSEDED,
    DeliveryStatus.DEAD,
)
# A revocation in these may still read its access.sessions_revoke deliveries: a retry resends
# one still being tried and replaces one that gave up (session_revocations_reask).
_UNFINISHED_REVOCATION_STATUSES = (
    RevocationStatus.PENDING,
    RevocationStatus.APPROVED,
    RevocationStatus.FAILED,
)


def deliveries_purge(
    *, older_than: datetime, batch_size: int, now: datetime | None = None
) -> tuple[int, int]:
    """Delete finished deliveries (delivered, superseded, dead) created before `older_than`,
    with their attempts, `batch_size` a transaction. Returns (deliveries, attempts) deleted;
    idempotent.

    Kept whatever their age: open ones (pending, failing) and any still leased; the finished
    ones of an endpoint and account that still has an open one (the claim reads the highest
    version delivered there, so an old event is never sent after a newer one); and those a
    revocation not yet finished may still read. A kept delivery superseded by a deleted one
    loses the link (superseded_by is SET NULL), as does a finished revocation's row."""
    now = now or timezone.now()
    open_sibling = Delivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"),
        account_id=OuterRef("account_id"),
        status__in=OPEN_DELIVERY_STATUSES,
    )
    revocation_reads = SessionRevocation.objects.filter(
        delivery_id=OuterRef("pk"), revocation__status__in=_UNFINISHED_REVOCATION_STATUSES
    )
    purgeable = (
        Delivery.objects.filter(created_at__lt=older_than, status__in=FINISHED_DELIVERY_STATUSES)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now))
        .exclude(Exists(open_sibling))
        .exclude(Exists(revocation_reads))
        .order_by("pk")
    )
    deliveries = attempts = 0
    while True:
        with transaction.atomic():
            # Locked (skipping rows a replay or a claim holds, whose status re-check then finds
            # them gone), so a delivery replayed meanwhile is never deleted as it reopens.
            ids = list(_locked(purgeable).values_list("pk", flat=True)[:batch_size])
            if not ids:
                return deliveries, attempts
            # The status again: SQLite takes no row locks.
            _, per_model = (
                Delivery.objects.filter(pk__in=ids, status__in=FINISHED_DELIVERY_STATUSES)
                .only("pk")
                .delete()
            )
        deliveries += per_model.get(Delivery._meta.label, 0)
        attempts += per_model.get(DeliveryAttempt._meta.label, 0)


def delivery_schedule_ensure() -> list[str]:
    """Create or correct the every-minute sweeper schedule (lost tasks, due retries); idempotent."""
    return minute_schedules_ensure([SWEEP_SCHEDULE])


__all__ = [
    "DELIVERY_MAX_AGE",
    "DeliveryConflict",
    "DeliveryGone",
    "DeliveryError",
    "backoff_delay",
    "deliveries_deliver_due",
    "deliveries_kick_on_commit",
    "deliveries_purge",
    "deliveries_run_queued",
    "delivery_replay",
    "delivery_schedule_ensure",
    "signed_headers",
]
