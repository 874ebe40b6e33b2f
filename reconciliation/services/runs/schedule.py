"""The nightly schedule: one django-q2 cron schedule, and its entry point's guard."""

from __future__ import annotations

from django.conf import settings

from reconciliation.services.runs.common import RUN_TASK_TIMEOUT

# The name operators see in django-q2's admin (kept: existing schedules are found by it).
SCHEDULE_NAME = "janitor: nightly audit"
SCHEDULE_FUNC = "reconciliation.tasks.reconciliation_scheduled"


def reconciliation_schedule_ensure() -> None:
    """Create or update the nightly reconciliation's django-q2 cron schedule from
    JANITOR_AUDIT_CRON."""
    from django_q.models import Schedule

    cron = settings.JANITOR_AUDIT_CRON
    kwargs = repr({"q_options": {"timeout": RUN_TASK_TIMEOUT}})
    schedule = Schedule.objects.filter(name=SCHEDULE_NAME).first()
    if schedule is None:
        Schedule.objects.create(
            name=SCHEDULE_NAME,
            func=SCHEDULE_FUNC,
            kwargs=kwargs,
            schedule_type=Schedule.CRON,
            cron=cron,
            repeats=-1,
        )
        return
    wanted = (SCHEDULE_FUNC, kwargs, Schedule.CRON, cron, -1)
    current = (schedule.func, schedule.kwargs, schedule.schedule_type, schedule.cron)
    if (*current, schedule.repeats) != wanted:
        schedule.func, schedule.kwargs, schedule.schedule_type, schedule.cron = wanted[:4]
        schedule.repeats = -1
        schedule.next_run = schedule.calculate_next_run()
        schedule.save()
