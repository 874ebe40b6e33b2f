"""Re-stamp the access changes feed after a restore from a logical dump (pg_dump/pg_restore
into another cluster): the kept changes carry the old cluster's transaction ids, which the new
one has not reached, so the feed would serve none of them and refuse every cursor.

Every kept change gets transaction id 0 (they stay in their id order, before every change
written from now on) and the purge's horizon is forgotten. Products holding a cursor from
before are answered 410 cursor_expired and read their accounts afresh, as after a purge.
"""

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from accounts.models import AccessChange, AccessFeedHorizon


class Command(BaseCommand):
    help = "Re-stamp the access changes feed after restoring the database from a logical dump."

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            self.stdout.write("Nothing to do: only PostgreSQL stamps changes with transaction ids.")
            return
        with transaction.atomic():
            changes = AccessChange.objects.exclude(txid=0).update(txid=0)
            horizons, _ = AccessFeedHorizon.objects.all().delete()
        horizon = "forgotten" if horizons else "none"
        self.stdout.write(
            f"Re-stamped {changes:,} change(s); purge horizon {horizon}. Products with an older "
            "cursor will read their accounts afresh (410)."
        )
