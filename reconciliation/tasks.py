"""django-q2 tasks of reconciliation: thin wrappers that load ids and call a service."""

from dataclasses import asdict

from reconciliation.models import ReconciliationRun
from reconciliation.services.privacy import retention_purge
from reconciliation.services.runs import (
    SCHEDULE_TRIGGER,
    reconciliation_run,
    reconciliation_run_apply_finish,
    reconciliation_run_execute,
)
from reconciliation.services.webhooks import (
    webhook_event_process,
    webhook_events_catch_up,
    webhook_events_process,
    webhook_events_sweep,
)


def webhook_event_process_task(event_id: int, trigger: str = "queue") -> str:
    return webhook_event_process(event_id=event_id, trigger=trigger)


def webhook_events_process_task(event_ids: list[int], trigger: str = "queue") -> dict:
    return webhook_events_process(event_ids=event_ids, trigger=trigger)


def webhook_events_sweep_task() -> int:
    return webhook_events_sweep()


def webhook_events_catch_up_task() -> dict:
    result = webhook_events_catch_up()
    return {"listed": result.listed, "stored": result.stored, "since": result.since.isoformat()}


def retention_purge_task() -> dict:
    return asdict(retention_purge())


def reconciliation_scheduled() -> int | None:
    """The nightly schedule's entry point; a second trigger the same night does nothing."""
    run = reconciliation_run(dry_run=False, triggered_by=SCHEDULE_TRIGGER, scheduled=True)
    return run.pk if run else None


def reconciliation_run_task(run_id: int) -> str:
    """Execute a run a person started from the dashboard (the row exists, status running)."""
    run = reconciliation_run_execute(run=ReconciliationRun.objects.get(pk=run_id))
    return run.status


def reconciliation_apply_task(run_id: int) -> str:
    """Apply a halted run an Admin approved."""
    run = reconciliation_run_apply_finish(run=ReconciliationRun.objects.get(pk=run_id))
    return run.status
