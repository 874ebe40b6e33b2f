"""manage.py sync_stripe: backfill the subscription mirror and link customers to accounts."""

from django.core.management.base import BaseCommand, CommandError

from reconciliation.gateway import GatewayError
from reconciliation.services.sync import stripe_sync


class Command(BaseCommand):
    help = (
        "Read every subscription at the provider (status=all, 100 a page) into the mirror and "
        "link customers to accounts (customer id, then metadata.account_id, then unique email)."
    )

    def handle(self, *args, **options):
        def progress(report):
            if report.pages % 50 == 0:
                self.stderr.write(f"{report.pages:,} pages, {report.subscriptions:,} subs")

        try:
            report = stripe_sync(on_page=progress)
        except GatewayError as exc:
            raise CommandError(
                f"The provider listing failed: {exc}. Pages already read were saved; re-run."
            ) from exc
        self.stdout.write(
            f"Read {report.pages:,} pages, {report.subscriptions:,} subscriptions; "
            f"{report.written:,} mirror rows created or changed."
        )
        self.stdout.write(f"Linked: {len(report.linked)}")
        for customer_id, public_id, how in report.linked:
            self.stdout.write(f"  {customer_id} -> {public_id} (by {how})")
        self.stdout.write(f"Unmatched: {len(report.unmatched)}")
        for customer_id in report.unmatched:
            self.stdout.write(f"  {customer_id}")
        self.stdout.write(f"Ambiguous: {len(report.ambiguous)}")
        for customer_id, why in report.ambiguous:
            self.stdout.write(f"  {customer_id}: {why}")
