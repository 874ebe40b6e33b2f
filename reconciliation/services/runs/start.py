"""Starting a run: at most one at a time across every cluster, once per night for the schedule."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from janitor.services import notify
from reconciliation.models import ReconciliationRun, RunStatus
from reconciliation.services.runs.common import SCHEDULE_TRIGGER, enqueue_after_commit

# pg_advisory_xact_lock key ("JANI" in ASCII): serialises run starts across every cluster.
START_LOCK_KEY = 0x4A414E49
# A running run that stopped reporting progress this long ago died with its worker.
RUN_STALE_AFTER = timedelta(minutes=20)
# A scheduled trigger this soon after another scheduled run is the same night, delivered twice.
SCHEDULED_MIN_GAP = timedelta(hours=12)
RUN_TASK = "reconciliation.tasks.reconciliation_run_task"


def _serialise_starts() -> None:
    # Row locks cannot guard a row that does not exist yet; an advisory lock held to the end of
    # this transaction makes "is one running? no: create" atomic across processes.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [START_LOCK_KEY])


def _last_sign_of_life(run: ReconciliationRun) -> datetime:
    stamp = (run.progress or {}).get("updated_at")
    if stamp:
        try:
            return datetime.fromisoformat(stamp)
        except ValueError:
            pass
    return run.started_at


def reconciliation_run_start(
    *, dry_run: bool, triggered_by: str, scheduled: bool = False
) -> ReconciliationRun | None:
    """Create the run row, or return None when another run is going (or tonight's already ran).

    Several clusters' schedulers, a redelivered task and a staff click all come through here.
    """
    with transaction.atomic():
        _serialise_starts()
        now = timezone.now()
        for running in ReconciliationRun.objects.select_for_update().filter(
            status=RunStatus.RUNNING
        ):
            if _last_sign_of_life(running) > now - RUN_STALE_AFTER:
                return None
            state = running.progress or {}
            if state.get("apply_claimed") or (
                state.get("phase") == "applying" and running.decided_by_id is not None
            ):
                # An Admin's apply whose worker died, or whose task never started (a broker
                # loses a task when its worker crashes): back to halted, to be applied again.
                from reconciliation.services.runs.apply import run_apply_stopped

                run_apply_stopped(
                    run=running, reason="the worker stopped reporting progress while applying"
                )
                continue
            running.status = RunStatus.FAILED
            running.finished_at = now
            running.errors = (running.errors + "\n" if running.errors else "") + (
                "The worker stopped reporting progress; marked failed by the next start."
            )
            running.save(update_fields=["status", "finished_at", "errors"])
            notify.run_halted(run=running)
        if (
            scheduled
            and ReconciliationRun.objects.filter(
                triggered_by=SCHEDULE_TRIGGER, started_at__gte=now - SCHEDULED_MIN_GAP
            ).exists()
        ):
            return None
        return ReconciliationRun.objects.create(
            started_at=now,
            dry_run=dry_run,
            triggered_by=triggered_by,
            status=RunStatus.RUNNING,
            progress={"phase": "starting", "updated_at": now.isoformat()},
        )


def reconciliation_run_queue(*, dry_run: bool, triggered_by: str) -> ReconciliationRun | None:
    """Start a run and hand its execution to the queue once this transaction commits (the
    dashboard's "Run now"); None when another run is already going."""
    run = reconciliation_run_start(dry_run=dry_run, triggered_by=triggered_by)
    if run is not None:
        enqueue_after_commit(RUN_TASK, run.pk)
    return run
