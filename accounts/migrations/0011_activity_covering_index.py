"""The activity index becomes covering on PostgreSQL (kind and address included): evidence
for a team reads a member's window from the index alone. SQLite builds the plain index."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0010_team_accounts_fields"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="activitylog",
            name="activity_account_time_idx",
        ),
        migrations.AddIndex(
            model_name="activitylog",
            index=models.Index(
                fields=["member", "occurred_at"],
                include=("kind", "ip_address"),
                name="activity_account_time_idx",
            ),
        ),
    ]
