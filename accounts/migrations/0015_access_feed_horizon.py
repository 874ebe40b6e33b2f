"""Retention of the access changes feed: one row saying how far the purge has deleted it, so
a cursor from before that answers 410 instead of silently skipping what was purged. (The purge
walks the feed's own (txid, id) index: no new index on a table that may be large.)"""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0014_accounts_api"),
    ]

    operations = [
        migrations.CreateModel(
            name="AccessFeedHorizon",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False),
                ),
                ("txid", models.BigIntegerField(default=0)),
                ("change_id", models.BigIntegerField(default=0)),
                ("purged_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("id", 1)), name="accessfeedhorizon_single_row"
                    )
                ],
            },
        ),
    ]
