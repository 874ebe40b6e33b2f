"""manage.py ensure_schedules: create or update Janitor's django-q2 schedules (idempotent)."""

from django.core.management.base import BaseCommand
from django_q.models import Schedule

from accounts.services.revocation import REVOCATION_WAITING_SCHEDULE, revocation_schedules_ensure
from janitor.services.notifications import (
    DIGEST_SCHEDULE,
    NOTICE_SCHEDULES,
    notice_schedules_ensure,
)
from products.services.delivery import SWEEP_SCHEDULE, delivery_schedule_ensure
from reconciliation.services.privacy import RETENTION_SCHEDULE_NAME, retention_schedule_ensure
from reconciliation.services.runs import SCHEDULE_NAME, reconciliation_schedule_ensure
from reconciliation.services.webhooks import WEBHOOK_SCHEDULES, webhook_schedules_ensure


class Command(BaseCommand):
    help = (
        "Create or update the nightly audit, webhook sweeper, catch-up, retention purge and "
        "product delivery sweeper and waiting-revocation schedules."
    )

    def handle(self, *args, **options):
        reconciliation_schedule_ensure()
        webhook_schedules_ensure()
        notice_schedules_ensure()
        retention_schedule_ensure()
        delivery_schedule_ensure()
        revocation_schedules_ensure()
        names = [
            SCHEDULE_NAME,
            *(name for name, _func, _minutes in WEBHOOK_SCHEDULES),
            *(name for name, _func, _minutes in NOTICE_SCHEDULES),
            DIGEST_SCHEDULE[0],
            RETENTION_SCHEDULE_NAME,
            SWEEP_SCHEDULE[0],
            REVOCATION_WAITING_SCHEDULE[0],
        ]
        for schedule in Schedule.objects.filter(name__in=names).order_by("name"):
            every = (
                schedule.cron
                if schedule.schedule_type == Schedule.CRON
                else (f"every {schedule.minutes} min")
            )
            self.stdout.write(
                f"  {schedule.name}: {every}, next run {schedule.next_run:%Y-%m-%d %H:%M} UTC"
            )
