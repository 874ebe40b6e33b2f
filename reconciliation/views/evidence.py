"""Evidence pages: the account panel, exports, the disputes queue and staging on Stripe."""

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.models import Account
from janitor.labels import provider_error_plain
from janitor.permissions import staff_required
from reconciliation.forms import DisputeSubmitForm, EvidenceWindowForm, form_error
from reconciliation.gateway import GatewayError
from reconciliation.models import Dispute
from reconciliation.selectors.evidence import (
    account_exports,
    dispute_evidence_window,
    dispute_exports,
    dispute_get,
    dispute_queue,
    evidence_summary,
)
from reconciliation.services.evidence import (
    EvidenceRefused,
    dispute_evidence_stage,
    dispute_evidence_submit,
    evidence_csv_export,
    evidence_pdf_export,
)

STATUS_FILTERS = [
    ("open", "Open (needs action or under review)"),
    ("due_soon", "Response due within 7 days"),
    ("needs_response", "Needs response"),
    ("under_review", "Under review"),
    ("won", "Won"),
    ("lost", "Lost"),
    ("all", "All"),
]


def _account(public_id: str) -> Account:
    return get_object_or_404(Account, public_id=public_id)


def _dispute_for(form: EvidenceWindowForm, account: Account) -> Dispute | None:
    provider_id = form.cleaned_data.get("dispute", "")
    if not provider_id:
        return None
    return get_object_or_404(Dispute, provider_id=provider_id, account=account)


@require_GET
@staff_required("reconciliation.view_disputes")
def account_evidence_panel(request, public_id: str):
    account = _account(public_id)
    summary = evidence_summary(
        account=account, days=EvidenceWindowForm(request.GET).cleaned_data.get("days")
    )
    context = {
        "account": account,
        "summary": summary,
        "exports": account_exports(account=account),
        "can_export": request.user.has_perm("reconciliation.export_evidence"),
    }
    template = "reconciliation/evidence_panel.html"
    if request.htmx:
        template += "#panel"
    return render(request, template, context)


def _download_headers(account: Account, extension: str) -> dict[str, str]:
    # Ids are checked at import and creation; an older id outside the alphabet still cannot
    # shape the header (content_disposition_header quotes it, and it is reduced to the alphabet).
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", account.public_id)
    filename = f"evidence-{safe_id}-{timezone.now():%Y%m%d-%H%M}.{extension}"
    return {
        # As an attachment there is always a header; django-stubs types it str | None.
        "Content-Disposition": content_disposition_header(as_attachment=True, filename=filename)  # type: ignore[dict-item]
    }


def _pdf_response(pdf: bytes, headers: dict[str, str]) -> HttpResponse:
    return HttpResponse(pdf, content_type="application/pdf", headers=headers)


def _csv_response(lines: Iterable[str], headers: dict[str, str]) -> StreamingHttpResponse:
    return StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8", headers=headers)


# The two evidence exports: extension -> (the service that builds and records it, the response).
_EXPORTS: dict[
    str, tuple[Callable[..., Any], Callable[[Any, dict[str, str]], HttpResponseBase]]
] = {
    "pdf": (evidence_pdf_export, _pdf_response),
    "csv": (evidence_csv_export, _csv_response),
}


def _export(request: HttpRequest, public_id: str, extension: str) -> HttpResponseBase:
    """Run one export service over the window and dispute the form names (the service records
    the export in the evidence audit) and answer with the file."""
    export, respond = _EXPORTS[extension]
    account = _account(public_id)
    form = EvidenceWindowForm(request.POST)
    since, until = form.window()
    body = export(
        account=account,
        actor=request.user,
        days=form.cleaned_data.get("days"),
        dispute=_dispute_for(form, account),
        since=since,
        until=until,
    )
    return respond(body, _download_headers(account, extension))


@require_POST
@staff_required("reconciliation.export_evidence")
def evidence_export(request: HttpRequest, public_id: str, extension: str) -> HttpResponseBase:
    """The evidence pack Stripe takes (`pdf`) or the raw activity rows behind it (`csv`,
    streamed: a year of a busy team is large); the URL names which."""
    return _export(request, public_id, extension)


@require_GET
@staff_required("reconciliation.view_disputes")
def dispute_list(request):
    status = request.GET.get("status", "open")
    if status not in dict(STATUS_FILTERS):
        status = "open"
    page = dispute_queue(status=status, page=request.GET.get("page", 1))
    return render(
        request,
        "reconciliation/dispute_list.html",
        {"page": page, "status": status, "status_filters": STATUS_FILTERS, "now": timezone.now()},
    )


@require_GET
@staff_required("reconciliation.view_disputes")
def dispute_detail(request, provider_id: str):
    dispute = dispute_get(provider_id=provider_id)
    if request.htmx and request.htmx.target == "dispute-exports":
        # Refreshed after a download: the evidence audit alone.
        return render(
            request,
            "reconciliation/dispute_detail.html#exports",
            {"dispute": dispute, "exports": dispute_exports(dispute=dispute)},
        )
    window = dispute_evidence_window(dispute=dispute)
    since, until = EvidenceWindowForm(request.GET).window()
    chosen = since is not None
    if not chosen and window is not None:
        since, until = window.since, window.until
    summary = (
        evidence_summary(account=dispute.account, since=since, until=until)
        if dispute.account
        else None
    )
    return render(
        request,
        "reconciliation/dispute_detail.html",
        {
            "dispute": dispute,
            "summary": summary,
            "window": window,
            "chosen": chosen,
            "exports": dispute_exports(dispute=dispute),
            "staged": (dispute.evidence_staged or {}).get("fields"),
            "can_export": request.user.has_perm("reconciliation.export_evidence"),
            "can_submit": request.user.has_perm("reconciliation.submit_dispute_evidence"),
            "now": timezone.now(),
        },
    )


@require_POST
@staff_required("reconciliation.submit_dispute_evidence")
def dispute_stage(request, provider_id: str):
    dispute = dispute_get(provider_id=provider_id)
    try:
        since, until = EvidenceWindowForm(request.POST).window()
        dispute_evidence_stage(dispute=dispute, actor=request.user, since=since, until=until)
    except EvidenceRefused as exc:
        messages.error(request, str(exc))
    except GatewayError as exc:
        messages.error(request, _provider_message(exc))
    else:
        messages.success(request, "Evidence staged on Stripe (not submitted). Review it below.")
    return redirect("dispute_detail", provider_id=provider_id)


@require_POST
@staff_required("reconciliation.submit_dispute_evidence")
def dispute_submit(request, provider_id: str):
    dispute = dispute_get(provider_id=provider_id)
    form = DisputeSubmitForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_error(form))
        return _back_to(request, dispute)
    try:
        dispute_evidence_submit(dispute=dispute, actor=request.user)
    except EvidenceRefused as exc:
        messages.error(request, str(exc))
    except GatewayError as exc:
        messages.error(request, _provider_message(exc))
    else:
        messages.success(request, "Evidence submitted to Stripe.")
    return _back_to(request, dispute)


def _provider_message(exc: GatewayError) -> str:
    plain = provider_error_plain(str(exc))
    if plain:
        return f"Nothing was sent. {plain}"
    return (
        f"Nothing was sent: Stripe answered “{exc}”. Try again; if it happens again, tell an Admin."
    )


def _back_to(request, dispute: Dispute):
    # The submit form posts through htmx (for hx-confirm): tell htmx to load the page.
    url = reverse("dispute_detail", kwargs={"provider_id": dispute.provider_id})
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
