"""Team accounts, part 2: the account's fields leave the user, and the account-side foreign
keys point at the account (same ids, so no row changes: the audit's trigger is never asked).

ActivityLog.account becomes `member` in the model only: the column keeps its name.
"""

import django.db.models.deletion
from django.db import migrations, models

TRIGRAM_INDEXES = {
    "account_email_trgm_idx": ("accounts_account", "LOWER(email) gin_trgm_ops"),
    "account_name_trgm_idx": ("accounts_account", "LOWER(name) gin_trgm_ops"),
}


def trigram_indexes(apps, schema_editor):
    """The account search's trigram indexes, like 0008's on members (PostgreSQL only)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, (table, expression) in TRIGRAM_INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ({expression})"
        )


def trigram_indexes_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in TRIGRAM_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


KINDS = [
    ("two_factor_reset", "Two-factor devices reset"),
    ("account_erased", "Personal data erased"),
    ("member_disabled", "Member disabled"),
    ("member_enabled", "Member enabled"),
]


def _to_account(on_delete, related_name, **extra):
    return models.ForeignKey(
        on_delete=on_delete, related_name=related_name, to="accounts.account", **extra
    )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0009_team_accounts")]

    operations = [
        migrations.RemoveIndex(model_name="user", name="user_access_status_idx"),
        migrations.RemoveIndex(model_name="user", name="user_grace_ends_idx"),
        migrations.RemoveField(model_name="user", name="access_status"),
        migrations.RemoveField(model_name="user", name="grace_ends_at"),
        migrations.RemoveField(model_name="user", name="stripe_customer_id"),
        migrations.AlterField(
            model_name="accesscomp",
            name="account",
            field=_to_account(django.db.models.deletion.CASCADE, "comps"),
        ),
        migrations.AlterField(
            model_name="revocationrequest",
            name="account",
            field=_to_account(django.db.models.deletion.PROTECT, "revocation_requests"),
        ),
        migrations.AlterField(
            model_name="accessaudit",
            name="account",
            field=_to_account(django.db.models.deletion.PROTECT, "access_audit"),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="activitylog", name="activity_account_time_idx"),
                migrations.RenameField(
                    model_name="activitylog", old_name="account", new_name="member"
                ),
                migrations.AlterField(
                    model_name="activitylog",
                    name="member",
                    field=models.ForeignKey(
                        db_column="account_id",
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="activity",
                        to="accounts.user",
                    ),
                ),
                migrations.AddIndex(
                    model_name="activitylog",
                    index=models.Index(
                        fields=["member", "occurred_at"], name="activity_account_time_idx"
                    ),
                ),
            ],
            database_operations=[],
        ),
        migrations.AlterField(
            model_name="staffactionaudit",
            name="subject",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.user",
            ),
        ),
        migrations.AddField(
            model_name="staffactionaudit",
            name="account",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.account",
            ),
        ),
        migrations.RemoveConstraint(model_name="staffactionaudit", name="staffaction_kind_valid"),
        migrations.AlterField(
            model_name="staffactionaudit",
            name="kind",
            field=models.CharField(choices=KINDS, max_length=32),
        ),
        migrations.AddConstraint(
            model_name="staffactionaudit",
            constraint=models.CheckConstraint(
                condition=models.Q(kind__in=[kind for kind, _ in KINDS]),
                name="staffaction_kind_valid",
            ),
        ),
        migrations.AlterModelOptions(
            name="user",
            options={
                "permissions": [
                    ("view_dashboard", "Can open the staff dashboard"),
                    ("request_revocation", "Can request a revocation"),
                    ("approve_revocation", "Can approve or reject a revocation"),
                    ("restore_access", "Can restore a revoked account"),
                    ("view_access_audit", "Can read the access audit"),
                    ("export_access_audit", "Can export the access audit"),
                    ("reset_two_factor", "Can reset another staff member's two-factor devices"),
                    ("erase_customer", "Can erase a customer's personal data on request"),
                    ("manage_members", "Can disable and enable an account's members"),
                ]
            },
        ),
        migrations.RunPython(trigram_indexes, trigram_indexes_drop),
    ]
