"""django-q2 schedules that run every N minutes: created or corrected by name, idempotently."""

from collections.abc import Iterable

from django.utils import timezone


def minute_schedules_ensure(specs: Iterable[tuple[str, str, int]]) -> list[str]:
    """Create or correct each (name, func, minutes) schedule; returns what changed (nothing on a
    second call). A duplicate of a name (two deploys racing) is removed: it would run the job
    twice a slot."""
    from django_q.models import Schedule

    changed = []
    for name, func, minutes in specs:
        schedule = Schedule.objects.filter(name=name).order_by("id").first()
        if schedule is None:
            schedule = Schedule.objects.create(
                name=name,
                func=func,
                schedule_type=Schedule.MINUTES,
                minutes=minutes,
                repeats=-1,
                next_run=timezone.now(),
            )
            changed.append(f"created {name}")
        elif (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) != (
            func,
            Schedule.MINUTES,
            minutes,
            -1,
        ):
            schedule.func, schedule.schedule_type = func, Schedule.MINUTES
            schedule.minutes, schedule.repeats = minutes, -1
            schedule.save()
            changed.append(f"updated {name}")
        duplicates, _ = Schedule.objects.filter(name=name).exclude(pk=schedule.pk).delete()
        if duplicates:
            changed.append(f"removed {duplicates} duplicate(s) of {name}")
    return changed
