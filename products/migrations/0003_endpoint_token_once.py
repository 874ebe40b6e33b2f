"""One endpoint per confirmation token: a token two endpoints shared confirmed for both."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import Count


def refuse_shared_tokens(apps, schema_editor):
    """Say which endpoints share a token instead of failing on the constraint: which product
    keeps it is for an Admin to decide (give the other one a token of its own)."""
    endpoint = apps.get_model("products", "ProductEndpoint")
    shared = (
        endpoint.objects.exclude(token=None)
        .values("token")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values_list("token", flat=True)
    )
    if shared:
        names = list(endpoint.objects.filter(token__in=list(shared)).values_list("name", flat=True))
        raise RuntimeError(
            "These product endpoints share a confirmation token: "
            f"{', '.join(sorted(names))}. Give each its own token (Products page), then migrate."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0015_access_feed_horizon"),
        ("products", "0002_delivery"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(refuse_shared_tokens, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="productendpoint",
            constraint=models.UniqueConstraint(
                condition=models.Q(("token__isnull", False)),
                fields=("token",),
                name="endpoint_token_once",
            ),
        ),
    ]
