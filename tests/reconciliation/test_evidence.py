"""The evidence selector, the PDF and CSV exports (audited) and the evidence command."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from pypdf import PdfReader

from accounts.models import ActivityKind
from reconciliation.models import EvidenceExport
from reconciliation.selectors.evidence import evidence_for_account, evidence_summary
from reconciliation.services.evidence import evidence_csv_export, evidence_pdf_export
from tests.factories import (
    AccountFactory,
    ActivityFactory,
    SubscriptionFactory,
    WebhookEventFactory,
)


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


@pytest.fixture
def crafted(db):
    """An account with known activity: 3 days in the window, 3 IPs, 2 logins, 1 old row."""
    account = AccountFactory(email="dana@example.com", name="Dana Example")
    now = timezone.now()
    day = timedelta(days=1)
    rows = [
        (now - 1 * day, ActivityKind.REQUEST, "203.0.113.1"),
        (now - 1 * day + timedelta(minutes=5), ActivityKind.LOGIN, "203.0.113.1"),
        (now - 3 * day, ActivityKind.REQUEST, "203.0.113.2"),
        (now - 3 * day + timedelta(minutes=1), ActivityKind.API, None),
        (now - 10 * day, ActivityKind.LOGIN, "2001:db8::7"),
        (now - 40 * day, ActivityKind.REQUEST, "198.51.100.99"),  # outside 30 days
    ]
    for occurred_at, kind, ip in rows:
        ActivityFactory(account=account, occurred_at=occurred_at, kind=kind, ip_address=ip)
    ActivityFactory(occurred_at=now)  # someone else's activity
    subscription = SubscriptionFactory(account=account, status="active", plan_name="Pro")
    WebhookEventFactory(
        type="invoice.paid", customer_id=account.stripe_customer_id, created=now - 2 * day
    )
    return account, rows, subscription


def EVIDENCE_QUERIES() -> int:
    """Members, the activity grouped (one query on PostgreSQL, by pair and by day elsewhere),
    logins, subscriptions, events, audit; and without Redis the session index is a table."""
    from django.conf import settings
    from django.db import connection

    return 6 + (connection.vendor != "postgresql") + (not settings.REDIS_URL)


@pytest.mark.smoke
def test_summary_figures_on_crafted_data(crafted, django_assert_num_queries):
    account, rows, _ = crafted
    with django_assert_num_queries(2):  # the members, then one aggregate over their activity
        summary = evidence_summary(account=account, days=30)
    in_window = rows[:5]
    assert summary.activity_count == 5
    assert summary.logins == 2
    assert summary.distinct_ips == 3  # NULL is not an address
    assert summary.active_days == len({r[0].astimezone(UTC).date() for r in in_window})
    assert summary.first_seen == rows[4][0]
    assert summary.last_seen == rows[1][0]
    wider = evidence_summary(account=account, days=60)
    assert wider.activity_count == 6 and wider.distinct_ips == 4


@pytest.mark.smoke
def test_full_evidence_in_a_fixed_number_of_queries(crafted, django_assert_num_queries):
    account, rows, subscription = crafted
    with django_assert_num_queries(EVIDENCE_QUERIES()):
        evidence = evidence_for_account(account=account)
    assert evidence.subscription == subscription and evidence.subscription_status == "active"
    assert evidence.provider == "stripe"
    assert len(evidence.daily) == 31 and sum(d.total for d in evidence.daily) == 5
    assert sum(d.logins for d in evidence.daily) == 2
    assert {ip.ip for ip in evidence.ips} == {"203.0.113.1", "203.0.113.2", "2001:db8::7"}
    top = evidence.ips[0]
    assert (top.ip, top.total, top.logins) == ("203.0.113.1", 2, 1)
    assert [login.occurred_at for login in evidence.logins] == [rows[1][0], rows[4][0]]
    kinds = {entry.kind for entry in evidence.timeline}
    assert kinds == {"subscription", "event"}
    assert any("invoice.paid" in entry.text for entry in evidence.timeline)


def test_query_count_does_not_grow_with_data(crafted, django_assert_num_queries):
    account, _, _ = crafted
    now = timezone.now()
    for n in range(60):
        ActivityFactory(
            account=account, occurred_at=now - timedelta(hours=n), ip_address=f"192.0.2.{n}"
        )
        WebhookEventFactory(type="invoice.paid", customer_id=account.stripe_customer_id)
    with django_assert_num_queries(EVIDENCE_QUERIES()):
        evidence = evidence_for_account(account=account)
    assert evidence.summary.activity_count == 65


@pytest.mark.smoke
def test_pdf_shows_email_and_last_activity(crafted, finance_user):
    account, rows, _ = crafted
    pdf = evidence_pdf_export(account=account, actor=finance_user)
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    assert "dana@example.com" in text
    assert f"{rows[1][0].astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" in text
    assert account.public_id in text
    assert "203.0.113.1" in text and "2001:db8::7" in text
    assert "invoice.paid" in text and "Daily activity" in text
    assert "Page 1 of" in text
    assert f"by {finance_user.email}" in text
    export = EvidenceExport.objects.get()
    assert (export.kind, export.account, export.actor) == ("pdf", account, finance_user)
    assert export.details["bytes"] == len(pdf) and export.details["activity_count"] == 5


def test_pdf_for_account_without_activity_says_so(db, finance_user):
    account = AccountFactory(email="quiet@example.com")
    text = pdf_text(evidence_pdf_export(account=account, actor=finance_user))
    assert "quiet@example.com" in text
    assert "No activity was recorded for this account" in text
    assert "Daily activity" not in text


def test_pdf_renders_non_ascii(db, finance_user):
    account = AccountFactory(email="zoe@example.com", name="Zoë Ångström")
    ActivityFactory(account=account)
    text = pdf_text(evidence_pdf_export(account=account, actor=finance_user))
    assert "Zoë Ångström" in text


def test_csv_has_raw_rows_and_is_audited(crafted, finance_user):
    account, rows, _ = crafted
    ActivityFactory(account=account, path="=HYPERLINK(1)")
    lines = "".join(evidence_csv_export(account=account, actor=finance_user, days=30))
    parsed = list(csv.reader(io.StringIO(lines)))
    assert parsed[0][:4] == ["occurred_at", "kind", "path", "ip_address"]
    assert len(parsed) == 1 + 6
    assert "'=HYPERLINK(1)" in [row[2] for row in parsed]  # not run as a formula
    assert datetime.fromisoformat(parsed[-1][0]) == rows[4][0]  # newest first, oldest last
    assert EvidenceExport.objects.get().kind == "csv"


def test_command_prints_summary_and_writes_files(crafted, finance_user, tmp_path):
    account, rows, _ = crafted
    out = io.StringIO()
    pdf_path, csv_path = tmp_path / "e.pdf", tmp_path / "e.csv"
    call_command(
        "evidence",
        account.public_id,
        "--days",
        "30",
        "--pdf",
        str(pdf_path),
        "--csv",
        str(csv_path),
        "--actor",
        finance_user.email,
        stdout=out,
    )
    printed = out.getvalue()
    assert "dana@example.com" in printed
    assert "5 events on" in printed and "Logins:         2" in printed
    assert f"{rows[1][0].astimezone(UTC):%Y-%m-%d %H:%M:%S}" in printed
    assert "dana@example.com" in pdf_text(pdf_path.read_bytes())
    assert csv_path.read_text().count("\n") == 6
    assert set(EvidenceExport.objects.values_list("kind", flat=True)) == {"pdf", "csv"}


def test_command_without_activity_and_refusals(db, support_user):
    account = AccountFactory()
    out = io.StringIO()
    call_command("evidence", account.public_id, stdout=out)
    assert "NONE recorded" in out.getvalue()
    with pytest.raises(CommandError, match="No account"):
        call_command("evidence", "user-nope")
    with pytest.raises(CommandError, match="--actor"):
        call_command("evidence", account.public_id, "--pdf", "/tmp/x.pdf")
    with pytest.raises(CommandError, match="not a staff user allowed"):
        call_command(
            "evidence", account.public_id, "--pdf", "/tmp/x.pdf", "--actor", support_user.email
        )
    assert not EvidenceExport.objects.exists()
