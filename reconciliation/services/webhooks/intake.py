"""Intake: count refusals, store a verified event once, enqueue its processing."""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from reconciliation.models import (
    WebhookEvent,
    WebhookStatus,
)
from reconciliation.services.webhooks.common import (
    PROCESS_BATCH_TASK,
    PROCESS_TASK,
    REJECTION_KEY,
    REJECTION_LAST_KEY,
    WEBHOOK_SWEEP_GRACE_SECONDS,
    EventInvalid,
    logger,
)

# --- Intake ---------------------------------------------------------------------------------


def webhook_rejection_record(*, kind: str, reason: str) -> None:
    """Count a refused delivery (kind in REJECTION_KINDS) and log it for the operators."""
    logger.warning("webhook rejected: %s (%s)", reason, kind)
    key = REJECTION_KEY.format(kind=kind)
    try:
        # add() then incr(): incr alone fails on a missing key, and add is atomic in Redis.
        cache.add(key, 0, timeout=None)
        cache.incr(key)
        cache.set(
            REJECTION_LAST_KEY,
            {"kind": kind, "reason": reason, "at": timezone.now().isoformat()},
            timeout=None,
        )
    except Exception:  # the counter is a convenience: never fail the answer over it
        logger.exception("could not count a webhook rejection")


def _epoch(value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventInvalid("event has no numeric created time")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):  # 1e20, NaN, before year 1...
        raise EventInvalid("event created time is out of range") from None


def _storable(value: str, name: str) -> str:
    """Text PostgreSQL can hold: no NUL, no lone surrogate (JSON allows both escaped)."""
    if "\x00" in value:
        raise EventInvalid(f"event {name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EventInvalid(f"event {name} is not valid Unicode") from None
    return value


_UNSTORABLE_ESCAPES = (
    "\\u0000",
    "\\ud8",
    "\\ud9",
    "\\uda",
    "\\udb",
    "\\udc",
    "\\udd",
    "\\ude",
    "\\udf",
)


def _json_storable(value: Any) -> Any:
    """The value with every NUL and lone surrogate in its text replaced by U+FFFD: JSON may
    carry both escaped, PostgreSQL's jsonb refuses both, and a refusal would be a 400 on
    every retry (the event lost) or abort a whole catch-up."""
    if isinstance(value, str):
        if "\x00" in value or any("\ud800" <= char <= "\udfff" for char in value):
            return "".join(
                "\ufffd" if char == "\x00" or "\ud800" <= char <= "\udfff" else char
                for char in value
            )
        return value
    if isinstance(value, dict):
        return {_json_storable(key): _json_storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_storable(item) for item in value]
    return value


def event_customer_id(event: dict[str, Any]) -> str:
    """The Stripe customer an event is about, or "" (e.g. a charge without a customer)."""
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        return ""
    if obj.get("object") == "customer":
        return str(obj.get("id") or "")
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return customer if isinstance(customer, str) else ""


def _api_version(event: dict[str, Any]) -> str:
    version = event.get("api_version")
    return version if isinstance(version, str) else ""


def webhook_event_store(
    *, event: dict[str, Any], source: str = "webhook", raw: str | None = None
) -> WebhookEvent | None:
    """Store a verified event once; return the new row, or None when it was already stored.

    One INSERT .. ON CONFLICT DO NOTHING: concurrent duplicate deliveries cannot both insert and
    need no read first. `raw` is the body as received, stored as is (no re-serialising).
    Processing is enqueued after the commit, and only for a newly stored event.
    """
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise EventInvalid("event has no id or type")
    created = _epoch(event.get("created"))
    # The columns Janitor looks events up by must be real ids: one holding a NUL or a lone
    # surrogate is refused. Free text elsewhere in the event is stored with them replaced.
    columns = {
        "provider_event_id": _storable(event_id, "id")[:255],
        "type": _storable(event_type, "type")[:100],
        "customer_id": _storable(event_customer_id(event), "customer")[:255],
        "api_version": _storable(_api_version(event), "api_version")[:64],
    }
    if raw is None or any(escape in raw.lower() for escape in _UNSTORABLE_ESCAPES):
        # Rare: only then is the whole event walked (the body stored is then re-serialised).
        storable = _json_storable(event)
        if storable != event:
            logger.warning("event %s: NUL or lone surrogate text replaced to store it", event_id)
            event, raw = storable, None
    now = timezone.now()
    row = WebhookEvent(
        **columns,
        created=created,
        payload=event,
        status=WebhookStatus.PENDING,
        attempts=0,
        last_error="",
        received_at=now,
        next_attempt_at=now + timedelta(seconds=WEBHOOK_SWEEP_GRACE_SECONDS),
        source=source,
    )
    row.pk = _insert_ignoring_duplicate(row, raw if raw is not None else json.dumps(event))
    if row.pk is None:
        return None
    row._state.adding = False
    transaction.on_commit(lambda: webhook_event_enqueue_after_store(row.pk))
    return row


_INSERT_COLUMNS = (
    "provider_event_id",
    "type",
    "created",
    "payload",
    "status",
    "attempts",
    "last_error",
    "received_at",
    "next_attempt_at",
    "source",
    "customer_id",
    "api_version",
)


def _insert_ignoring_duplicate(row: WebhookEvent, payload_text: str) -> int | None:
    ops = connection.ops
    table = ops.quote_name(WebhookEvent._meta.db_table)
    columns = ", ".join(ops.quote_name(name) for name in _INSERT_COLUMNS)
    payload_placeholder = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    placeholders = ", ".join(
        payload_placeholder if c == "payload" else "%s" for c in _INSERT_COLUMNS
    )
    params = [
        row.provider_event_id,
        row.type,
        ops.adapt_datetimefield_value(row.created),
        payload_text,
        row.status,
        row.attempts,
        row.last_error,
        ops.adapt_datetimefield_value(row.received_at),
        ops.adapt_datetimefield_value(row.next_attempt_at),
        row.source,
        row.customer_id,
        row.api_version,
    ]
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT ({ops.quote_name('provider_event_id')}) DO NOTHING RETURNING "
        f"{ops.quote_name('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchone()
    return found[0] if found else None


if TYPE_CHECKING:
    from django_q.brokers import Broker

_broker: Broker | None = None


def _queue_broker() -> Broker:
    # django-q2 builds a new broker, so a new Redis connection and handshake, per async_task
    # unless given one: that was a third of the endpoint's time. One per process is enough.
    global _broker
    if _broker is None:
        from django_q.brokers import get_broker

        _broker = get_broker()
    return _broker


def _task_send(func: str, *args: object, task_name: str, what: str) -> bool:
    """Hand one task to the queue; a broker failure is logged, not raised (the stored rows
    are the truth: the sweeper sends what was not sent)."""
    from django_q.tasks import async_task

    try:
        # save=False: the attempt history lives in WebhookAttempt; django-q's result table
        # would only add a pruning query per task to the monitor.
        async_task(func, *args, save=False, task_name=task_name, broker=_queue_broker())
        return True
    except Exception:
        logger.exception("could not enqueue %s; the sweeper will", what)
        return False


def webhook_events_enqueue(*, event_ids: list[int], trigger: str) -> int:
    """Hand events to the queue, one task each; returns how many were sent."""
    return sum(
        _task_send(
            PROCESS_TASK,
            event_id,
            trigger,
            task_name=f"webhook-{event_id}",
            what=f"webhook event {event_id}",
        )
        for event_id in event_ids
    )


# --- Enqueueing from a web process, a batch at a time -----------------------------------------
# Handing one event to django-q2 costs more CPU than the rest of the endpoint's own work
# (a task id, a signed pickle, a broker round trip: docs/benchmarks/webhooks.md). A web process
# where the batcher runs (gunicorn starts it in each worker: gunicorn.conf.py) answers 200 once
# the event is committed and leaves its id to a thread of its own, which sends the ids stored
# within JANITOR_WEBHOOK_ENQUEUE_BATCH_MS as one task. The row is the truth either way: ids a
# killed process had not sent yet are sent by the sweeper, as are those of a failed enqueue.
ENQUEUE_BATCH_MAX = 50


class _Batcher:
    def __init__(self, *, window: float, max_batch: int) -> None:
        self.window = window
        self.max_batch = max_batch
        self.pid = os.getpid()
        self.wake = threading.Condition()
        self.ids: list[int] = []
        self.stopping = False
        self.thread = threading.Thread(
            target=self._run, name="janitor-webhook-enqueue", daemon=True
        )

    def add(self, event_id: int) -> None:
        with self.wake:
            self.ids.append(event_id)
            if len(self.ids) == 1:
                self.wake.notify()

    def _run(self) -> None:
        from django.db import connections

        while True:
            with self.wake:
                idle = not self.ids and not self.stopping
            if idle:
                # The ORM broker enqueues through this thread's own database connection: an
                # idle thread holds none (a busy one keeps it from batch to batch).
                connections.close_all()
            with self.wake:
                while not self.ids and not self.stopping:
                    self.wake.wait()
                # The events stored within the window go in the same task.
                deadline = time.monotonic() + self.window
                while not self.stopping and (left := deadline - time.monotonic()) > 0:
                    self.wake.wait(left)
                if self.stopping:
                    break  # stop() sends what waits
            self.flush()
        connections.close_all()

    def flush(self) -> int:
        with self.wake:
            ids, self.ids = self.ids, []
        sent = 0
        for start in range(0, len(ids), self.max_batch):
            sent += _enqueue_batch(ids[start : start + self.max_batch])
        return sent

    def stop(self) -> int:
        """Stop the thread, let a batch it is sending finish, and send what waits now (at the
        process's exit). A batch still stuck after the wait (a broker that hangs) is left to
        the sweeper, as a killed process's would be."""
        with self.wake:
            self.stopping = True
            self.wake.notify()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=2)
        return self.flush()

    def running(self) -> bool:
        """Started in this process (not inherited over a fork), not stopped, thread alive."""
        return self.pid == os.getpid() and not self.stopping and self.thread.is_alive()


_batcher: _Batcher | None = None


def _enqueue_batch(event_ids: list[int]) -> int:
    """One task for `event_ids`; a broker failure is logged (the sweeper sends them later)."""
    from django.db import close_old_connections

    if not event_ids:
        return 0
    try:
        close_old_connections()  # the ORM broker writes from this thread's own connection
    except Exception:
        logger.exception("could not renew the enqueue thread's database connection")
    sent = _task_send(
        PROCESS_BATCH_TASK,
        event_ids,
        "queue",
        task_name=f"webhooks-{event_ids[0]}+{len(event_ids) - 1}",
        what=f"{len(event_ids)} webhook events ({event_ids[0]}..)",
    )
    return len(event_ids) if sent else 0


def webhook_enqueue_batching_start(*, window_ms: int | None = None) -> bool:
    """Send the ids of events this process stores in batches from a thread of its own, every
    `window_ms` (JANITOR_WEBHOOK_ENQUEUE_BATCH_MS; 0 keeps one enqueue per event in the
    request). Called by gunicorn in each new worker. Returns whether batching is on."""
    global _batcher
    from django.conf import settings
    from django_q.conf import Conf

    window_ms = settings.JANITOR_WEBHOOK_ENQUEUE_BATCH_MS if window_ms is None else window_ms
    if window_ms <= 0 or Conf.SYNC:  # a queue that runs tasks inline runs them in the request
        return False
    if _batcher is not None and _batcher.running():
        return True
    _batcher = _Batcher(window=window_ms / 1000, max_batch=ENQUEUE_BATCH_MAX)
    _batcher.thread.start()
    return True


def webhook_enqueue_batching_stop() -> int:
    """Stop batching in this process and send what waits; returns how many ids were sent."""
    global _batcher
    batcher, _batcher = _batcher, None
    if batcher is None or batcher.pid != os.getpid():
        return 0
    return batcher.stop()


atexit.register(webhook_enqueue_batching_stop)  # gunicorn's graceful stops and recycling


def webhook_event_enqueue_after_store(event_id: int) -> None:
    """After the commit of a newly stored event: to this process's batcher when it runs (and
    was started in this process, not inherited over a fork, and its thread is alive), else one
    task now."""
    batcher = _batcher
    if batcher is not None and batcher.running():
        batcher.add(event_id)
        return
    webhook_events_enqueue(event_ids=[event_id], trigger="queue")
