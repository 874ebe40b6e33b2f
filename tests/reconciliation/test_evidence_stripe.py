"""Staging and submitting dispute evidence: the real SDK over HTTP to the local fake Stripe."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from reconciliation.models import Dispute, EvidenceExport
from reconciliation.services.disputes import dispute_refresh
from reconciliation.services.evidence import (
    FIELD_MAX_CHARS,
    TOTAL_MAX_CHARS,
    EvidenceRefused,
    dispute_evidence_stage,
    dispute_evidence_submit,
    evidence_fit,
)
from tests.factories import AccountFactory, ActivityFactory

pytestmark = pytest.mark.django_db


def disputed_account(stripe_fake, *, rows=5, due_in=7 * 86400, spacing=timedelta(hours=7)):
    """An account with activity and a dispute that exists both at the fake and in the mirror."""
    account = AccountFactory(
        email="payer@example.com", name="Pat Payer", stripe_customer_id="cus_evid"
    )
    now = timezone.now()
    for n in range(rows):
        ActivityFactory(
            account=account,
            occurred_at=now - n * spacing,
            ip_address=f"198.51.100.{n % 250}",
            path=f"/app/page/{n}",
        )
    # The disputed charge paid for a period that began before the oldest activity, so the
    # default window (the service period to now) holds every row.
    obj = stripe_fake.add_customer_dispute(
        customer="cus_evid",
        due_by=int(time.time()) + due_in,
        charged_days_ago=(rows * spacing).days + 2,
    )
    dispute = dispute_refresh(obj=obj)
    stripe_fake.requests.clear()  # the charge lookup is setup, not the test
    assert dispute.account == account
    return account, dispute


def form_of(request) -> dict:
    return request.form


@pytest.mark.smoke
def test_stage_uploads_pdf_and_stages_without_submitting(stripe_fake, finance_user):
    account, dispute = disputed_account(stripe_fake)
    staged = dispute_evidence_stage(dispute=dispute, actor=finance_user)

    uploads = stripe_fake.requests_to("/v1/files", "POST")
    assert len(uploads) == 1
    assert uploads[0].form["purpose"] == "dispute_evidence"
    pdf = uploads[0].files["file"]
    assert pdf.startswith(b"%PDF") and len(pdf) <= 5 * 1024 * 1024

    updates = stripe_fake.requests_to(f"/v1/disputes/{dispute.provider_id}", "POST")
    assert len(updates) == 1
    form = updates[0].form
    assert form["submit"] == "false"
    assert form["evidence[customer_email_address]"] == "payer@example.com"
    assert form["evidence[customer_name]"] == "Pat Payer"
    assert form["evidence[uncategorized_file]"] == staged.evidence_staged["file_id"]
    assert form["evidence[product_description]"]
    log = form["evidence[access_activity_log]"]
    assert "198.51.100.0" in log and "payer@example.com" in log and len(log) <= FIELD_MAX_CHARS
    assert " to " in form["evidence[service_date]"]
    text_total = sum(
        len(v) for k, v in form.items() if k.startswith("evidence[") and "file" not in k
    )
    assert text_total <= TOTAL_MAX_CHARS

    # The fake holds it staged, not submitted.
    at_stripe = stripe_fake.disputes[dispute.provider_id]
    assert at_stripe["evidence_details"]["submission_count"] == 0
    assert at_stripe["evidence"]["customer_email_address"] == "payer@example.com"
    assert staged.staged_at is not None and staged.submission_count == 0
    export = EvidenceExport.objects.get(kind="stripe_stage")
    assert (export.actor, export.dispute, export.account) == (finance_user, staged, account)


@pytest.mark.smoke
def test_submit_sends_submit_true_once(stripe_fake, finance_user):
    _, dispute = disputed_account(stripe_fake)
    with pytest.raises(EvidenceRefused, match="Stage the evidence first"):
        dispute_evidence_submit(dispute=dispute, actor=finance_user)
    dispute = dispute_evidence_stage(dispute=dispute, actor=finance_user)
    submitted = dispute_evidence_submit(dispute=dispute, actor=finance_user)
    last = stripe_fake.requests_to(f"/v1/disputes/{dispute.provider_id}", "POST")[-1]
    assert last.form["submit"] == "true"
    assert stripe_fake.disputes[dispute.provider_id]["evidence_details"]["submission_count"] == 1
    assert (submitted.submission_count, submitted.status) == (1, "under_review")
    assert submitted.submitted_at is not None
    assert EvidenceExport.objects.filter(kind="stripe_submit").count() == 1
    # A second attempt is refused here, before Stripe is asked.
    calls = len(stripe_fake.requests)
    with pytest.raises(EvidenceRefused, match="already submitted"):
        dispute_evidence_submit(dispute=submitted, actor=finance_user)
    with pytest.raises(EvidenceRefused, match="already submitted"):
        dispute_evidence_stage(dispute=submitted, actor=finance_user)
    assert len(stripe_fake.requests) == calls


def test_past_deadline_is_refused_without_calling_stripe(stripe_fake, finance_user):
    _, dispute = disputed_account(stripe_fake)
    Dispute.objects.filter(pk=dispute.pk).update(due_by=timezone.now() - timedelta(minutes=1))
    dispute.refresh_from_db()
    calls = len(stripe_fake.requests)
    with pytest.raises(EvidenceRefused, match="deadline"):
        dispute_evidence_stage(dispute=dispute, actor=finance_user)
    assert len(stripe_fake.requests) == calls
    assert not EvidenceExport.objects.exists()


def test_long_activity_log_is_truncated_with_a_visible_note(stripe_fake, finance_user):
    _, dispute = disputed_account(stripe_fake, rows=900, spacing=timedelta(minutes=20))
    staged = dispute_evidence_stage(dispute=dispute, actor=finance_user)
    form = stripe_fake.requests_to(f"/v1/disputes/{dispute.provider_id}", "POST")[-1].form
    log = form["evidence[access_activity_log]"]
    assert len(log) <= FIELD_MAX_CHARS
    assert "900 recorded accesses" in log
    assert log.rstrip().endswith("Full detail in the attached PDF.]")
    assert "[Truncated to Stripe's limit:" in log
    # No half-written line before the note.
    assert log.split("\n[Truncated")[0].splitlines()[-1].count("|") == 4
    assert any("access_activity_log" in note for note in staged.evidence_staged["notes"])


def test_fit_respects_field_and_total_limits():
    fields = {f"field_{n}": "line of text\n" * 3000 for n in range(9)}  # 39,000 chars each
    fitted, notes = evidence_fit(fields)
    assert all(len(v) <= FIELD_MAX_CHARS for v in fitted.values())
    assert sum(len(v) for v in fitted.values()) <= TOTAL_MAX_CHARS
    assert all("[Truncated" in v for v in fitted.values())
    assert len(notes) >= 9
    short = {"customer_email_address": "a@example.com"}
    assert evidence_fit(short) == (short, [])


def test_stripe_error_is_reported_and_nothing_recorded(stripe_fake, finance_user):
    from reconciliation.gateway import GatewayError

    _, dispute = disputed_account(stripe_fake)
    stripe_fake.fail(f"/v1/disputes/{dispute.provider_id}", status=400)
    with pytest.raises(GatewayError):
        dispute_evidence_stage(dispute=dispute, actor=finance_user)
    dispute.refresh_from_db()
    assert dispute.staged_at is None
    assert not EvidenceExport.objects.exists()


def test_unlinked_dispute_is_refused(stripe_fake, finance_user):
    obj = stripe_fake.add_customer_dispute(
        customer="cus_evid",
    )
    dispute = dispute_refresh(obj=obj)
    stripe_fake.requests.clear()  # the charge lookup is setup, not the test
    with pytest.raises(EvidenceRefused, match="not linked"):
        dispute_evidence_stage(dispute=dispute, actor=finance_user)


def test_no_response_possible_and_closed_disputes_are_refused(stripe_fake, finance_user):
    _, dispute = disputed_account(stripe_fake)
    Dispute.objects.filter(pk=dispute.pk).update(due_by=None)
    dispute.refresh_from_db()
    with pytest.raises(EvidenceRefused, match="no response due"):
        dispute_evidence_stage(dispute=dispute, actor=finance_user)
    Dispute.objects.filter(pk=dispute.pk).update(
        due_by=timezone.now() + timedelta(days=1), status="won"
    )
    dispute.refresh_from_db()
    with pytest.raises(EvidenceRefused, match="is won"):
        dispute_evidence_stage(dispute=dispute, actor=finance_user)
    assert stripe_fake.requests == []
