"""The content security policy holds on HTMX pages: swaps work and the browser reports no
violation (no inline script, no eval)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import AccessStatus
from reconciliation.models import FlagKind
from tests.factories import AccountFactory, FlagFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_htmx_pages_work_under_the_csp_without_violations(
    page, live_server, login_as, support_user
):
    account = AccountFactory(
        access_status=AccessStatus.GRACE_PERIOD, grace_ends_at=timezone.now() + timedelta(days=3)
    )
    flag = FlagFactory(account=account, kind=FlagKind.PAYMENT_FAILED)
    violations = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    login_as(page, support_user)

    response = page.goto(f"{live_server.url}/queue/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    row = page.locator(f"#flag-{flag.pk}")
    row.locator("a.open-actions").click()  # an hx-get swap
    row.locator("summary", has_text="Add note").click()
    row.locator("textarea[name=body]").fill("Checked under the CSP.")
    row.locator("button", has_text="Save note").click()  # an hx-post with the CSRF header
    expect(page.locator(f"#flag-{flag.pk} .notes")).to_contain_text("Checked under the CSP.")

    page.goto(f"{live_server.url}/accounts/{account.public_id}/")  # lazy-loaded panels
    expect(page.locator("#access-actions")).to_contain_text("Request revocation")
    expect(page.locator("#evidence-panel")).to_contain_text("Evidence")
    assert violations == []
