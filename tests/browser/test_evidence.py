"""Chargeback evidence in real Chromium: finance opens an urgent dispute, gets the PDF, stages."""

import io
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from pypdf import PdfReader

from reconciliation.models import Dispute, EvidenceExport
from reconciliation.services.disputes import dispute_refresh
from tests.factories import AccountFactory, ActivityFactory


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_finance_opens_urgent_dispute_downloads_pdf_and_stages(
    page, live_server, login_as, finance_user, stripe_fake
):
    account = AccountFactory(email="disputer@example.com", stripe_customer_id="cus_browser")
    now = timezone.now()
    for hours in (3, 27, 51):
        ActivityFactory(account=account, occurred_at=now - timedelta(hours=hours))
    urgent = stripe_fake.add_customer_dispute(
        customer="cus_browser", due_by=int(time.time()) + 10 * 3600, amount=4900
    )
    later = stripe_fake.add_customer_dispute(
        customer="cus_browser", due_by=int(time.time()) + 12 * 86400
    )
    dispute_refresh(obj=later)
    dispute_refresh(obj=urgent)

    login_as(page, finance_user)
    page.goto(f"{live_server.url}/disputes/")
    rows = page.locator("tr.dispute-row")
    assert rows.count() == 2
    # Most urgent first.
    first = rows.first
    assert urgent["id"] in first.inner_text()
    first.get_by_role("link", name=urgent["id"]).click()
    page.wait_for_url(f"**/disputes/{urgent['id']}/")

    with page.expect_download() as download_info:
        page.click("#download-pdf")
    download = download_info.value
    content = open(download.path(), "rb").read()
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(content)).pages)
    assert "disputer@example.com" in text and urgent["id"] in text

    page.click("#stage-evidence")
    page.get_by_text("Evidence staged on Stripe (not submitted)").wait_for()
    assert "customer_email_address" in page.locator("#stripe-evidence").inner_text()
    at_stripe = stripe_fake.disputes[urgent["id"]]
    assert at_stripe["evidence"]["customer_email_address"] == "disputer@example.com"
    assert at_stripe["evidence"]["uncategorized_file"] in stripe_fake.files
    assert at_stripe["evidence_details"]["submission_count"] == 0

    # Submitting asks for confirmation first, then goes to Stripe for good.
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.check("input[name=confirm]")
    page.click("#submit-evidence")
    page.get_by_text("Evidence submitted to Stripe.").wait_for()
    assert dialogs and "for good" in dialogs[0]
    assert at_stripe["evidence_details"]["submission_count"] == 1
    assert Dispute.objects.get(provider_id=urgent["id"]).submission_count == 1
    kinds = set(EvidenceExport.objects.values_list("kind", flat=True))
    assert kinds == {"pdf", "stripe_stage", "stripe_submit"}
