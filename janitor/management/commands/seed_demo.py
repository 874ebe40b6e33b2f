"""manage.py seed_demo: demo customers, drift, disputes and staff logins (idempotent)."""

from django.core.management.base import BaseCommand

from accounts.models import User
from janitor.demo import DEMO_PASSWORD, DEMO_STAFF, demo_seed


class Command(BaseCommand):
    help = "Load realistic demo data (about 2,000 customers) and demo staff logins. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing if there are customer accounts already (used by `make run`).",
        )

    def handle(self, *args, if_empty=False, **options):
        if if_empty and User.objects.filter(is_staff=False).exists():
            self.stdout.write("Customer accounts exist already: demo data not loaded.")
        else:
            self.stdout.write("Loading demo data (takes a few seconds)...")
            counts = demo_seed()
            summary = ", ".join(
                f"{value:,} {name.replace('_', ' ')}" for name, value in counts.items()
            )
            self.stdout.write(self.style.SUCCESS(f"Demo data ready: {summary}."))
        self.stdout.write(f"Demo staff logins (password for all: {DEMO_PASSWORD}):")
        for email, _name, role in DEMO_STAFF:
            self.stdout.write(f"  {role:<8} {email}")
