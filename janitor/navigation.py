"""Dashboard navigation: an entry shows when the role may see its page. Every entry names a
page that exists: a name that does not reverse is an error, never a silently missing link."""

from django.conf import settings
from django.urls import reverse

# (url name, label, permission needed to see the link)
NAV_ITEMS = [
    ("overview", "Overview", "accounts.view_dashboard"),
    ("account_list", "Accounts", "accounts.view_user"),
    ("review_queue", "Review queue", "reconciliation.view_review_queue"),
    ("reconciliation_runs", "Reconciliation", "reconciliation.view_reconciliation"),
    ("webhook_list", "Webhooks", "reconciliation.view_webhooks"),
    ("dispute_list", "Disputes", "reconciliation.view_disputes"),
    ("delivery_list", "Deliveries", "products.view_deliveries"),
    ("product_endpoint_list", "Endpoints", "products.manage_endpoints"),
    ("revocation_list", "Revocations", "accounts.view_access_audit"),
    ("audit_list", "Audit trail", "accounts.view_access_audit"),
    ("notice_list", "Notifications", "janitor.view_notice"),
    ("notice_preferences", "My notifications", "accounts.view_dashboard"),
    ("staff_two_factor_list", "Staff 2FA", "accounts.reset_two_factor"),
    ("api_token_list", "API tokens", "accounts.manage_api_tokens"),
]


def navigation(request):
    # The top bar says "Sandbox" on every page, signed in or not, while Stripe is the sandbox.
    sandbox = settings.JANITOR_SANDBOX
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {"nav_items": [], "sandbox_mode": sandbox}
    items = []
    for name, label, perm in NAV_ITEMS:
        if not user.has_perm(perm):
            continue
        url = reverse(name)
        items.append(
            {
                "url": url,
                "label": label,
                "active": request.path.startswith(url)
                if name != "overview"
                else request.path == url,
            }
        )
    return {"nav_items": items, "sandbox_mode": sandbox}
