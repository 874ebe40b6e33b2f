"""The Webhooks page in Chromium: filter with HTMX, open a dead event, replay it."""

import pytest

from accounts.roles import ROLE_ADMIN
from reconciliation.models import WebhookEvent, WebhookStatus
from tests.factories import AccountFactory, StaffFactory, WebhookEventFactory
from tests.reconciliation.webhook_support import dead_event


@pytest.mark.browser
def test_admin_filters_and_replays_a_dead_event(page, live_server, login_as):
    admin = StaffFactory(role=ROLE_ADMIN, email="webhooks-admin@janitor.test")
    AccountFactory(stripe_customer_id="cus_browser")
    WebhookEventFactory.create_batch(3, status=WebhookStatus.PROCESSED)
    dead = dead_event(
        "evt_browser_dead", "sub_browser", "cus_browser", last_error="GatewayError: Stripe was down"
    )
    login_as(page, admin)
    page.goto(f"{live_server.url}/webhooks/")
    assert page.locator("[data-count=dead]").inner_text() == "1"
    page.select_option("select[name=status]", "dead")
    page.wait_for_url("**status=dead**")
    rows = page.locator("#events tbody tr")
    rows.first.wait_for()
    assert rows.count() == 1
    page.click("text=evt_browser_dead")
    page.wait_for_url(f"**/webhooks/{dead.pk}/")
    assert "Stripe was down" in page.inner_text("main")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Replay this event")
    page.wait_for_selector("text=was sent for processing again")
    dead.refresh_from_db()
    assert dead.status == WebhookStatus.PROCESSED
    assert page.locator("h1 .badge").inner_text() == "Processed"
    assert not WebhookEvent.objects.filter(status=WebhookStatus.DEAD).exists()
