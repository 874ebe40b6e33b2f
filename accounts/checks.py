"""System checks for accounts: the access audit must be append-only for the role the app uses."""

from django.core.checks import Warning, register

from accounts.audit_protection import audit_rewrite_powers_or_none


@register()
def audit_append_only_check(app_configs=None, databases=None, **kwargs):
    # Untagged, so a plain `manage.py check` reports it; silent when the database cannot be
    # reached or is not migrated yet (migrate reports that itself).
    powers = audit_rewrite_powers_or_none(using="default")
    if not powers:
        return []
    return [
        Warning(
            "The access audit is not append-only for the database role Janitor runs as: "
            + "; ".join(powers)
            + ".",
            hint=(
                "Run the app as a role that holds only SELECT and INSERT on the audit table "
                "(manage.py grant_app_role, docs/operations.md). Expected when this command "
                "runs as the migration role. On SQLite, run migrate to re-create the triggers."
            ),
            id="accounts.W001",
        )
    ]
