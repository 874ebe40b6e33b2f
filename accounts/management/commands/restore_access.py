"""manage.py restore_access: give a revoked account its access back, audited."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Account, User
from accounts.services.revocation import RevocationError, access_restore


class Command(BaseCommand):
    help = "Restore a revoked account's access (the actor must be an Admin; a reason is required)."

    def add_arguments(self, parser):
        parser.add_argument("public_id")
        parser.add_argument("--reason", default="", help="Why (required).")
        parser.add_argument("--reference", default="")
        parser.add_argument("--actor", required=True, help="Email of the Admin running this.")

    def handle(self, *args, public_id, reason, reference, actor, **options):
        account = Account.objects.filter(public_id=public_id).first()
        if account is None:
            raise CommandError(f"No account with public id {public_id!r}.")
        staff = User.objects.filter(email__iexact=actor, is_staff=True).first()
        if staff is None:
            raise CommandError(f"No staff user {actor!r}.")
        try:
            audit = access_restore(account=account, actor=staff, reason=reason, reference=reference)
        except RevocationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Restored {account.email} (audit row #{audit.pk})."))
