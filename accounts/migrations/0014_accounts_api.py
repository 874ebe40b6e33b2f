"""Issue 19, the accounts side of the product API: Admins manage the products' API tokens
(a permission of their own), and creating or revoking a token is a staff action the append-only
staff audit records (two new kinds, so its kind constraint is replaced)."""

from django.db import migrations, models

KINDS = [
    ("two_factor_reset", "Two-factor devices reset"),
    ("account_erased", "Personal data erased"),
    ("member_disabled", "Member disabled"),
    ("member_enabled", "Member enabled"),
    ("api_token_created", "API token created"),
    ("api_token_revoked", "API token revoked"),
]


class Migration(migrations.Migration):
    dependencies = [("accounts", "0013_access_versions_token_scopes")]

    operations = [
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
                    ("manage_api_tokens", "Can create and revoke API tokens"),
                ]
            },
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
    ]
