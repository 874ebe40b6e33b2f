"""The dashboard shell in a real browser: staff sign in and see the overview and its navigation."""

from tests.factories import UserFactory


def test_support_signs_in_and_sees_overview(page, live_server, login_as, support_user):
    UserFactory.create_batch(3)
    login_as(page, support_user)
    assert page.locator("h1").inner_text() == "Overview"
    assert "Accounts by access status" in page.content()
    assert page.locator("nav a", has_text="Overview").count() == 1


def test_customer_is_refused_at_staff_login(page, live_server, login_as, customer):
    login_as(page, customer)
    assert "This sign-in is for Janitor staff" in page.locator("[role=alert]").inner_text()
    page.goto(f"{live_server.url}/")
    assert "/login/" in page.url
