"""Django's flush, able to empty the append-only access audit only where the settings allow it.

On SQLite the audit's triggers refuse the DELETE that flush sends, so a flush fails (and rolls
back) unless settings.JANITOR_AUDIT_FLUSH_ALLOWED is true. Only janitor/settings_test.py sets it
(the test runner flushes between transactional tests); no environment variable does. The
triggers are dropped for the flush and re-created straight after, whatever happens.
PostgreSQL's flush is a TRUNCATE, which only the table's owner (the migration role) may run.
"""

from django.conf import settings
from django.core.management.commands.flush import Command as DjangoFlush

from accounts.audit_protection import audit_triggers_drop_for_flush, audit_triggers_ensure


class Command(DjangoFlush):
    def handle(self, **options):
        using = options["database"]
        if not getattr(settings, "JANITOR_AUDIT_FLUSH_ALLOWED", False):
            return super().handle(**options)
        audit_triggers_drop_for_flush(using=using)
        try:
            return super().handle(**options)
        finally:
            audit_triggers_ensure(using=using)
