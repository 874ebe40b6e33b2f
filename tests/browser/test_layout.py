"""No dashboard page scrolls sideways at 390 px (a phone) or 1440 px (a laptop), for any role.

The data is deliberately awkward: an unbroken 3,000-character note, long reasons and emails,
and a table of every kind on the pages that have one. Tables may scroll inside their card;
the page itself may not.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AccessAudit, AccessStatus, RevocationRequest
from accounts.roles import ROLE_ADMIN, ROLE_FINANCE, ROLE_PERMISSIONS, ROLE_SUPPORT
from products.models import Delivery, DeliveryAttempt, ProductEndpoint
from reconciliation.models import FlagNote, ReconciliationRun, RunStatus
from tests.factories import (
    AccountFactory,
    ActivityFactory,
    DisputeFactory,
    FlagFactory,
    StaffFactory,
    SubscriptionFactory,
    WebhookEventFactory,
)

pytestmark = pytest.mark.django_db(transaction=True)

WIDTHS = (390, 1440)
LONG_WORD = "x" * 3000
LONG_TEXT = "The customer wrote a very long explanation " * 20


@pytest.fixture
def world(db):
    author = StaffFactory(role=ROLE_SUPPORT, email="author@janitor.test")
    account = AccountFactory(
        email="a.really.quite.long.email.address.for.testing.layout@some-long-domain.example",
        name="Maximilian Alexander Fitzgerald-Worthington the Third",
        access_status=AccessStatus.GRACE_PERIOD,
        grace_ends_at=timezone.now() - timedelta(hours=2),
    )
    flag = FlagFactory(account=account, reason=LONG_TEXT)
    FlagNote.objects.create(flag=flag, author=author, body=LONG_WORD)
    FlagNote.objects.create(flag=flag, author=author, body=LONG_TEXT)
    SubscriptionFactory(account=account, status="past_due")
    for _ in range(3):
        ActivityFactory(account=account, path="/app/" + "segment/" * 60)
    AccessAudit.objects.create(
        account=account,
        actor="system:audit",
        from_status="active",
        to_status="grace_period",
        reason=LONG_TEXT + LONG_WORD[:400],
        reference="Chargeback Case #" + "9" * 80,
        source="run:1",
    )
    run = ReconciliationRun.objects.create(
        status=RunStatus.FAILED,
        finished_at=timezone.now(),
        errors="GatewayError: STRIPE_API_KEY is not set\n" + LONG_WORD,
        durations={"total": 1.2, "listing": 0.5, "listing_cpu": 0.1},
    )
    event = WebhookEventFactory(
        status="dead", last_error=LONG_WORD, customer_id=account.stripe_customer_id
    )
    dispute = DisputeFactory(account=account, due_by=timezone.now() + timedelta(days=2))
    other = AccountFactory()
    RevocationRequest.objects.create(account=other, requested_by=author, reason=LONG_TEXT)
    # Disabled: nothing is sent from the live server while the pages are looked at.
    endpoint = ProductEndpoint.objects.create(
        name="A product with a rather long name for the endpoints table",
        url="https://" + "long-subdomain." * 20 + "example/janitor/events",
        is_enabled=False,
    )
    delivery = Delivery.objects.create(
        endpoint=endpoint,
        account=account,
        event_type="access.grace_started",
        payload={"type": "access.grace_started", "data": {"note": LONG_WORD}},
        account_version=1,
        status="failing",
        last_error=LONG_WORD,
    )
    DeliveryAttempt.objects.create(delivery=delivery, status_code=500, error=LONG_WORD)
    from accounts.models import ApiScope
    from accounts.services.tokens import api_token_create

    api_token_create(
        name="Billing backend of the " + "very-long-product-name" * 3,
        created_by=author,
        scopes=list(ApiScope.values),
    )
    return {
        "account": account,
        "flag": flag,
        "run": run,
        "event": event,
        "dispute": dispute,
        "endpoint": endpoint,
        "delivery": delivery,
    }


def _pages(world, role):
    perms = ROLE_PERMISSIONS[role]
    account = world["account"].public_id
    pages = [
        "/",
        "/accounts/",
        "/accounts/?q=example",
        f"/accounts/{account}/",
        f"/accounts/{account}/access/",
        "/revocations/",
        "/access-audit/",
        "/queue/",
        f"/queue/flags/{world['flag'].pk}/",
        "/reconciliation/",
        f"/reconciliation/runs/{world['run'].pk}/",
        "/disputes/",
        f"/disputes/{world['dispute'].provider_id}/",
        f"/accounts/{account}/evidence/",
    ]
    if "reconciliation.view_webhooks" in perms:
        pages += ["/webhooks/", f"/webhooks/{world['event'].pk}/"]
    if "products.view_deliveries" in perms:
        pages += ["/products/deliveries/", f"/products/deliveries/{world['delivery'].pk}/"]
    if "products.manage_endpoints" in perms:
        pages += ["/products/endpoints/", f"/products/endpoints/{world['endpoint'].pk}/"]
    if "accounts.manage_api_tokens" in perms:
        pages += ["/staff/api-tokens/"]
    return pages


@pytest.mark.parametrize("role", [ROLE_SUPPORT, ROLE_FINANCE, ROLE_ADMIN])
def test_no_dashboard_page_scrolls_sideways(browser, live_server, login_as, world, role):
    user = StaffFactory(role=role, email=f"{role.lower()}.layout@janitor.test")
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = login_as(context.new_page(), user)
        overflowing = []
        for path in _pages(world, role):
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                response = page.goto(f"{live_server.url}{path}")
                assert response.status == 200, (path, response.status)
                page.wait_for_load_state("networkidle")  # lazy panels swapped in
                scroll_width = page.evaluate("document.documentElement.scrollWidth")
                if scroll_width > width:
                    overflowing.append((path, width, scroll_width))
        assert overflowing == [], overflowing
    finally:
        context.close()


def test_tables_fit_their_card_at_1440(browser, live_server, login_as, world):
    """At laptop width the audit table needs no scrolling inside its card either."""
    user = StaffFactory(role=ROLE_ADMIN, email="admin.layout@janitor.test")
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = login_as(context.new_page(), user)
        for path in ("/access-audit/", "/queue/", "/accounts/"):
            page.goto(f"{live_server.url}{path}")
            wider = page.evaluate(
                "[...document.querySelectorAll('.card')]"
                ".filter(c => c.scrollWidth > c.clientWidth + 1).length"
            )
            assert wider == 0, path
    finally:
        context.close()
