"""Trigram indexes for the account search (any part of an email or a name) on PostgreSQL.

The search filters on LOWER(email) LIKE '%fragment%' (and the same on name); a GIN index with
pg_trgm's operator class answers that without a scan. SQLite has neither, and scans: the
operation is skipped there, and it is not in the model state (makemigrations stays quiet).
"""

from django.db import migrations

INDEXES = {
    "user_email_trgm_idx": "LOWER(email) gin_trgm_ops",
    "user_name_trgm_idx": "LOWER(name) gin_trgm_ops",
}


def trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it.
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, expression in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON accounts_user USING gin ({expression})"
        )


def trigram_indexes_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0007_revocation_trail")]

    operations = [migrations.RunPython(trigram_indexes, trigram_indexes_drop)]
