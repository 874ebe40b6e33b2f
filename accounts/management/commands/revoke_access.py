"""manage.py revoke_access: run the staged revocation from the shell, for incidents."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Account, RevocationRequest, RevocationStatus, User
from accounts.services.revocation import (
    STEP_LABELS,
    RevocationError,
    revocation_retry,
    revocation_run,
    revocation_run_now,
)


class Command(BaseCommand):
    help = (
        "Revoke a customer's access now through the staged revocation (revoked_pending, end "
        "every session, revoked, audit). For incidents: the actor must be an Admin; the request "
        "is recorded as run from the shell. --retry resumes a failed revocation."
    )

    def add_arguments(self, parser):
        parser.add_argument("public_id", help="The account's public id (user-xxxxx-xxxx-xxxx).")
        parser.add_argument("--reason", default="", help="Why (required).")
        parser.add_argument("--reference", default="", help="Case reference, e.g. a chargeback.")
        parser.add_argument("--actor", required=True, help="Email of the Admin running this.")
        parser.add_argument(
            "--retry", action="store_true", help="Resume this account's failed revocation."
        )

    def handle(self, *args, public_id, reason, reference, actor, retry, **options):
        try:
            account = Account.objects.get(public_id=public_id)
        except Account.DoesNotExist:
            raise CommandError(f"No account with public id {public_id!r}.") from None
        try:
            staff = User.objects.get(email__iexact=actor, is_staff=True)
        except User.DoesNotExist:
            raise CommandError(f"No staff user {actor!r}.") from None

        try:
            if retry:
                failed = next(
                    (
                        r
                        for r in RevocationRequest.objects.filter(
                            account=account,
                            status__in=[RevocationStatus.FAILED, RevocationStatus.APPROVED],
                        )
                        if r.status == RevocationStatus.FAILED or r.is_stalled
                    ),
                    None,
                )
                if failed is None:
                    raise CommandError(f"{public_id} has no failed or stalled revocation.")
                revocation_retry(revocation_id=failed.pk, actor=staff, enqueue=False, via="shell")
                self.stdout.write(f"Retrying revocation request #{failed.pk} for {account.email}")
                revocation = revocation_run(revocation_id=failed.pk, on_step=self._print_step)
            else:
                if not reason.strip():
                    raise CommandError("A reason is required: --reason '...'.")
                self.stdout.write(f"Revoking access for {account.email} ({public_id})")
                revocation = revocation_run_now(
                    account=account,
                    actor=staff,
                    reason=reason,
                    reference=reference,
                    on_step=self._print_step,
                )
        except RevocationError as exc:
            raise CommandError(str(exc)) from None

        if revocation.status == RevocationStatus.APPROVED:
            self.stdout.write(
                f"Request #{revocation.pk} waits for the products that hold sessions to confirm; "
                "it completes when they do (the queue re-checks it every minute) and fails "
                "retryable past the deadline."
            )
            return
        if revocation.status != RevocationStatus.COMPLETED:
            raise CommandError(
                f"Revocation request #{revocation.pk} {revocation.status}: "
                f"{revocation.last_error}. The account stays revoked_pending; "
                "fix the cause, then run again with --retry."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Done: request #{revocation.pk} completed, "
                f"{revocation.sessions_removed or 0} session(s) ended."
            )
        )

    def _print_step(self, name: str, info: dict) -> None:
        if name == "failed":
            self.stderr.write(self.style.ERROR(f"  failed: {info['error']}"))
            return
        if name == "waiting":
            self.stdout.write(f"  waiting for {', '.join(info['waiting_for']) or 'another run'}")
            return
        extra = ""
        if "sessions_removed" in info:
            extra = f" ({info['sessions_removed']} removed)"
        self.stdout.write(f"  step {name}: {STEP_LABELS[name]}{extra} [{info['ms']} ms]")
