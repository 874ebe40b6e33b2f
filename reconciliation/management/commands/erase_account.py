"""manage.py erase_account: pseudonymise a customer's personal data on request, audited."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Account, User
from reconciliation.services.privacy import ErasureError, account_erase


class Command(BaseCommand):
    help = (
        "Erase a customer's personal data (account, activity, webhook bodies) on their request; "
        "the audit trail keeps its rows. The actor must be an Admin; a reason is required."
    )

    def add_arguments(self, parser):
        parser.add_argument("public_id")
        parser.add_argument("--reason", default="", help="The request's reference (required).")
        parser.add_argument("--actor", required=True, help="Email of the Admin running this.")
        parser.add_argument(
            "--yes", action="store_true", help="Do it (without: say what would be erased)."
        )

    def handle(self, *args, public_id, reason, actor, yes, **options):
        account = Account.objects.filter(public_id=public_id).first()
        if account is None:
            raise CommandError(f"No account with public id {public_id!r}.")
        staff = User.objects.filter(email__iexact=actor, is_staff=True).first()
        if staff is None:
            raise CommandError(f"No staff user {actor!r}.")
        if not yes:
            self.stdout.write(
                f"Would erase {account.email} ({account.public_id}): its email, name, password, "
                "sessions, activity addresses and paths, webhook bodies and stored provider "
                "objects. Run again with --yes to do it; it cannot be undone."
            )
            return
        try:
            audit = account_erase(account=account, actor=staff, reason=reason)
        except ErasureError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(f"Erased {account.public_id} (staff action audit #{audit.pk}).")
        )
