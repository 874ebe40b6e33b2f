"""django-q2 tasks for the audit: load ids, call the audit service."""

from reconciliation.models import ReconciliationRun
from reconciliation.services.audit import (
    SCHEDULE_TRIGGER,
    audit_run,
    audit_run_apply_finish,
    audit_run_execute,
)


def audit_scheduled() -> int | None:
    """The nightly schedule's entry point; a second trigger the same night does nothing."""
    run = audit_run(dry_run=False, triggered_by=SCHEDULE_TRIGGER, scheduled=True)
    return run.pk if run else None


def audit_run_task(run_id: int) -> str:
    """Execute a run a person started from the dashboard (the row exists, status running)."""
    run = audit_run_execute(run=ReconciliationRun.objects.get(pk=run_id))
    return run.status


def audit_apply_task(run_id: int) -> str:
    """Apply a halted run an Admin approved."""
    run = audit_run_apply_finish(run=ReconciliationRun.objects.get(pk=run_id))
    return run.status
