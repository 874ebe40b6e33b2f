"""Revocation in real Chromium: a signed-in customer is thrown out by the next click."""

import pytest

from accounts.backends import ACCESS_REFUSED_MESSAGE
from accounts.models import AccessStatus, RevocationRequest, RevocationStatus
from tests.factories import PASSWORD, AccountFactory, StaffFactory


@pytest.fixture
def new_page(browser):
    """A page in its own browser context (its own cookies); closed after the test so the
    live server's keep-alive threads, and their database connections, end with it."""
    contexts = []

    def _new_page():
        contexts.append(browser.new_context())
        return contexts[-1].new_page()

    yield _new_page
    for context in contexts:
        context.close()


@pytest.fixture
def people(transactional_db):
    """A customer, a Support user and an Admin."""
    from accounts.roles import ROLE_ADMIN, ROLE_SUPPORT

    return (
        AccountFactory(),
        StaffFactory(role=ROLE_SUPPORT, email="support@janitor.test"),
        StaffFactory(role=ROLE_ADMIN, email="admin@janitor.test"),
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_customer_is_signed_out_on_the_next_click_after_approval(
    new_page, live_server, login_as, people
):
    customer, support_user, admin_user = people
    customer_page = new_page()
    customer_page.goto(f"{live_server.url}/app/login/")
    customer_page.fill("input[name=username]", customer.email)
    customer_page.fill("input[name=password]", PASSWORD)
    customer_page.click("button[type=submit]")
    customer_page.wait_for_url(f"{live_server.url}/app/")
    assert customer.email in customer_page.get_by_test_id("signed-in-as").inner_text()

    support_page = login_as(new_page(), support_user)
    support_page.goto(f"{live_server.url}/accounts/{customer.public_id}/")
    panel = support_page.locator("#access-actions")
    panel.locator("textarea[name=reason]").fill("Chargeback lost, card reported stolen")
    panel.locator("input[name=reference]").fill("Chargeback Case #12345")
    panel.get_by_test_id("request-revocation").click()
    panel.get_by_text("Revocation requested").wait_for()
    revocation = RevocationRequest.objects.get(account=customer)

    admin_page = login_as(new_page(), admin_user)
    admin_page.goto(f"{live_server.url}/revocations/")
    admin_page.on("dialog", lambda dialog: dialog.accept())
    row = admin_page.get_by_test_id(f"open-request-{revocation.pk}")
    assert "Chargeback Case #12345" in row.inner_text()
    row.locator("textarea[name=comment]").first.fill("Confirmed with the bank")
    admin_page.get_by_test_id(f"approve-{revocation.pk}").click()
    admin_page.get_by_text(f"Approved the revocation of {customer.email}: completed.").wait_for()

    revocation.refresh_from_db()
    customer.refresh_from_db()
    assert revocation.status == RevocationStatus.COMPLETED
    assert revocation.sessions_removed == 1
    assert customer.access_status == AccessStatus.REVOKED

    customer_page.get_by_test_id("reload").click()
    customer_page.wait_for_url(f"{live_server.url}/app/login/")
    assert ACCESS_REFUSED_MESSAGE in customer_page.locator(".messages").inner_text()

    # Signing in again is refused with the same message.
    customer_page.fill("input[name=username]", customer.email)
    customer_page.fill("input[name=password]", PASSWORD)
    customer_page.click("button[type=submit]")
    assert ACCESS_REFUSED_MESSAGE in customer_page.get_by_test_id("login-error").inner_text()
