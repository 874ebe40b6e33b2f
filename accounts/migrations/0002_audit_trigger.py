"""On PostgreSQL, a trigger refuses UPDATE and DELETE on the access audit, whoever asks.

TRUNCATE is left to the table owner: the test runner's flush between transactional tests uses it.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION accounts_accessaudit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'accounts_accessaudit is append-only: %% refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER accounts_accessaudit_append_only
    BEFORE UPDATE OR DELETE ON accounts_accessaudit
    FOR EACH ROW EXECUTE FUNCTION accounts_accessaudit_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS accounts_accessaudit_append_only ON accounts_accessaudit;
DROP FUNCTION IF EXISTS accounts_accessaudit_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
