"""Issue 15 in real Chromium: finding anyone, refusals shown, ended sessions, live revocations."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import AccessStatus, RevocationRequest, RevocationStatus
from accounts.roles import ROLE_ADMIN
from reconciliation.models import FlagKind, FlagNote
from reconciliation.services.flags import flag_resolve
from tests.factories import AccountFactory, DisputeFactory, FlagFactory, StaffFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def customers(db):
    return {
        "marta": AccountFactory(email="marta.kowalski@example.org", name="Marta Kowalski"),
        "other": AccountFactory(email="someone.else@example.org", name="Someone Else"),
    }


def _search(page, query: str) -> None:
    box = page.locator("form[role=search] input[name=q]")
    box.fill(query)
    box.press("Enter")
    page.wait_for_load_state("networkidle")


def test_the_top_bar_finds_an_account_by_part_of_its_email_customer_or_dispute_id(
    page, live_server, login_as, support_user, customers
):
    marta = customers["marta"]
    dispute = DisputeFactory(account=customers["other"])
    login_as(page, support_user)

    _search(page, "kowals")  # the middle of an email, any case
    assert page.url.endswith(f"/accounts/{marta.public_id}/")
    expect(page.locator("h1")).to_contain_text("Marta Kowalski")

    _search(page, customers["other"].stripe_customer_id)
    assert page.url.endswith(f"/accounts/{customers['other'].public_id}/")

    page.goto(f"{live_server.url}/queue/")  # the box is on every page
    _search(page, dispute.provider_id)
    assert page.url.endswith(f"/accounts/{customers['other'].public_id}/")

    _search(page, "example.org")  # several matches: a list to choose from
    assert "/accounts/?q=example.org" in page.url
    expect(page.locator("tr.account-row")).to_have_count(2)


def test_a_refused_queue_action_shows_its_message_in_the_row(
    page, live_server, login_as, support_user, customers
):
    flag = FlagFactory(account=customers["marta"], kind=FlagKind.MISSING_SUBSCRIPTION)
    login_as(page, support_user)
    page.goto(f"{live_server.url}/queue/")
    row = page.locator(f"#flag-{flag.pk}")
    row.locator("a.open-actions").click()
    row.locator("summary", has_text="Add note").click()
    row.locator("textarea[name=body]").fill("    ")
    row.locator("button", has_text="Save note").click()
    expect(page.locator(f"#flag-{flag.pk} [role=alert]")).to_have_text("A note cannot be empty.")

    # Someone else resolves it meanwhile: "Assign to me" is refused, and says why.
    flag_resolve(flag=flag, resolution="Sorted out by phone", actor="other@janitor.test")
    page.locator(f"#flag-{flag.pk}").get_by_role("button", name="Assign to me").click()
    expect(page.locator(f"#flag-{flag.pk} [role=alert]")).to_have_text(
        "This flag is already resolved."
    )
    flag.refresh_from_db()
    assert flag.assignee is None
    assert not FlagNote.objects.filter(flag=flag).exists()  # neither refusal wrote a note


def test_a_run_already_in_progress_is_shown_not_swallowed(page, live_server, login_as, admin_user):
    from reconciliation.models import ReconciliationRun, RunStatus

    ReconciliationRun.objects.create(status=RunStatus.RUNNING)
    login_as(page, admin_user)
    page.goto(f"{live_server.url}/reconciliation/")
    page.get_by_role("button", name="Run dry run now").click()
    expect(page.locator("#run-started [role=alert]")).to_contain_text("already in progress")


def test_an_ended_session_during_an_htmx_action_goes_to_sign_in_and_back(
    browser, live_server, login_as, support_user, customers
):
    flag = FlagFactory(account=customers["marta"])
    context = browser.new_context()
    try:
        page = login_as(context.new_page(), support_user)
        page.goto(f"{live_server.url}/queue/?kind={flag.kind}")
        row = page.locator(f"#flag-{flag.pk}")
        row.locator("a.open-actions").click()
        assign = row.get_by_role("button", name="Assign to me")
        expect(assign).to_be_visible()

        # Signed out in another tab.
        other = context.new_page()
        other.goto(f"{live_server.url}/")
        other.get_by_role("button", name="Sign out").click()
        other.wait_for_load_state("networkidle")
        other.close()

        assign.click()
        page.wait_for_url("**/login/?next=*")
        assert "next=%2Fqueue%2F%3Fkind%3D" in page.url
        # The sign-in page is the page, not pasted into the table.
        expect(page.locator("table")).to_have_count(0)
        page.fill("input[name=username]", support_user.email)
        page.fill("input[name=password]", "correct-horse-battery")
        page.click("button[type=submit]")
        page.wait_for_url(f"**/queue/?kind={flag.kind}")
        expect(page.locator(f"#flag-{flag.pk}")).to_be_visible()
        flag.refresh_from_db()
        assert flag.assignee is None  # nothing was done by the refused request
    finally:
        context.close()


def test_a_revocations_states_appear_without_reload(page, live_server, login_as, admin_user):
    from accounts.services.revocation import (
        revocation_step_pending,
        revocation_step_revoke,
        revocation_step_sessions,
    )

    customer = AccountFactory(email="revoked.soon@example.org")
    requester = StaffFactory(role=ROLE_ADMIN, email="requester@janitor.test")
    # Approved, its task not started yet (a worker picks it up in production).
    revocation = RevocationRequest.objects.create(
        account=customer,
        requested_by=requester,
        reason="Chargeback lost",
        status=RevocationStatus.APPROVED,
        decided_by=admin_user,
        decided_at=timezone.now(),
    )
    login_as(page, admin_user)
    page.goto(f"{live_server.url}/revocations/")
    status = page.get_by_test_id(f"status-{revocation.pk}")
    access = page.get_by_test_id(f"access-{revocation.pk}")
    expect(status).to_have_text("Approved, running")
    expect(access).to_have_text("Active")
    expect(page.locator("#revocations[data-polling]")).to_have_count(1)

    revocation_step_pending(revocation=RevocationRequest.objects.get(pk=revocation.pk))
    expect(access).to_have_text("Revocation pending", timeout=6000)

    revocation_step_sessions(revocation=RevocationRequest.objects.get(pk=revocation.pk))
    expect(page.get_by_test_id(f"steps-{revocation.pk}")).to_contain_text(
        "sessions ended", timeout=6000
    )

    revocation_step_revoke(revocation=RevocationRequest.objects.get(pk=revocation.pk))
    history = page.locator("#revocation-history")
    expect(history).to_contain_text("revoked.soon@example.org", timeout=6000)
    expect(history).to_contain_text("Completed")
    expect(page.locator("#revocations[data-polling]")).to_have_count(0)  # settled: no polling
    customer.refresh_from_db()
    assert customer.access_status == AccessStatus.REVOKED


def test_polling_waits_while_a_comment_is_being_written(
    page, live_server, login_as, admin_user, support_user
):
    """The list refreshes itself while a revocation runs; a comment half-written on another
    request must not be thrown away by that refresh."""
    from accounts.services.revocation import revocation_step_pending

    running = RevocationRequest.objects.create(
        account=AccountFactory(email="running@example.org"),
        requested_by=StaffFactory(role=ROLE_ADMIN, email="asker@janitor.test"),
        reason="Fraud",
        status=RevocationStatus.APPROVED,
        decided_by=admin_user,
        decided_at=timezone.now(),
    )
    waiting = RevocationRequest.objects.create(
        account=AccountFactory(email="waiting@example.org"), requested_by=support_user, reason="x"
    )
    login_as(page, admin_user)
    page.goto(f"{live_server.url}/revocations/")
    comment = page.locator(
        f"form[action$='/revocations/{waiting.pk}/reject/'] textarea[name=comment]"
    )
    comment.fill("The customer paid in full, see ticket 4411")
    revocation_step_pending(revocation=RevocationRequest.objects.get(pk=running.pk))
    page.wait_for_timeout(5000)  # two polling periods
    expect(comment).to_have_value("The customer paid in full, see ticket 4411")
    expect(page.get_by_test_id(f"access-{running.pk}")).to_have_text("Active")  # not refreshed
    comment.fill("")
    page.locator("h1").click()  # leave the field
    expect(page.get_by_test_id(f"access-{running.pk}")).to_have_text(
        "Revocation pending", timeout=6000
    )


def test_grace_ended_an_hour_ago_reads_overdue_in_the_queue(
    page, live_server, login_as, support_user
):
    account = AccountFactory(
        access_status=AccessStatus.GRACE_PERIOD,
        grace_ends_at=timezone.now() - timedelta(hours=1, minutes=5),
    )
    flag = FlagFactory(account=account, kind=FlagKind.PAYMENT_FAILED)
    login_as(page, support_user)
    page.goto(f"{live_server.url}/queue/")
    expect(page.locator(f"#flag-{flag.pk} [data-grace-days]")).to_have_text("Overdue by 1 hour")


def test_a_busy_button_cannot_be_pressed_twice(
    page, live_server, login_as, support_user, customers
):
    flag = FlagFactory(account=customers["marta"])
    login_as(page, support_user)
    page.goto(f"{live_server.url}/queue/")
    row = page.locator(f"#flag-{flag.pk}")
    row.locator("a.open-actions").click()
    row.locator("summary", has_text="Add note").click()
    row.locator("textarea[name=body]").fill("Only once, please.")
    # Two clicks in the same tick, as an impatient double-click sends them.
    state = page.evaluate(
        """(selector) => {
            const button = document.querySelector(selector);
            button.click();
            const busy = [button.disabled, button.getAttribute("aria-busy")];
            button.click();
            return busy;
        }""",
        f"#flag-{flag.pk} form[action$='/note/'] button",
    )
    assert state == [True, "true"]
    expect(page.locator(f"#flag-{flag.pk} .notes")).to_contain_text("Only once, please.")
    assert FlagNote.objects.filter(flag=flag, action="note").count() == 1
