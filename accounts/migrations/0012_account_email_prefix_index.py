"""The review queue finds flags by the start of an account's email (LOWER(email) LIKE 'q%'). The
unique index on LOWER(email) cannot serve LIKE under a non-C collation; a pattern-ops one can,
as accounts_user has had since 0004 (team accounts moved the billing email to accounts)."""

from django.db import migrations

EMAIL_PREFIX_INDEX = (
    "CREATE INDEX IF NOT EXISTS account_email_lower_prefix_idx "
    "ON accounts_account (LOWER(email) text_pattern_ops)"
)


def email_prefix_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(EMAIL_PREFIX_INDEX)


def email_prefix_index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS account_email_lower_prefix_idx")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0011_activity_covering_index")]

    operations = [migrations.RunPython(email_prefix_index, email_prefix_index_drop)]
