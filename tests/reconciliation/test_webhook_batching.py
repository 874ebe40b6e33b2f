"""A web process hands stored events to the queue a batch at a time (intake.py's batcher):
one task for the events of a window, sent from a thread after the 200; what it could not send
is left to the sweeper; a batch task processes each event once."""

import logging
import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from reconciliation.models import WebhookAttempt, WebhookEvent, WebhookStatus
from reconciliation.services.webhooks import (
    PROCESS_BATCH_TASK,
    WEBHOOK_SWEEP_GRACE_SECONDS,
    intake,
    webhook_enqueue_batching_start,
    webhook_enqueue_batching_stop,
    webhook_events_sweep,
)
from reconciliation.tasks import webhook_events_process_task
from tests.factories import AccountFactory
from tests.reconciliation.webhook_support import SECRET, body_for, post_signed, sub_obj

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]


@pytest.fixture(autouse=True)
def _no_batcher_left():
    yield
    webhook_enqueue_batching_stop()


@pytest.fixture
def queue(monkeypatch):
    """django-q2's own Redis broker on a list of this test's own, with tasks queued for real
    (the suite otherwise runs them inline)."""
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "REDIS", settings.REDIS_URL)
    monkeypatch.setattr(Conf, "DJANGO_REDIS", None)
    broker = Redis(list_key=f"test-batch-{uuid.uuid4().hex}")
    monkeypatch.setattr(intake, "_broker", broker)
    yield broker
    broker.delete_queue()


def _tasks(broker: Redis) -> list[dict]:
    raw = broker.connection.lrange(broker.list_key, 0, -1)
    return [SignedPackage.loads(item) for item in raw]


def _wait_for_tasks(broker: Redis, *, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.queue_size():
            time.sleep(0.2)  # let a second batch, if any, land too
            return _tasks(broker)
        time.sleep(0.02)
    return []


def _post_events(client, capture, count: int, prefix: str) -> list[int]:
    for n in range(count):
        body = body_for(
            "customer.subscription.updated",
            sub_obj(f"sub_{prefix}{n}", f"cus_{prefix}{n}"),
            id=f"evt_{prefix}{n}",
        )
        with capture(execute=True):
            assert post_signed(client, body).status_code == 200
    return list(
        WebhookEvent.objects.filter(provider_event_id__startswith=f"evt_{prefix}")
        .order_by("pk")
        .values_list("pk", flat=True)
    )


@pytest.mark.redis
def test_events_stored_within_the_window_go_to_the_queue_as_one_task(
    client, django_capture_on_commit_callbacks, queue
):
    # A window long enough for the five requests on a busy machine; the thread then sends.
    assert webhook_enqueue_batching_start(window_ms=3000)
    ids = _post_events(client, django_capture_on_commit_callbacks, 5, "batch")
    assert queue.queue_size() == 0  # answered before anything was sent: the thread sends
    tasks = _wait_for_tasks(queue)
    assert len(tasks) == 1
    assert tasks[0]["func"] == PROCESS_BATCH_TASK
    assert sorted(tasks[0]["args"][0]) == ids
    # Only handed over: the worker that takes the task processes them.
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookStatus.PENDING}


@pytest.mark.redis
def test_a_batch_never_holds_more_than_the_maximum(
    client, django_capture_on_commit_callbacks, queue, monkeypatch
):
    monkeypatch.setattr(intake, "ENQUEUE_BATCH_MAX", 3)
    assert webhook_enqueue_batching_start(window_ms=60_000)
    ids = _post_events(client, django_capture_on_commit_callbacks, 7, "max")
    assert webhook_enqueue_batching_stop() == 7
    tasks = _tasks(queue)
    assert [len(task["args"][0]) for task in tasks] == [3, 3, 1]
    assert sorted(i for task in tasks for i in task["args"][0]) == ids


@pytest.mark.redis
def test_stopping_sends_what_waits_at_once(client, django_capture_on_commit_callbacks, queue):
    # A window far longer than the test: only the stop (gunicorn's exit, atexit) sends them.
    assert webhook_enqueue_batching_start(window_ms=60_000)
    ids = _post_events(client, django_capture_on_commit_callbacks, 3, "stop")
    assert queue.queue_size() == 0
    assert webhook_enqueue_batching_stop() == 3
    tasks = _tasks(queue)
    assert [sorted(task["args"][0]) for task in tasks] == [ids]
    assert webhook_enqueue_batching_stop() == 0  # stopped: nothing more to send


@pytest.mark.redis
def test_a_broker_failure_is_logged_and_the_sweeper_sends_the_events_later(
    client, django_capture_on_commit_callbacks, queue, monkeypatch, caplog
):
    def refuse(task):
        raise ConnectionError("broker down")

    monkeypatch.setattr(queue, "enqueue", refuse)
    assert webhook_enqueue_batching_start(window_ms=50)
    with caplog.at_level(logging.ERROR, logger="janitor.webhooks"):
        ids = _post_events(client, django_capture_on_commit_callbacks, 2, "down")
        deadline = time.monotonic() + 5
        while "could not enqueue 2 webhook events" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.02)
    monkeypatch.undo()  # the broker is back (and the suite's inline queue with it)
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookStatus.PENDING}
    later = timezone.now() + timedelta(seconds=WEBHOOK_SWEEP_GRACE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_events_sweep(now=later) == len(ids)
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookStatus.PROCESSED}


def test_without_the_batcher_each_event_is_sent_in_its_request(
    client, django_capture_on_commit_callbacks
):
    assert not webhook_enqueue_batching_start(window_ms=0)
    assert not webhook_enqueue_batching_start(window_ms=50)  # the suite's queue runs inline
    AccountFactory(stripe_customer_id="cus_inline0")
    _post_events(client, django_capture_on_commit_callbacks, 1, "inline")
    # The suite's queue runs tasks inline: processed before the response came back.
    assert WebhookEvent.objects.get().status == WebhookStatus.PROCESSED


def test_a_batch_task_processes_each_event_once_and_one_failure_stops_no_other(
    client, django_capture_on_commit_callbacks, monkeypatch, caplog
):
    # Stored without a queue: nothing runs until the batch task does.
    monkeypatch.setattr(intake, "webhook_event_enqueue_after_store", lambda event_id: None)
    for n in range(3):
        AccountFactory(stripe_customer_id=f"cus_work{n}")
    ids = _post_events(client, django_capture_on_commit_callbacks, 3, "work")
    assert WebhookAttempt.objects.count() == 0

    from reconciliation.services.webhooks import processing

    real = processing.webhook_event_process

    def database_gone_for_the_second(*, event_id, trigger):
        if event_id == ids[1]:
            raise RuntimeError("connection lost")
        return real(event_id=event_id, trigger=trigger)

    monkeypatch.setattr(processing, "webhook_event_process", database_gone_for_the_second)
    with caplog.at_level(logging.ERROR, logger="janitor.webhooks"):
        result = webhook_events_process_task([ids[2], ids[0], ids[1], 999_999_999])
    assert result == {WebhookStatus.PROCESSED: 2, "error": 1, "missing": 1}
    assert f"webhook event {ids[1]} could not be processed" in caplog.text
    statuses = dict(WebhookEvent.objects.values_list("pk", "status"))
    assert statuses == {
        ids[0]: WebhookStatus.PROCESSED,
        ids[1]: WebhookStatus.PENDING,  # left to the sweeper
        ids[2]: WebhookStatus.PROCESSED,
    }
    monkeypatch.setattr(processing, "webhook_event_process", real)
    # Sent again (a broker redelivery, the sweeper): nothing is applied twice.
    again = webhook_events_process_task(ids)
    assert again == {WebhookStatus.PROCESSED: 3}
    assert WebhookAttempt.objects.count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the thread writes on a connection of its own
def test_with_the_orm_broker_the_thread_writes_the_task_and_holds_no_connection_when_idle(
    client, monkeypatch
):
    from django.db import connection

    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "ORM", "default")
    broker = ORM(list_key=f"test-orm-batch-{uuid.uuid4().hex[:8]}")
    monkeypatch.setattr(intake, "_broker", broker)

    def connections_to_this_database() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            )
            return cursor.fetchone()[0]

    before = connections_to_this_database()
    assert webhook_enqueue_batching_start(window_ms=100)
    for n in range(3):
        body = body_for(
            "customer.subscription.updated", sub_obj(f"sub_orm{n}", f"cus_orm{n}"), id=f"evt_orm{n}"
        )
        assert post_signed(client, body).status_code == 200  # committed: no test transaction
    ids = sorted(WebhookEvent.objects.values_list("pk", flat=True))
    deadline = time.monotonic() + 10
    while not OrmQ.objects.filter(key=broker.list_key).exists():
        assert time.monotonic() < deadline, "the batch never reached the ORM queue"
        time.sleep(0.05)
    time.sleep(0.3)
    tasks = [SignedPackage.loads(row.payload) for row in OrmQ.objects.filter(key=broker.list_key)]
    assert sorted(i for task in tasks for i in task["args"][0]) == ids
    # Idle again: the thread closed the connection it enqueued through.
    while connections_to_this_database() > before:
        assert time.monotonic() < deadline + 5, "the idle thread kept its connection"
        time.sleep(0.05)
