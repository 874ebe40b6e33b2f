"""Evidence exports (PDF, CSV) and staging/submitting evidence on a Stripe dispute; all audited."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Account, ActivityLog, User
from janitor.csv_writer import csv_lines
from janitor.errors import ErrorKind, JanitorError
from reconciliation import gateway
from reconciliation.models import Dispute, EvidenceExport
from reconciliation.selectors.evidence import (
    ActivityRow,
    Evidence,
    activity_log_rows,
    dispute_evidence_window,
    evidence_for_account,
)
from reconciliation.services.disputes import OPEN_STATUSES

# Stripe's limits (stripe-facts.md): per text field, whole evidence hash, uploaded file.
FIELD_MAX_CHARS = 20_000
TOTAL_MAX_CHARS = 150_000
FILE_MAX_BYTES = 5 * 1024 * 1024
ACTIVITY_LOG_ROWS = 2_000  # more than 20,000 characters' worth: the text is cut to fit anyway
CHART_WIDTH = 680
CHART_HEIGHT = 150

KIND_PDF = "pdf"
KIND_CSV = "csv"
KIND_STAGE = "stripe_stage"
KIND_SUBMIT = "stripe_submit"


class EvidenceRefused(JanitorError):
    """The dispute cannot take evidence now; the message says why, for the person asking."""

    kind = ErrorKind.CONFLICT


# --- PDF ------------------------------------------------------------------------------------


def _chart(evidence: Evidence) -> dict[str, Any]:
    """Bar geometry for the inline SVG daily-activity chart."""
    daily = evidence.daily
    peak = max((d.total for d in daily), default=0)
    slot = CHART_WIDTH / max(len(daily), 1)
    bars = []
    for index, day in enumerate(daily):
        height = round(CHART_HEIGHT * day.total / peak, 1) if peak else 0
        bars.append(
            {
                "x": round(index * slot + slot * 0.1, 1),
                "y": round(CHART_HEIGHT - height, 1),
                "width": round(slot * 0.8, 1),
                "height": height,
                "day": day,
                "label": index % max(len(daily) // 6, 1) == 0,
                "label_x": round(index * slot + slot / 2, 1),
            }
        )
    return {"bars": bars, "peak": peak, "width": CHART_WIDTH, "height": CHART_HEIGHT}


def evidence_pdf_render(
    *, evidence: Evidence, actor: User | None, dispute: Dispute | None = None
) -> bytes:
    """Render the evidence pack (no audit row: callers that hand it out write one)."""
    from janitor.pdf import pdf_render  # imported here: loading WeasyPrint slows start-up

    html = render_to_string(
        "reconciliation/evidence_pdf.html",
        {
            "evidence": evidence,
            "summary": evidence.summary,
            "account": evidence.account,
            "chart": _chart(evidence),
            "dispute": dispute,
            "actor": actor,
            "generated_at": timezone.now(),
            "product_description": settings.JANITOR_PRODUCT_DESCRIPTION,
        },
    )
    return pdf_render(html=html)


def _audit(
    *, kind: str, account: Account, actor: User, dispute: Dispute | None, details: dict[str, Any]
) -> EvidenceExport:
    return EvidenceExport.objects.create(
        account=account, dispute=dispute, kind=kind, actor=actor, at=timezone.now(), details=details
    )


def evidence_window_for(
    *,
    dispute: Dispute | None,
    days: int | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[datetime | None, datetime | None]:
    """The window an export covers: the one Finance chose, else (for a dispute) the disputed
    charge's service period to now, else the last `days` days (since None)."""
    if since is not None:
        return since, until
    if dispute is not None and not days:
        window = dispute_evidence_window(dispute=dispute)
        if window is not None:
            return window.since, window.until
    return None, None


def evidence_pdf_export(
    *,
    account: Account,
    actor: User,
    days: int | None = None,
    dispute: Dispute | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> bytes:
    """The PDF evidence pack for `account`, with an audit row naming who took it."""
    since, until = evidence_window_for(dispute=dispute, days=days, since=since, until=until)
    evidence = evidence_for_account(account=account, days=days, since=since, until=until)
    pdf = evidence_pdf_render(evidence=evidence, actor=actor, dispute=dispute)
    _audit(
        kind=KIND_PDF,
        account=account,
        actor=actor,
        dispute=dispute,
        details={
            "days": evidence.summary.days,
            "since": evidence.summary.since.isoformat(),
            "until": evidence.summary.until.isoformat(),
            "bytes": len(pdf),
            "sha256": hashlib.sha256(pdf).hexdigest(),
            "activity_count": evidence.summary.activity_count,
        },
    )
    return pdf


# --- CSV ------------------------------------------------------------------------------------

# member_email last: the columns before it are the ones single-person exports always had.
CSV_HEADER = [
    "occurred_at",
    "kind",
    "path",
    "ip_address",
    "user_agent",
    "source",
    "event_id",
    "member_email",
]


def evidence_csv_export(
    *,
    account: Account,
    actor: User,
    days: int | None = None,
    dispute: Dispute | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[str]:
    """Audit the export, then stream the raw activity of the window as CSV lines (the same
    window as the PDF: chosen, else the dispute's, else the last `days` days)."""
    since, until = evidence_window_for(dispute=dispute, days=days, since=since, until=until)
    rows = activity_log_rows(account=account, days=days, since=since, until=until)
    details: dict[str, Any] = {"days": days or settings.JANITOR_EVIDENCE_DAYS}
    if since is not None:
        details = {"since": since.isoformat(), "until": (until or timezone.now()).isoformat()}
    _audit(kind=KIND_CSV, account=account, actor=actor, dispute=dispute, details=details)
    return _csv_lines(rows)


def _csv_lines(rows: QuerySet[ActivityLog, ActivityRow]) -> Iterator[str]:
    return csv_lines(
        header=CSV_HEADER,
        rows=(
            [occurred_at.isoformat(), kind, path, ip or "", user_agent, source, event_id, email]
            for occurred_at, kind, path, ip, user_agent, source, event_id, email in rows.iterator(
                chunk_size=2000
            )
        ),
    )


# --- Stripe dispute evidence ----------------------------------------------------------------


def _truncated(text: str, limit: int, what: str) -> tuple[str, str | None]:
    """`text` cut to at most `limit` characters, ending with a visible note saying so."""
    if len(text) <= limit:
        return text, None

    def note_for(omitted: int) -> str:
        return f"\n[Truncated to Stripe's limit: {omitted:,} characters omitted. {what}]"

    # Room for the note with the largest count it could print.
    cut = text[: max(limit - len(note_for(len(text))), 0)]
    # End on a whole line so no timestamp or IP is left half-written.
    if "\n" in cut:
        cut = cut[: cut.rfind("\n")]
    field_name = what.split(".")[0]
    return (
        cut + note_for(len(text) - len(cut)),
        f"{field_name}: cut from {len(text):,} to {len(cut):,} characters",
    )


def evidence_fit(fields: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Fit text evidence into Stripe's limits: each field, then the total. Returns notes."""
    notes: list[str] = []
    fitted: dict[str, str] = {}
    for name, value in fields.items():
        text, note = _truncated(value, FIELD_MAX_CHARS, f"{name}. Full detail in the attached PDF.")
        if note:
            notes.append(note)
        fitted[name] = text
    total = sum(len(v) for v in fitted.values())
    while total > TOTAL_MAX_CHARS:
        # Shrink the longest field first: it has the most to spare.
        name = max(fitted, key=lambda n: len(fitted[n]))
        allowed = max(len(fitted[name]) - (total - TOTAL_MAX_CHARS), 200)
        text, _ = _truncated(fitted[name], allowed, f"{name}. Full detail in the attached PDF.")
        notes.append(f"{name}: cut to {len(text):,} characters to fit the 150,000 total")
        fitted[name] = text
        total = sum(len(v) for v in fitted.values())
    return fitted, notes


# Members listed in the access log sent to Stripe, busiest first.
ACCESS_LOG_MEMBERS = 20


def access_activity_log_text(
    *, evidence: Evidence, rows: QuerySet[ActivityLog, ActivityRow]
) -> str:
    """Stripe's access_activity_log: a summary line, then one line per access with time and IP."""
    summary = evidence.summary
    account = evidence.account
    lines = [
        f"Access log of {account.name or account.email} (account {account.public_id}) from "
        f"{summary.since:%Y-%m-%d} to {summary.until:%Y-%m-%d} (UTC): "
        f"{summary.activity_count} recorded accesses on {summary.active_days} days by "
        f"{summary.active_members} of the account's {summary.members_total} members, from "
        f"{summary.distinct_ips} IP addresses, {summary.logins} logins; "
        f"{summary.sessions_now} sessions active at {evidence.generated_at:%Y-%m-%d %H:%M} UTC.",
    ]
    used = [m for m in evidence.members if m.total]
    if used:
        # The busiest members only: the access rows below must survive Stripe's field limit
        # for a team of hundreds (every member is in the attached PDF).
        lines.append("Most active members (email | accesses | logins | IPs | first | last):")
        for m in used[:ACCESS_LOG_MEMBERS]:
            lines.append(
                f"{m.email} | {m.total} | {m.logins} | {m.distinct_ips} | "
                f"{m.first_seen:%Y-%m-%d} | {m.last_seen:%Y-%m-%d}"
            )
        if len(used) > ACCESS_LOG_MEMBERS:
            lines.append(f"... and {len(used) - ACCESS_LOG_MEMBERS} more members (see the PDF).")
    lines.append("Time (UTC) | member | IP address | kind | path")
    for occurred_at, kind, path, ip, _agent, _source, _event_id, email in rows:
        lines.append(
            f"{occurred_at:%Y-%m-%d %H:%M:%S} | {email} | {ip or '-'} | {kind} | {path or '-'}"
        )
    return "\n".join(lines)


def dispute_evidence_build(
    *, dispute: Dispute, evidence: Evidence
) -> tuple[dict[str, str], list[str]]:
    """The text evidence fields for this dispute, already within Stripe's limits."""
    account = evidence.account
    summary = evidence.summary
    rows = activity_log_rows(
        account=account, since=summary.since, until=summary.until, limit=ACTIVITY_LOG_ROWS
    )
    fields = {
        "access_activity_log": access_activity_log_text(evidence=evidence, rows=rows),
        "customer_email_address": account.email or next((m.email for m in evidence.members), ""),
        "product_description": settings.JANITOR_PRODUCT_DESCRIPTION,
    }
    if account.name:
        fields["customer_name"] = account.name
    # The account's use at a glance: who on the team used it, and how much is live right now.
    fields["uncategorized_text"] = (
        f"{evidence.one_line()}. {summary.active_members} of {summary.members_total} members "
        f"used the product between {summary.since:%Y-%m-%d} and {summary.until:%Y-%m-%d}; "
        "per-member use is in the access log and the attached PDF."
    )
    if summary.first_seen and summary.last_seen:
        first, last = f"{summary.first_seen:%Y-%m-%d}", f"{summary.last_seen:%Y-%m-%d}"
        fields["service_date"] = first if first == last else f"{first} to {last}"
    return evidence_fit(fields)


def _refuse_if_closed(dispute: Dispute) -> None:
    if dispute.submission_count > 0 or dispute.submitted_at is not None:
        raise EvidenceRefused(
            "Evidence for this dispute was already submitted; Stripe accepts it only once."
        )
    if dispute.due_by is None:
        raise EvidenceRefused("Stripe accepts no evidence for this dispute (no response due).")
    if dispute.due_by <= timezone.now():
        raise EvidenceRefused(
            "The deadline to respond to this dispute has passed "
            f"({dispute.due_by:%Y-%m-%d %H:%M} UTC)."
        )
    if dispute.status not in OPEN_STATUSES:
        raise EvidenceRefused(f"This dispute is {dispute.status}: it takes no more evidence.")
    if dispute.account_id is None:
        raise EvidenceRefused(
            "This dispute is not linked to an account, so there is no evidence to send."
        )


def dispute_evidence_stage(
    *,
    dispute: Dispute,
    actor: User,
    days: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Dispute:
    """Upload the PDF and stage the evidence on the Stripe dispute (submit=false). The window
    is the one Finance chose, else the disputed charge's service period to now."""
    _refuse_if_closed(dispute)
    account = dispute.account
    assert account is not None  # _refuse_if_closed refuses an unlinked dispute
    since, until = evidence_window_for(dispute=dispute, days=days, since=since, until=until)
    evidence = evidence_for_account(account=account, days=days, since=since, until=until)
    fields, notes = dispute_evidence_build(dispute=dispute, evidence=evidence)
    pdf = evidence_pdf_render(evidence=evidence, actor=actor, dispute=dispute)
    file_id = None
    if len(pdf) <= FILE_MAX_BYTES:
        file_id = gateway.file_upload(
            content=pdf, filename=f"evidence-{dispute.provider_id}.pdf", purpose="dispute_evidence"
        )
        fields["uncategorized_file"] = file_id
    else:
        notes.append(
            f"PDF not attached: {len(pdf):,} bytes is over Stripe's 5 MB limit; "
            "attach a shorter window by hand."
        )
    gateway.dispute_evidence_update(dispute_id=dispute.provider_id, evidence=fields, submit=False)

    with transaction.atomic():
        locked = Dispute.objects.select_for_update().get(pk=dispute.pk)
        locked.evidence_staged = {
            "fields": fields,
            "notes": notes,
            "file_id": file_id,
            "pdf_bytes": len(pdf),
            "days": evidence.summary.days,
            "since": evidence.summary.since.isoformat(),
            "until": evidence.summary.until.isoformat(),
            "staged_by": actor.email,
        }
        locked.staged_at = timezone.now()
        locked.save(update_fields=["evidence_staged", "staged_at"])
        _audit(
            kind=KIND_STAGE,
            account=account,
            actor=actor,
            dispute=locked,
            details={
                "fields": {name: len(value) for name, value in fields.items()},
                "notes": notes,
                "file_id": file_id,
                "pdf_sha256": hashlib.sha256(pdf).hexdigest(),
            },
        )
    return locked


def dispute_evidence_submit(*, dispute: Dispute, actor: User) -> Dispute:
    """Submit the staged evidence for good. Held under a row lock so a double click submits once."""
    with transaction.atomic():
        locked = Dispute.objects.select_for_update().get(pk=dispute.pk)
        _refuse_if_closed(locked)
        staged = (locked.evidence_staged or {}).get("fields")
        if not staged or locked.staged_at is None:
            raise EvidenceRefused("Stage the evidence first, review it, then submit.")
        # Send what finance reviewed, so an edit made elsewhere meanwhile is not what goes out.
        result = gateway.dispute_evidence_update(
            dispute_id=locked.provider_id, evidence=staged, submit=True
        )
        details = result.get("evidence_details") or {}
        locked.submission_count = int(details.get("submission_count") or 1)
        locked.status = str(result.get("status") or locked.status)
        locked.submitted_at = timezone.now()
        # We know the state as of now: older webhook events must not roll it back.
        locked.provider_updated_at = max(locked.provider_updated_at, locked.submitted_at)
        locked.raw = result
        locked.save(
            update_fields=[
                "submission_count",
                "status",
                "submitted_at",
                "provider_updated_at",
                "raw",
            ]
        )
        assert locked.account is not None  # _refuse_if_closed refuses an unlinked dispute
        _audit(
            kind=KIND_SUBMIT,
            account=locked.account,
            actor=actor,
            dispute=locked,
            details={"fields": sorted(staged), "status": locked.status},
        )
        from janitor.services.notify import evidence_submitted

        evidence_submitted(dispute=locked, actor=actor)
    return locked
