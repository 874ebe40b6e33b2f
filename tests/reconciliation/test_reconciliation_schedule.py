"""The nightly schedule: one run per night, however many clusters' schedulers fire."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Schedule
from django_q.scheduler import scheduler

from reconciliation.models import ReconciliationRun, RunStatus
from reconciliation.services.runs import (
    SCHEDULE_FUNC,
    SCHEDULE_NAME,
    reconciliation_run_start,
    reconciliation_schedule_ensure,
)
from reconciliation.tasks import reconciliation_scheduled
from tests.factories import AccountFactory


def _in_threads(target, n: int = 2) -> list:
    """Run target in n threads released together; each thread closes its own connection."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = target()
        except BaseException as exc:  # surfaced below: a thread's failure fails the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.django_db
@pytest.mark.smoke
def test_reconciliation_schedule_ensure_creates_one_cron_schedule_and_follows_the_setting(settings):
    settings.JANITOR_AUDIT_CRON = "30 2 * * *"
    reconciliation_schedule_ensure()
    reconciliation_schedule_ensure()
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.cron) == (
        SCHEDULE_FUNC,
        Schedule.CRON,
        "30 2 * * *",
    )
    assert (schedule.next_run.hour, schedule.next_run.minute) == (2, 30)
    # The nightly run may take longer than the cluster's default task timeout.
    assert "'timeout': 3600" in schedule.kwargs

    settings.JANITOR_AUDIT_CRON = "15 4 * * *"
    reconciliation_schedule_ensure()
    assert Schedule.objects.count() == 1
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.next_run.hour, schedule.next_run.minute) == (
        "15 4 * * *",
        4,
        15,
    )


@pytest.mark.django_db
def test_a_second_scheduled_trigger_the_same_night_starts_nothing(stripe_fake, settings):
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    assert reconciliation_scheduled() is not None
    assert reconciliation_scheduled() is None
    assert ReconciliationRun.objects.count() == 1
    # A person can still start one by hand.
    assert reconciliation_run_start(dry_run=True, triggered_by="admin@janitor.test") is not None


@pytest.mark.django_db
def test_a_run_whose_worker_died_does_not_block_the_next(stripe_fake):
    dead = ReconciliationRun.objects.create(
        status=RunStatus.RUNNING,
        progress={
            "phase": "listing",
            "updated_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        },
    )
    run = reconciliation_run_start(dry_run=True, triggered_by="test")
    assert run is not None
    dead.refresh_from_db()
    assert dead.status == RunStatus.FAILED
    # A live one does block.
    assert reconciliation_run_start(dry_run=True, triggered_by="test") is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_clusters_schedulers_on_postgresql_start_one_run(stripe_fake, settings):
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    account = AccountFactory()
    stripe_fake.add_subscription(customer=account.stripe_customer_id, status="active")
    # Slow the listing so the two schedulers' work overlaps in time.
    stripe_fake.delay("/v1/subscriptions", 0.5, times=5)
    reconciliation_schedule_ensure()
    Schedule.objects.filter(name=SCHEDULE_NAME).update(
        next_run=timezone.now() - timedelta(minutes=1)
    )

    # Each thread is one cluster's scheduler with its own broker and database connection; the
    # test settings run the task inline, so whoever wins the schedule row runs the audit.
    _in_threads(lambda: scheduler(broker=get_broker()))

    assert ReconciliationRun.objects.count() == 1
    run = ReconciliationRun.objects.get()
    assert run.status == RunStatus.APPLIED
    assert run.triggered_by == "system:schedule"
    assert Schedule.objects.get(name=SCHEDULE_NAME).next_run > timezone.now()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_given_the_nightly_task_at_once_start_one_run(stripe_fake, settings):
    """Past the scheduler (e.g. a broker redelivery): the run service's own guard holds."""
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    account = AccountFactory()
    stripe_fake.add_subscription(customer=account.stripe_customer_id, status="active")
    stripe_fake.delay("/v1/subscriptions", 0.5, times=5)

    results = _in_threads(reconciliation_scheduled, n=3)

    assert sorted(r is not None for r in results) == [False, False, True]
    assert ReconciliationRun.objects.count() == 1
    assert ReconciliationRun.objects.get().status == RunStatus.APPLIED


@pytest.mark.django_db(transaction=True)
def test_a_stored_schedule_of_the_old_task_module_follows_the_rename():
    """Migration 0005: a deployment that upgrades without ensure_schedules keeps its nightly run
    (the task moved from reconciliation.tasks_audit to reconciliation.tasks)."""
    from django.db.migrations.executor import MigrationExecutor

    before = [("reconciliation", "0004_team_accounts")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_func = "reconciliation.tasks_audit.audit_scheduled"
    Schedule.objects.create(
        name="nightly", func=old_func, schedule_type=Schedule.CRON, cron="0 3 * * *"
    )
    Schedule.objects.create(name="other", func="janitor.tasks.notices_retry_task")
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    funcs = dict(Schedule.objects.values_list("name", "func"))
    assert funcs == {
        "nightly": "reconciliation.tasks.reconciliation_scheduled",
        "other": "janitor.tasks.notices_retry_task",
    }
    from reconciliation.tasks import reconciliation_scheduled  # the new path imports

    assert callable(reconciliation_scheduled)
