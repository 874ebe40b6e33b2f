"""The sweeper re-sends what no worker finished, including after a SIGKILL and a flushed broker."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest
import redis
from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

from reconciliation.models import WebhookAttempt, WebhookStatus
from reconciliation.services.webhooks import (
    WEBHOOK_SWEEP_GRACE_SECONDS,
    webhook_events_sweep,
    webhook_schedules_ensure,
)
from sandbox.stripe_fake import TEST_API_KEY
from tests.factories import AccountFactory, WebhookEventFactory
from tests.reconciliation.webhook_support import sub_obj

BASE_DIR = Path(settings.BASE_DIR)


def _event(**kwargs):
    obj = sub_obj("sub_sweep", "cus_sweep")
    return WebhookEventFactory(
        type="customer.subscription.created",
        payload={"id": "x", "type": "customer.subscription.created", "data": {"object": obj}},
        customer_id="cus_sweep",
        **kwargs,
    )


@pytest.mark.smoke
@pytest.mark.django_db
def test_sweeper_resends_only_due_unfinished_events(django_capture_on_commit_callbacks):
    AccountFactory(stripe_customer_id="cus_sweep")
    now = timezone.now()
    past, future = now - timedelta(seconds=5), now + timedelta(seconds=60)
    stuck = _event(status=WebhookStatus.PENDING, next_attempt_at=past)
    legacy_stuck = _event(
        status=WebhookStatus.PENDING,
        next_attempt_at=None,
        received_at=now - timedelta(seconds=WEBHOOK_SWEEP_GRACE_SECONDS + 1),
    )
    retry_due = _event(status=WebhookStatus.FAILED, attempts=1, next_attempt_at=past)
    fresh = _event(status=WebhookStatus.PENDING, next_attempt_at=future)
    backing_off = _event(status=WebhookStatus.FAILED, attempts=1, next_attempt_at=future)
    finished = _event(status=WebhookStatus.PROCESSED, next_attempt_at=past)
    dead = _event(status=WebhookStatus.DEAD, next_attempt_at=past)

    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_events_sweep(now=now) == 3
    for event in (stuck, legacy_stuck, retry_due):
        event.refresh_from_db()
        assert event.status == WebhookStatus.PROCESSED
        assert WebhookAttempt.objects.get(event=event, outcome="processed").trigger == "sweeper"
    for event, status in (
        (fresh, WebhookStatus.PENDING),
        (backing_off, WebhookStatus.FAILED),
        (finished, WebhookStatus.PROCESSED),
        (dead, WebhookStatus.DEAD),
    ):
        event.refresh_from_db()
        assert event.status == status
    assert not WebhookAttempt.objects.filter(event__in=[fresh, backing_off, finished, dead])


@pytest.mark.django_db
def test_sweeper_pushes_back_what_it_sent(django_capture_on_commit_callbacks):
    now = timezone.now()
    stuck = _event(status=WebhookStatus.PENDING, next_attempt_at=now - timedelta(seconds=1))
    # The queue has not run it yet (callbacks not executed): the next sweep must not double it.
    with django_capture_on_commit_callbacks(execute=False):
        assert webhook_events_sweep(now=now) == 1
    stuck.refresh_from_db()
    assert stuck.next_attempt_at == now + timedelta(seconds=WEBHOOK_SWEEP_GRACE_SECONDS)
    with django_capture_on_commit_callbacks(execute=False):
        assert webhook_events_sweep(now=now + timedelta(seconds=30)) == 0


@pytest.mark.django_db
def test_schedules_are_ensured_idempotently():
    first = webhook_schedules_ensure()
    assert len(first) == 2
    assert webhook_schedules_ensure() == []
    sweeper = Schedule.objects.get(name="webhooks: sweeper")
    assert (sweeper.func, sweeper.schedule_type, sweeper.minutes) == (
        "reconciliation.tasks.webhook_events_sweep_task",
        Schedule.MINUTES,
        1,
    )
    Schedule.objects.filter(pk=sweeper.pk).update(minutes=30)
    Schedule.objects.create(name="webhooks: catch-up", func="x.y", schedule_type="I", minutes=1)
    assert sorted(webhook_schedules_ensure()) == [
        "removed 1 duplicate(s) of webhooks: catch-up",
        "updated webhooks: sweeper",
    ]
    assert Schedule.objects.filter(name__startswith="webhooks:").count() == 2
    assert Schedule.objects.get(name="webhooks: sweeper").minutes == 1


# --- A real cluster, killed ---------------------------------------------------------------------

EVENTS = 24
SEED = f"""
from datetime import timedelta
from django.db import transaction
from django.utils import timezone
from accounts.models import Account
from reconciliation.services.webhooks import webhook_event_store
now = int(timezone.now().timestamp())
for n in range({EVENTS}):
    Account.objects.create(
        email=f"kill{{n}}@example.com", stripe_customer_id=f"cus_kill{{n}}",
        access_status="grace_period", grace_ends_at=timezone.now() + timedelta(days=3),
    )
with transaction.atomic():  # enqueued to the Redis broker after this commit
    for n in range({EVENTS}):
        webhook_event_store(event={{
            "id": f"evt_kill{{n}}", "object": "event", "type": "invoice.paid", "created": now,
            "data": {{"object": {{"id": f"in_kill{{n}}", "object": "invoice",
                "customer": f"cus_kill{{n}}", "parent": {{"subscription_details":
                {{"subscription": f"sub_kill{{n}}"}}}}}}}},
        }})
"""
SWEEP = f"""
from datetime import timedelta
from django.utils import timezone
from reconciliation.services.webhooks import webhook_events_sweep
later = timezone.now() + timedelta(seconds={WEBHOOK_SWEEP_GRACE_SECONDS + 1})
print(webhook_events_sweep(now=later))
"""


def _kill_database_url() -> str:
    url = urlparse(settings.DATABASE_URL)
    return url._replace(path=url.path + "_kill").geturl()


def _admin_connect(url: str) -> psycopg.Connection:
    return psycopg.connect(urlparse(url)._replace(path="/postgres").geturl(), autocommit=True)


def _manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _cluster(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=BASE_DIR,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: killed whole, monitor and workers
    )


def _wait_for(query: str, predicate, db: psycopg.Connection, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        value = db.execute(query).fetchone()[0]
        if predicate(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


PROCESSED = "SELECT count(*) FROM reconciliation_webhookevent WHERE status = 'processed'"


@pytest.mark.postgres
@pytest.mark.redis
def test_sigkilled_cluster_and_flushed_redis_still_end_with_every_event_applied_once(
    stripe_fake, tmp_path
):
    url = _kill_database_url()
    name = urlparse(url).path.lstrip("/")
    with _admin_connect(url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "janitor.settings",
        "DATABASE_URL": url,
        "REDIS_URL": settings.REDIS_URL,
        "JANITOR_QUEUE_BROKER": "redis",
        "JANITOR_QUEUE_NAME": "h3kill",
        "JANITOR_QUEUE_WORKERS": "2",
        "JANITOR_CACHE_PREFIX": "h3kill",
        "STRIPE_API_BASE": stripe_fake.base_url,
        "STRIPE_API_KEY": TEST_API_KEY,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
    }
    broker = redis.from_url(settings.REDIS_URL)
    broker.flushdb()
    _manage(env, "migrate", "-v0")
    for n in range(EVENTS):
        stripe_fake.add_subscription(f"sub_kill{n}", customer=f"cus_kill{n}", status="active")
    # Each Stripe read takes a while, so the kill lands while workers are mid-task.
    stripe_fake.delay("/v1/subscriptions/", 0.3, times=EVENTS)
    _manage(env, "shell", "-c", SEED)
    assert broker.llen("django_q:h3kill:q") == EVENTS

    log = tmp_path / "qcluster.log"
    db = psycopg.connect(url, autocommit=True)
    cluster = _cluster(env, log)
    try:
        done_before_kill = _wait_for(PROCESSED, lambda n: n >= 2, db, timeout=30)
        os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait(timeout=10)
        done_before_kill = db.execute(PROCESSED).fetchone()[0]
        assert 2 <= done_before_kill < EVENTS, log.read_text()[-2000:]
        broker.flushdb()  # whatever the broker still held is gone too

        cluster = _cluster(env, log)
        time.sleep(2)
        # Without the sweeper nothing comes back: the broker lost those tasks for good.
        assert db.execute(PROCESSED).fetchone()[0] == done_before_kill
        swept = int(_manage(env, "shell", "-c", SWEEP).strip().splitlines()[-1])
        assert swept == EVENTS - done_before_kill
        assert _wait_for(PROCESSED, lambda n: n == EVENTS, db, timeout=40) == EVENTS, (
            log.read_text()[-3000:]
        )
    finally:
        if cluster.poll() is None:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait(timeout=10)

    # Exactly once in effect: one finished attempt per event, one access change per account.
    rows = db.execute(
        "SELECT e.provider_event_id, e.attempts, count(a.id), "
        "count(a.id) FILTER (WHERE a.outcome = 'processed') "
        "FROM reconciliation_webhookevent e LEFT JOIN reconciliation_webhookattempt a "
        "ON a.event_id = e.id GROUP BY e.id"
    ).fetchall()
    assert len(rows) == EVENTS
    assert all(row[1:] == (1, 1, 1) for row in rows), rows
    audit = db.execute(
        "SELECT a.source, count(*) FROM accounts_accessaudit a GROUP BY a.source"
    ).fetchall()
    assert sorted(audit) == sorted((f"event:evt_kill{n}", 1) for n in range(EVENTS))
    statuses = db.execute(
        "SELECT access_status, count(*) FROM accounts_account GROUP BY access_status"
    ).fetchall()
    assert statuses == [("active", EVENTS)]
    db.close()
    broker.flushdb()
