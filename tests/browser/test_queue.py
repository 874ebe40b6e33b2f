"""The review queue and the Reconciliation page in real Chromium."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import AccessAudit, AccessStatus
from reconciliation.models import FlagKind, FlagNote, ReconciliationRun, RunStatus
from tests.factories import AccountFactory, FlagFactory


def _grace_flag(email: str, kind: str = FlagKind.PAYMENT_FAILED):
    account = AccountFactory(
        email=email,
        access_status=AccessStatus.GRACE_PERIOD,
        grace_ends_at=timezone.now() + timedelta(days=2),
    )
    return FlagFactory(account=account, kind=kind)


# Live-server tests flush the database; restore the role groups migrations made.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def flags(db):
    return {
        "late": _grace_flag("late.payer@example.com"),
        "other": _grace_flag("someone.else@example.com", kind=FlagKind.MISSING_SUBSCRIPTION),
        "manual": FlagFactory(kind=FlagKind.MANUAL_GRANT),
    }


def test_support_filters_opens_an_account_notes_and_extends_grace(
    page, live_server, login_as, support_user, flags
):
    login_as(page, support_user)
    page.goto(f"{live_server.url}/queue/")
    assert page.locator("tbody.flag-row").count() == 3

    # Filtering swaps the results in place (HTMX) and keeps the URL shareable.
    page.select_option("select[name=kind]", "payment_failed")
    expect(page.locator("tbody.flag-row")).to_have_count(1)
    assert "kind=payment_failed" in page.url
    row = page.locator(f"#flag-{flags['late'].pk}")
    assert "late.payer@example.com" in row.inner_text()

    # The account link opens the account page.
    row.locator("a", has_text="late.payer@example.com").click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith(f"/accounts/{flags['late'].account.public_id}/")
    assert "late.payer@example.com" in page.locator("h1").inner_text() or (
        "late.payer@example.com" in page.content()
    )
    page.goto(f"{live_server.url}/queue/?kind=payment_failed")

    row = page.locator(f"#flag-{flags['late'].pk}")
    # Rows carry no forms until opened: the link swaps in the row with its actions.
    row.locator("a.open-actions").click()
    expect(row.locator("summary", has_text="Add note")).to_be_visible()
    row.locator("summary", has_text="Add note").click()
    row.locator("textarea[name=body]").fill("Customer says the card was replaced.")
    row.locator("button", has_text="Save note").click()
    expect(page.locator(f"#flag-{flags['late'].pk} .notes")).to_contain_text("card was replaced")

    row = page.locator(f"#flag-{flags['late'].pk}")
    row.locator("summary", has_text="Extend grace").click()
    extend = row.locator("form[action$='/extend/']")
    extend.locator("input[name=days]").fill("5")
    extend.locator("input[name=reason]").fill("Waiting for the new card")
    extend.locator("button", has_text="Extend grace").click()
    expect(page.locator(f"#flag-{flags['late'].pk} .notes")).to_contain_text(
        "Waiting for the new card"
    )

    assert page.locator(f"#flag-{flags['late'].pk} [data-grace-days]").inner_text() == "7"
    account = flags["late"].account
    account.refresh_from_db()
    assert account.grace_ends_at > timezone.now() + timedelta(days=6)
    assert AccessAudit.objects.filter(account=account, actor_user=support_user).count() == 1
    assert list(
        FlagNote.objects.filter(flag=flags["late"]).order_by("pk").values_list("action", flat=True)
    ) == ["note", "extend_grace"]


def test_finance_sees_no_admin_or_support_actions(page, live_server, login_as, finance_user, flags):
    ReconciliationRun.objects.create(status=RunStatus.HALTED, counts={"start_grace": 9})
    login_as(page, finance_user)
    page.goto(f"{live_server.url}/queue/")
    assert page.locator("tbody.flag-row").count() == 3
    row = page.locator(f"#flag-{flags['late'].pk}")
    row.locator("a.open-actions").click()
    expect(row.locator("tr.flag-actions")).to_be_visible()
    for label in ("Assign to me", "Extend grace", "Record comp", "Resolve"):
        assert page.get_by_text(label, exact=True).count() == 0, label

    page.goto(f"{live_server.url}/reconciliation/")
    assert page.locator("#outcomes-chart").count() == 1
    assert page.get_by_role("button", name="Run now").count() == 0
    assert page.get_by_role("button", name="Run dry run now").count() == 0
    page.locator("#runs a").first.click()
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("button", name="Apply these outcomes").count() == 0
    assert page.get_by_role("button", name="Discard").count() == 0


def test_the_queue_reads_without_javascript(browser, live_server, login_as, support_user, flags):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        login_as(page, support_user)
        page.goto(f"{live_server.url}/queue/?kind=missing_subscription")
        assert page.locator("tbody.flag-row").count() == 1
        assert "someone.else@example.com" in page.content()
        # Sorting and the filter form are plain links and a GET form underneath.
        page.locator("a[data-sort=email]").click()
        page.wait_for_load_state()
        assert "sort=email" in page.url
        page.select_option("select[name=kind]", "")
        page.click("#queue-filters button[type=submit]")
        page.wait_for_load_state()
        assert page.locator("tbody.flag-row").count() == 3
    finally:
        context.close()


def test_an_admin_runs_a_dry_run_and_sees_it_finish(
    page, live_server, login_as, admin_user, stripe_fake
):
    account = AccountFactory()
    stripe_fake.add_subscription(customer=account.stripe_customer_id, status="active")
    login_as(page, admin_user)
    page.goto(f"{live_server.url}/reconciliation/")
    page.get_by_role("button", name="Run dry run now").click()
    expect(page.locator("#run-started [data-run-status]")).to_have_text("Dry run")
    assert ReconciliationRun.objects.get().status == RunStatus.DRY_RUN
