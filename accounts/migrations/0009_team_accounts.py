"""Team accounts, part 1: the billing account becomes its own model (issue 20).

Every customer user becomes an account with one member. The account takes the user's primary
key and public id, so every row that named the user as an account (the append-only access
audit above all) names the new account with the same id: part 2 only re-points the foreign
keys, and no audit row is written to. Users that are staff get no account unless some
account-side row names them (only tests and hand-made data do that).

Split from part 2 because PostgreSQL refuses to ALTER a table with pending deferred-constraint
checks in the same transaction as the data copy.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models
from django.db.models import Q
from django.db.models.functions import Lower

import accounts.models

# Tables whose account_id names the account (a user, before this migration).
ACCOUNT_SIDE_TABLES = (
    "accounts_accessaudit",
    "accounts_accesscomp",
    "accounts_revocationrequest",
    "reconciliation_subscription",
    "reconciliation_flag",
    "reconciliation_dispute",
    "reconciliation_runoutcome",
    "reconciliation_runlink",
    "reconciliation_evidenceexport",
)


def accounts_from_users(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    Account = apps.get_model("accounts", "Account")
    connection = schema_editor.connection
    # Staff users some account-side row names (customers are copied anyway): a few ids, so
    # the IN list below stays far under SQLite's bound on query parameters.
    referenced: set[int] = set()
    with connection.cursor() as cursor:
        for table in ACCOUNT_SIDE_TABLES:
            cursor.execute(
                f"SELECT DISTINCT t.account_id FROM {table} t "
                "JOIN accounts_user u ON u.id = t.account_id WHERE u.is_staff"
            )
            referenced.update(row[0] for row in cursor.fetchall())
    fields = (
        "pk",
        "public_id",
        "name",
        "email",
        "date_joined",
        "is_staff",
        "is_active",
        "access_status",
        "grace_ends_at",
        "stripe_customer_id",
    )
    batch: list = []
    members: list[int] = []
    queryset = User.objects.filter(Q(is_staff=False) | Q(pk__in=referenced)).order_by("pk")
    for row in queryset.values_list(*fields).iterator(chunk_size=2000):
        (pk, public_id, name, email, joined, is_staff, is_active, status, grace, customer) = row
        batch.append(
            Account(
                pk=pk,
                public_id=public_id,
                name=name,
                email=email,
                created_at=joined,
                is_active=is_active,
                access_status=status,
                grace_ends_at=grace,
                stripe_customer_id=customer,
            )
        )
        if not is_staff:
            members.append(pk)
        if len(batch) >= 2000:
            Account.objects.bulk_create(batch)
            batch = []
    if batch:
        Account.objects.bulk_create(batch)
    # Each customer is the one member of its own account, enabled: the account's status now
    # carries the revocation (a revoked user was inactive only because of it).
    for start in range(0, len(members), 2000):
        chunk = members[start : start + 2000]
        User.objects.filter(pk__in=chunk).update(account_id=models.F("pk"), is_active=True)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # New accounts must not reuse the copied ids.
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('accounts_account', 'id'), "
                "GREATEST((SELECT MAX(id) FROM accounts_account), "
                "(SELECT MAX(id) FROM accounts_user), 1))"
            )


def users_from_accounts(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    Account = apps.get_model("accounts", "Account")
    for account in Account.objects.all().iterator():
        # Reversible for single-member accounts only (the shape part 1 creates).
        User.objects.filter(pk=account.pk).update(
            access_status=account.access_status,
            grace_ends_at=account.grace_ends_at,
            stripe_customer_id=account.stripe_customer_id,
            is_active=account.is_active,
            account=None,
        )
    Account.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0008_search_trigram"),
        ("reconciliation", "0003_dispute_charge_link_and_event_api_version"),
    ]

    operations = [
        migrations.CreateModel(
            name="Account",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "public_id",
                    models.CharField(
                        default=accounts.models.public_id_generate, max_length=64, unique=True
                    ),
                ),
                ("name", models.CharField(blank=True, max_length=200)),
                ("email", models.EmailField(blank=True, max_length=254)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("is_active", models.BooleanField(default=True)),
                (
                    "access_status",
                    models.CharField(
                        choices=[
                            ("active", "Active"),
                            ("grace_period", "Grace period"),
                            ("revoked_pending", "Revocation pending"),
                            ("revoked", "Revoked"),
                        ],
                        default="active",
                        max_length=20,
                    ),
                ),
                ("grace_ends_at", models.DateTimeField(blank=True, null=True)),
                ("stripe_customer_id", models.CharField(blank=True, default="", max_length=255)),
            ],
            options={
                "indexes": [
                    models.Index(fields=["access_status"], name="account_access_status_idx"),
                    models.Index(fields=["grace_ends_at"], name="account_grace_ends_idx"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        Lower("email"), condition=~Q(email=""), name="account_email_unique_ci"
                    ),
                    models.UniqueConstraint(
                        condition=~Q(stripe_customer_id=""),
                        fields=("stripe_customer_id",),
                        name="account_stripe_customer_unique",
                    ),
                    models.CheckConstraint(
                        condition=Q(
                            access_status__in=[
                                "active",
                                "grace_period",
                                "revoked_pending",
                                "revoked",
                            ]
                        ),
                        name="account_access_status_valid",
                    ),
                    models.CheckConstraint(
                        condition=Q(access_status="revoked", is_active=False)
                        | (~Q(access_status="revoked") & Q(is_active=True)),
                        name="account_is_active_matches_status",
                    ),
                    models.CheckConstraint(
                        condition=~Q(access_status="grace_period") | Q(grace_ends_at__isnull=False),
                        name="account_grace_has_end",
                    ),
                ],
            },
        ),
        migrations.AddField(
            model_name="user",
            name="account",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="members",
                to="accounts.account",
            ),
        ),
        # A revoked customer's member is enabled from now on (the account carries the status).
        migrations.RemoveConstraint(model_name="user", name="user_is_active_matches_status"),
        migrations.RemoveConstraint(model_name="user", name="user_grace_has_end"),
        migrations.RemoveConstraint(model_name="user", name="user_access_status_valid"),
        migrations.RemoveConstraint(model_name="user", name="user_stripe_customer_unique"),
        migrations.RunPython(accounts_from_users, users_from_accounts),
    ]
