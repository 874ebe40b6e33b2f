"""Evidence pages: the account panel, exports, the disputes queue, stage/submit, and who may."""

import csv
import io
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from reconciliation.models import EvidenceExport
from reconciliation.services.disputes import dispute_refresh
from tests.factories import AccountFactory, ActivityFactory, DisputeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def account():
    account = AccountFactory(email="ellis@example.com", stripe_customer_id="cus_views")
    ActivityFactory(account=account, occurred_at=timezone.now() - timedelta(hours=2))
    return account


@pytest.fixture
def staged_dispute(stripe_fake, account):
    obj = stripe_fake.add_customer_dispute(
        customer="cus_views", due_by=int(time.time()) + 3 * 86400
    )
    dispute = dispute_refresh(obj=obj)
    stripe_fake.requests.clear()  # the charge lookup is setup, not the test
    return dispute


def _actions(account, dispute):
    """Every export and dispute action: (url, data)."""
    return [
        (reverse("evidence_pdf", args=[account.public_id]), {}),
        (reverse("evidence_csv", args=[account.public_id]), {}),
        (reverse("dispute_stage", args=[dispute.provider_id]), {}),
        (reverse("dispute_submit", args=[dispute.provider_id]), {"confirm": "submit"}),
    ]


@pytest.mark.smoke
@pytest.mark.parametrize("who", ["support_client", "admin_client_", "customer_client"])
def test_non_finance_gets_403_on_every_export_and_dispute_action(
    request, who, account, staged_dispute, stripe_fake
):
    client = request.getfixturevalue(who)
    for url, data in _actions(account, staged_dispute):
        response = client.post(url, data)
        assert response.status_code == 403, url
    assert not EvidenceExport.objects.exists()
    assert stripe_fake.requests == []


def test_anonymous_is_sent_to_login(client, account, staged_dispute):
    for url, data in _actions(account, staged_dispute):
        response = client.post(url, data)
        assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.smoke
def test_finance_downloads_pdf_and_csv(finance_client, finance_user, account):
    pdf = finance_client.post(reverse("evidence_pdf", args=[account.public_id]), {"days": "7"})
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"].startswith("attachment;") and pdf.content[:4] == b"%PDF"
    response = finance_client.post(reverse("evidence_csv", args=[account.public_id]))
    body = b"".join(response.streaming_content).decode()
    assert body.startswith("occurred_at,kind,path") and body.count("\n") == 2
    exports = EvidenceExport.objects.order_by("at")
    assert [(e.kind, e.actor, e.account) for e in exports] == [
        ("pdf", finance_user, account),
        ("csv", finance_user, account),
    ]
    assert exports[0].details["days"] == 7
    panel = finance_client.get(
        reverse("account_evidence_panel", args=[account.public_id]), headers={"HX-Request": "true"}
    ).content.decode()
    assert panel.count('class="export-row"') == 2 and finance_user.email in panel
    # Downloads write an audit row: never on a GET.
    get = finance_client.get(reverse("evidence_pdf", args=[account.public_id]))
    assert get.status_code == 405


def test_panel_is_a_fragment_for_htmx_and_a_page_otherwise(
    finance_client, support_user, account, django_assert_max_num_queries
):
    url = reverse("account_evidence_panel", args=[account.public_id])
    with django_assert_max_num_queries(8):
        fragment = finance_client.get(url, headers={"HX-Request": "true"})
    html = fragment.content.decode()
    assert "<html" not in html and "1 event on 1 day" in html
    assert 'id="export-pdf"' in html
    page = finance_client.get(url).content.decode()
    assert "<html" in page and "1 event on 1 day" in page
    # Support reads the evidence but gets no export buttons.
    support_client = Client()
    support_client.force_login(support_user)
    support_html = support_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "1 event on" in support_html and "export-pdf" not in support_html


def test_panel_says_when_there_is_no_activity(finance_client):
    quiet = AccountFactory()
    url = reverse("account_evidence_panel", args=[quiet.public_id])
    html = finance_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "No activity recorded for this account" in html


def test_account_page_lazy_loads_the_panel(finance_client, account):
    html = finance_client.get(reverse("account_detail", args=[account.public_id])).content
    assert reverse("account_evidence_panel", args=[account.public_id]).encode() in html


@pytest.mark.smoke
def test_dispute_queue_is_sorted_by_urgency(support_client, django_assert_max_num_queries):
    now = timezone.now()
    later = DisputeFactory(provider_id="dp_later", due_by=now + timedelta(days=9))
    urgent = DisputeFactory(provider_id="dp_urgent", due_by=now + timedelta(hours=20))
    DisputeFactory(provider_id="dp_big", due_by=urgent.due_by, amount=99_00)
    DisputeFactory(provider_id="dp_won", status="won")
    DisputeFactory(provider_id="dp_nodue", due_by=None, account=None, customer_id="cus_x")
    for n in range(10):
        DisputeFactory(due_by=now + timedelta(days=20 + n))
    with django_assert_max_num_queries(8):
        response = support_client.get(reverse("dispute_list"))
    html = response.content.decode()
    order = [html.index(p) for p in ("dp_big", "dp_urgent", "dp_later", "dp_nodue")]
    assert order == sorted(order)
    assert "dp_won" not in html
    assert reverse("account_evidence_panel", args=[later.account.public_id]) in html
    assert "not linked (cus_x)" in html
    won = support_client.get(reverse("dispute_list"), {"status": "won"}).content.decode()
    assert "dp_won" in won and "dp_urgent" not in won


def test_dispute_queue_empty_state_and_pages(support_client):
    html = support_client.get(reverse("dispute_list")).content.decode()
    assert "No disputes need attention" in html
    for _ in range(55):
        DisputeFactory()
    first = support_client.get(reverse("dispute_list")).content.decode()
    assert first.count('class="dispute-row"') == 50 and "Page 1 of 2" in first
    second = support_client.get(reverse("dispute_list"), {"page": 2}).content.decode()
    assert second.count('class="dispute-row"') == 5


@pytest.mark.smoke
def test_finance_stages_then_submits_with_confirmation(finance_client, staged_dispute, stripe_fake):
    detail = reverse("dispute_detail", args=[staged_dispute.provider_id])
    html = finance_client.get(detail).content.decode()
    assert 'id="stage-evidence"' in html and "submit-evidence" not in html

    response = finance_client.post(reverse("dispute_stage", args=[staged_dispute.provider_id]))
    assert response.status_code == 302
    page = finance_client.get(detail).content.decode()
    assert "Evidence staged on Stripe" in page and "customer_email_address" in page
    assert 'hx-confirm="Submit this evidence to Stripe for good?' in page

    submit = reverse("dispute_submit", args=[staged_dispute.provider_id])
    finance_client.post(submit)  # no confirm field
    assert (
        stripe_fake.disputes[staged_dispute.provider_id]["evidence_details"]["submission_count"]
        == 0
    )
    assert "Not submitted" in finance_client.get(detail).content.decode()

    confirmed = finance_client.post(submit, {"confirm": "submit"}, headers={"HX-Request": "true"})
    assert confirmed.status_code == 200 and confirmed["HX-Redirect"] == detail
    assert (
        stripe_fake.disputes[staged_dispute.provider_id]["evidence_details"]["submission_count"]
        == 1
    )
    after = finance_client.get(detail).content.decode()
    assert "Evidence submitted to Stripe." in after and "submit-evidence" not in after


def test_support_sees_the_dispute_without_actions(support_client, staged_dispute):
    html = support_client.get(
        reverse("dispute_detail", args=[staged_dispute.provider_id])
    ).content.decode()
    assert staged_dispute.provider_id in html and "stage-evidence" not in html


def test_past_due_dispute_is_refused_with_a_message(finance_client, account, stripe_fake):
    obj = stripe_fake.add_customer_dispute(customer="cus_views", due_by=int(time.time()) - 60)
    dispute = dispute_refresh(obj=obj)
    stripe_fake.requests.clear()  # the charge lookup is setup, not the test
    finance_client.post(reverse("dispute_stage", args=[dispute.provider_id]))
    html = finance_client.get(reverse("dispute_detail", args=[dispute.provider_id])).content
    assert b"deadline to respond to this dispute has passed" in html
    assert stripe_fake.requests == []


@pytest.mark.parametrize("trigger", ["=", "+", "-", "@", "\t", "\r"])
def test_evidence_csv_cannot_carry_a_formula(finance_client, account, trigger):
    """Paths, user agents and event ids are the product's input: none may start a formula."""
    ActivityFactory(
        account=account,
        path=f'{trigger}HYPERLINK("http://evil.example/")',
        user_agent=f"{trigger}1+1",
        client_event_id=f"{trigger}evt",
        source="1",
    )
    response = finance_client.post(reverse("evidence_csv", args=[account.public_id]))
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    crafted = [row for row in rows if row[2].endswith('HYPERLINK("http://evil.example/")')]
    assert len(crafted) == 1
    assert crafted[0][2] == f'\'{trigger}HYPERLINK("http://evil.example/")'
    assert crafted[0][4] == f"'{trigger}1+1" and crafted[0][6] == f"'{trigger}evt"
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)


def test_a_window_starting_in_the_far_future_is_capped_not_millions_of_days(
    finance_client, account
):
    """since=9999-12-31 was swapped with now into a window of 2.9 million days, one chart bar
    and one row each: a worker killed at its timeout, over a gigabyte of memory."""
    from reconciliation.forms import EvidenceWindowForm
    from reconciliation.selectors.evidence import EVIDENCE_MAX_DAYS, evidence_for_account

    since, until = EvidenceWindowForm({"since": "9999-12-31"}).window()
    assert since is not None and since <= timezone.now()
    evidence = evidence_for_account(account=account, since=since, until=until)
    assert evidence.summary.days <= EVIDENCE_MAX_DAYS
    assert len(evidence.daily) <= EVIDENCE_MAX_DAYS + 1
    # Whoever calls the selector, the window stays within the limit.
    far = timezone.now() + timedelta(days=2_900_000)
    capped = evidence_for_account(account=account, since=far)
    assert capped.summary.days <= EVIDENCE_MAX_DAYS and len(capped.daily) <= EVIDENCE_MAX_DAYS + 1

    pdf = finance_client.post(
        reverse("evidence_pdf", args=[account.public_id]), {"since": "9999-12-31"}
    )
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"


@pytest.mark.parametrize("name", ["evidence_csv", "evidence_pdf", "account_evidence_panel"])
def test_a_window_in_year_one_is_an_empty_pack_not_a_500(finance_client, account, name):
    """The year's cap subtracted 366 days from the window's end whatever its length, and a
    window ending in the year 1 went below the first date there is (OverflowError, a 500)."""
    finance_client.raise_request_exception = False
    url = reverse(name, args=[account.public_id])
    window = {"since": "0001-01-01", "until": "0001-01-02"}
    response = (
        finance_client.get(url, window)
        if name == "account_evidence_panel"
        else finance_client.post(url, window)
    )
    assert response.status_code == 200, response.status_code
