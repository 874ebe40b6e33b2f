"""The customer's "update your payment" link: a fresh Stripe billing portal session per click.

Portal sessions are short-lived, so a notice carries a signed link to this view instead of a
session URL; the session is made when the customer opens it.
"""

from django.core import signing
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from reconciliation import gateway
from reconciliation.services.billing import BILLING_LINK_MAX_AGE, billing_link_customer


@require_GET
def billing_portal(request, token: str):
    try:
        customer_id = billing_link_customer(token=token, max_age=BILLING_LINK_MAX_AGE)
    except signing.SignatureExpired:
        return HttpResponse(
            "This link has expired. Sign in to the product to update your payment details.",
            status=410,
            content_type="text/plain",
        )
    except signing.BadSignature:
        return HttpResponse("This link is not valid.", status=400, content_type="text/plain")
    from django.conf import settings

    try:
        url = gateway.billing_portal_session_create(
            customer_id=customer_id, return_url=settings.JANITOR_BILLING_PORTAL_RETURN_URL
        )
    except gateway.GatewayError:
        return HttpResponse(
            "The payment page is not available right now; please try again in a few minutes.",
            status=503,
            content_type="text/plain",
        )
    return redirect(url)
