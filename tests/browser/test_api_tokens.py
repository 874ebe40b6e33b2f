"""The API tokens page in a real browser: created by an HTMX form (the raw value shown in the
swapped part, once), revoked after a confirmation, under the CSP."""

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken
from accounts.services.tokens import api_token_authenticate

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_admin_creates_then_revokes_a_token(page, live_server, login_as, admin_user):
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    login_as(page, admin_user)
    page.goto(f"{live_server.url}/staff/api-tokens/")
    expect(page.locator("#token-list")).to_contain_text("No API tokens yet")

    page.fill("input[name=name]", "Billing backend")
    page.locator('[data-testid="scope-accounts:write"] input').check()
    page.locator('[data-testid="scope-access:read"] input').check()
    page.click('[data-testid="token-create"]')
    raw = page.locator('[data-testid="raw-token"]')
    expect(raw).to_contain_text("jan_")
    token = ApiToken.objects.get()
    assert api_token_authenticate(raw=raw.inner_text()) == token
    assert token.scopes == ["access:read", "accounts:write"]

    page.reload()  # shown once: gone from the page for good
    expect(page.locator('[data-testid="raw-token"]')).to_have_count(0)

    row = page.locator(f'[data-testid="token-{token.pk}"]')
    row.locator("input[name=reason]").fill("Product retired")
    row.locator(f'[data-testid="revoke-{token.pk}"]').click()
    expect(page.locator("#api-tokens")).to_contain_text("no longer authenticates")
    assert dialogs and dialogs[0].startswith("Revoke Billing backend")
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert violations == []
