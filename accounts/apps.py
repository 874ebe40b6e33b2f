from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _roles_ensure(sender, **kwargs):
    # The roles come from a data migration; a flush (e.g. between transactional tests) empties
    # the tables and then emits post_migrate, so re-create them here too. Idempotent.
    from django.apps import apps

    from accounts.roles import roles_sync

    roles_sync(apps)


def _audit_triggers_ensure(sender, using="default", **kwargs):
    # SQLite drops a table's triggers when a migration rebuilds the table: put them back.
    from accounts.audit_protection import audit_triggers_ensure

    audit_triggers_ensure(using=using)


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and access"

    def ready(self):
        from accounts import checks, signals  # noqa: F401

        post_migrate.connect(_roles_ensure, sender=self, dispatch_uid="accounts.roles_ensure")
        post_migrate.connect(
            _audit_triggers_ensure, sender=self, dispatch_uid="accounts.audit_triggers_ensure"
        )
