"""manage.py seed_demo: demo customers, drift, disputes and staff logins (idempotent)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.models import Account
from janitor.demo import DEMO_PASSWORD, DEMO_STAFF, demo_seed

# How the printed logins sign in, per JANITOR_STAFF_2FA.
_ENROL = (
    "then scan the QR code at /two-factor/enrol/ with an authenticator app (TOTP) and "
    "enter its 6-digit code; keep the backup codes it shows."
)
TWO_FACTOR_HELP = {
    "off": "Two-factor sign-in is off (JANITOR_STAFF_2FA=off, as `make run` sets it): "
    "the password is enough.",
    "admins": "Two-factor sign-in is required for Admins (JANITOR_STAFF_2FA=admins): "
    f"sign in, {_ENROL}",
    "all": "Two-factor sign-in is required for all staff (JANITOR_STAFF_2FA=all): "
    f"sign in, {_ENROL}",
}


class Command(BaseCommand):
    help = "Load realistic demo data (about 2,000 customers) and demo staff logins. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing if there are customer accounts already (used by `make run`).",
        )

    def handle(self, *args, if_empty=False, **options):
        if if_empty and Account.objects.exists():
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
        self.stdout.write(TWO_FACTOR_HELP[settings.JANITOR_STAFF_2FA])
