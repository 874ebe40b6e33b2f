"""manage.py ensure_schedules: create or update Janitor's django-q2 schedules (idempotent)."""

from django.core.management.base import BaseCommand

from reconciliation.services.audit import audit_schedule_ensure
from reconciliation.services.webhooks import webhook_schedules_ensure


class Command(BaseCommand):
    help = "Create or update the nightly audit, webhook sweeper and catch-up schedules."

    def handle(self, *args, **options):
        for schedule in [audit_schedule_ensure(), *webhook_schedules_ensure()]:
            self.stdout.write(
                f"  {schedule.name}: {schedule.get_schedule_type_display()} "
                f"{schedule.cron or schedule.minutes or ''}"
            )
