"""Signed links to the Stripe billing portal, for the customer's grace-period notice."""

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "janitor.billing-portal"
# Long enough for a grace period and a late reader; the link makes a fresh session each click.
BILLING_LINK_MAX_AGE = 60 * 86400


def billing_link(*, customer_id: str) -> str:
    """The absolute link for a notice: opens a new portal session for this customer."""
    token = signing.dumps({"c": customer_id}, salt=SALT, compress=True)
    return f"{settings.JANITOR_PUBLIC_URL}{reverse('billing_portal', args=[token])}"


def billing_link_customer(*, token: str, max_age: int) -> str:
    """The customer a link was made for; raises signing.BadSignature (or SignatureExpired)."""
    data = signing.loads(token, salt=SALT, max_age=max_age)
    customer_id = data.get("c") if isinstance(data, dict) else None
    if not isinstance(customer_id, str) or not customer_id.startswith("cus_"):
        raise signing.BadSignature("not a billing link")
    return customer_id
