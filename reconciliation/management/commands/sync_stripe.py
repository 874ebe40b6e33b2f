"""manage.py sync_stripe: backfill the subscription mirror and link customers to accounts."""

from django.core.management.base import BaseCommand, CommandError

from reconciliation.gateway import GatewayAuthError, GatewayError
from reconciliation.services.disputes import disputes_link_unlinked
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
        except GatewayAuthError as exc:
            raise CommandError(str(exc)) from exc
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

        # Disputes stored before they could be linked through their charge (or while Stripe
        # was unreachable): look their charges up now.
        try:
            disputes = disputes_link_unlinked(actor="system:sync_stripe")
        except GatewayAuthError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Disputes: {disputes.looked_up} unlinked looked up, {disputes.linked} linked"
        )
        for provider_id, why in disputes.still_unlinked:
            self.stdout.write(f"  {provider_id} still unlinked: {why}")
        for provider_id, error in disputes.failed:
            self.stdout.write(f"  {provider_id} lookup failed (re-run later): {error}")
