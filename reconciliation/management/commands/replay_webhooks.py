"""manage.py replay_webhooks: process failed or dead-lettered webhook events again."""

from django.core.management.base import BaseCommand, CommandError

from reconciliation.models import WebhookEvent, WebhookStatus
from reconciliation.services.webhooks import webhook_event_replay, webhook_events_replay


class Command(BaseCommand):
    help = "Replay webhook events: --dead (default), --failed, or --id evt_... (repeatable)."

    def add_arguments(self, parser):
        parser.add_argument("--dead", action="store_true", help="Replay every dead-lettered event.")
        parser.add_argument(
            "--failed", action="store_true", help="Replay every event waiting for a retry."
        )
        parser.add_argument(
            "--id",
            action="extend",
            nargs="+",
            default=[],
            dest="ids",
            help="Stripe event ids (evt_...): --id evt_a evt_b, or --id evt_a --id evt_b.",
        )
        parser.add_argument("--actor", default="cli", help="Recorded as replay:<actor>.")

    def handle(self, *args, dead, failed, ids, actor, **options):
        if ids and (dead or failed):
            raise CommandError("Use --id alone, or --dead/--failed.")
        if ids:
            found = {
                e.provider_event_id: e
                for e in WebhookEvent.objects.filter(provider_event_id__in=ids)
            }
            missing = [i for i in ids if i not in found]
            if missing:
                raise CommandError(f"No stored event with id {', '.join(missing)}.")
            for event_id in ids:
                replayed = webhook_event_replay(event=found[event_id], actor=actor)
                verdict = "replayed" if replayed else f"not replayed ({found[event_id].status})"
                self.stdout.write(f"{event_id}: {verdict}")
            return
        statuses = []
        if dead or not failed:
            statuses.append(WebhookStatus.DEAD)
        if failed:
            statuses.append(WebhookStatus.FAILED)
        count = webhook_events_replay(actor=actor, statuses=tuple(statuses))
        self.stdout.write(f"{count} event(s) replayed ({', '.join(statuses)}).")
