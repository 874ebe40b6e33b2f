"""The staff roles (groups) and exactly the permissions each one holds."""

ROLE_SUPPORT = "Support"
ROLE_FINANCE = "Finance"
ROLE_ADMIN = "Admin"
ROLE_NAMES = (ROLE_ADMIN, ROLE_FINANCE, ROLE_SUPPORT)

_ALL_STAFF = {
    "accounts.view_dashboard",
    "accounts.view_user",
    "accounts.view_access_audit",
    "reconciliation.view_review_queue",
    "reconciliation.view_reconciliation",
    "reconciliation.view_disputes",
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    ROLE_SUPPORT: frozenset(
        _ALL_STAFF
        | {
            "reconciliation.work_review_queue",
            "reconciliation.record_comp",
            "reconciliation.view_webhooks",
            "accounts.request_revocation",
            "accounts.manage_members",
            "products.view_deliveries",
        }
    ),
    ROLE_FINANCE: frozenset(
        _ALL_STAFF
        | {
            "accounts.request_revocation",
            "accounts.export_access_audit",
            "reconciliation.export_evidence",
            "reconciliation.submit_dispute_evidence",
        }
    ),
    ROLE_ADMIN: frozenset(
        _ALL_STAFF
        | {
            "reconciliation.work_review_queue",
            "reconciliation.record_comp",
            "reconciliation.view_webhooks",
            "reconciliation.replay_webhooks",
            "reconciliation.run_reconciliation",
            "accounts.request_revocation",
            "accounts.approve_revocation",
            "accounts.restore_access",
            "accounts.export_access_audit",
            "janitor.view_notice",
            "accounts.reset_two_factor",
            "accounts.erase_customer",
            "accounts.manage_members",
            "products.view_deliveries",
            "products.replay_deliveries",
            "products.manage_endpoints",
            "accounts.manage_api_tokens",
        }
    ),
}

# What each role may do, in words, for the README and the dashboard's help text.
ROLE_DESCRIPTIONS = {
    ROLE_SUPPORT: "Works the review queue (assign, note, extend grace, record comps, resolve), "
    "disables and enables an account's members, reads webhooks and the deliveries of access "
    "events to products, requests revocations.",
    ROLE_FINANCE: "Reads disputes, exports evidence (PDF/CSV), stages and submits dispute "
    "evidence, requests revocations, exports the audit.",
    ROLE_ADMIN: "Everything Support does, plus approves or rejects revocations (not their own), "
    "restores access, runs and applies reconciliation, replays webhooks, manages product "
    "endpoints and replays their deliveries, creates and revokes the products' API tokens, "
    "resets another staff member's two-factor devices, erases a customer's personal data on "
    "request.",
}


def roles_sync(apps) -> None:
    """Create the role groups and set each one's permissions to exactly its list.

    Takes the app registry so data migrations can call it with their historical models.
    """
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    wanted = set().union(*ROLE_PERMISSIONS.values())
    by_name = {}
    for dotted in sorted(wanted):
        app_label, codename = dotted.split(".")
        permission = Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).first()
        if permission is None:
            # Permissions are normally made after migrate; make ours now so groups can hold them.
            model = _model_for(app_label, codename)
            content_type, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
            permission, _ = Permission.objects.get_or_create(
                content_type=content_type,
                codename=codename,
                defaults={"name": codename.replace("_", " ").capitalize()},
            )
        by_name[dotted] = permission
    for role, permissions in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([by_name[p] for p in permissions])


def _model_for(app_label: str, codename: str) -> str:
    if app_label == "accounts":
        return "user"
    if app_label == "janitor":
        return "notice"
    if codename in {"export_evidence", "submit_dispute_evidence"}:
        return "dispute"
    return "permissions"
