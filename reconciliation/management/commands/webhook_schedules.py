"""manage.py webhook_schedules: create or correct the webhook sweeper and catch-up schedules."""

from django.core.management.base import BaseCommand

from reconciliation.services.webhooks import webhook_schedules_ensure


class Command(BaseCommand):
    help = "Ensure the django-q2 schedules for the webhook sweeper and catch-up (idempotent)."

    def handle(self, *args, **options):
        changes = webhook_schedules_ensure()
        self.stdout.write("; ".join(changes) if changes else "Webhook schedules already in place.")
