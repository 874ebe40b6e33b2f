"""Staff pages for revocations: the account's access panel, the Revocations page, the audit."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from accounts.forms import AuditFilterForm, DecisionForm, RestoreForm, RevocationRequestForm
from accounts.models import Account, RevocationRequest, RevocationStatus, User
from accounts.selectors import (
    access_audit_list,
    access_panel_get,
    revocation_history_list,
    revocation_open_list,
)
from accounts.services.revocation import (
    RevocationError,
    access_restore,
    revocation_abandon,
    revocation_approve,
    revocation_reject,
    revocation_request,
    revocation_retry,
)
from janitor.csv_writer import csv_lines
from janitor.permissions import role_needed_message, staff_required

PANEL_TEMPLATE = "accounts/access_actions.html"
LIST_TEMPLATE = "accounts/revocation_list.html"
PAGE_SIZE = 50


def _render_panel(request, public_id: str, *, notice: str = "", error: str = "", forms=None):
    forms = forms or {}
    context = {
        "panel": access_panel_get(public_id=public_id),
        "request_form": forms.get("request") or RevocationRequestForm(),
        "restore_form": forms.get("restore") or RestoreForm(),
        "notice": notice,
        "error": error,
    }
    template = f"{PANEL_TEMPLATE}#panel" if request.htmx else PANEL_TEMPLATE
    return render(request, template, context)


@require_GET
@staff_required("accounts.view_user")
def account_access_actions(request, public_id: str):
    return _render_panel(request, public_id)


def _panel_outcome(request, public_id: str, *, notice: str = "", error: str = "", forms=None):
    """HTMX swaps the panel in place; a plain form post goes back to the account page."""
    if request.htmx:
        return _render_panel(request, public_id, notice=notice, error=error, forms=forms)
    if error:
        messages.error(request, error)
    elif notice:
        messages.success(request, notice)
    return redirect("account_detail", public_id=public_id)


def _request_revocation(staff: User, account: Account, data: dict[str, str]) -> None:
    revocation_request(
        account=account,
        requested_by=staff,
        reason=data["reason"],
        reference=data["reference"],
    )


def _restore_access(staff: User, account: Account, data: dict[str, str]) -> None:
    access_restore(account=account, actor=staff, reason=data["reason"], reference=data["reference"])


# The access panel's two actions: (form key in the panel, form, service call, notice on success).
_PANEL_ACTIONS = {
    "request": (
        RevocationRequestForm,
        _request_revocation,
        "Revocation requested: an Admin who is not you must approve it.",
    ),
    "restore": (RestoreForm, _restore_access, "Access restored."),
}


def _panel_action(request, public_id: str, action: str) -> HttpResponse:
    """Read the action's form, call its service, answer in place; a refusal is shown with the
    form kept."""
    form_class, act, notice = _PANEL_ACTIONS[action]
    account = get_object_or_404(Account, public_id=public_id)
    form = form_class(request.POST)
    if not form.is_valid():
        blank = not str(request.POST.get("reason", "")).strip()
        error = "A reason is required." if blank else _form_problems(form)
        return _panel_outcome(request, public_id, error=error, forms={action: form})
    try:
        act(request.user, account, form.cleaned_data)
    except RevocationError as exc:
        return _panel_outcome(request, public_id, error=str(exc), forms={action: form})
    return _panel_outcome(request, public_id, notice=notice)


@require_POST
@staff_required("accounts.request_revocation")
def revocation_request_create(request: HttpRequest, public_id: str) -> HttpResponse:
    """Step one of a staged revocation: asked here, approved by another Admin."""
    return _panel_action(request, public_id, "request")


@require_POST
@staff_required("accounts.restore_access")
def access_restore_view(request: HttpRequest, public_id: str) -> HttpResponse:
    return _panel_action(request, public_id, "restore")


def _render_list(request, *, notice: str = "", error: str = ""):
    page = Paginator(revocation_history_list(), PAGE_SIZE).get_page(request.GET.get("page"))
    open_requests = revocation_open_list()
    context = {
        "open_requests": open_requests,
        # A revocation running in the background: the list refreshes itself until it settles.
        "polling": any(
            r.status == RevocationStatus.APPROVED and not r.is_stalled for r in open_requests
        ),
        "history": page,
        "decision_form": DecisionForm(),
        "notice": notice,
        "error": error,
    }
    template = LIST_TEMPLATE
    if request.htmx and request.htmx.target == "revocations":
        template = f"{LIST_TEMPLATE}#revocations"
    return render(request, template, context)


@require_GET
@staff_required("accounts.view_access_audit")
def revocation_list(request):
    return _render_list(request)


def _list_outcome(request, *, notice: str = "", error: str = ""):
    if request.htmx:
        return _render_list(request, notice=notice, error=error)
    if error:
        messages.error(request, error)
    elif notice:
        messages.success(request, notice)
    return redirect("revocation_list")


def _form_problems(form) -> str:
    """A refused form's errors as one line, each after its field's name."""
    parts = []
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        label = (field.label or name.capitalize()) if field is not None else ""
        parts += [f"{label}: {error}" if label else str(error) for error in errors]
    return " ".join(parts)


def _decision(request, pk: int, action, done: str):
    form = DecisionForm(request.POST)
    if not form.is_valid():
        # Acting without the comment would lose the Admin's note (and an abandon or reject
        # would be told no reason was given): nothing is done, the reason is said.
        return _list_outcome(request, error=_form_problems(form))
    comment = form.cleaned_data["comment"]
    try:
        revocation = action(revocation_id=pk, approver=request.user, comment=comment)
    except RevocationRequest.DoesNotExist:
        raise Http404("No such revocation request.") from None
    except RevocationError as exc:
        return _list_outcome(request, error=str(exc))
    return _list_outcome(
        request,
        notice=f"{done} {revocation.account.email}: {revocation.get_status_display().lower()}.",
    )


@require_POST
@staff_required("accounts.approve_revocation")
def revocation_approve_view(request, pk: int):
    return _decision(request, pk, revocation_approve, "Approved the revocation of")


@require_POST
@staff_required("accounts.approve_revocation")
def revocation_reject_view(request, pk: int):
    return _decision(request, pk, revocation_reject, "Rejected the revocation of")


@require_POST
@staff_required("accounts.approve_revocation")
def revocation_retry_view(request, pk: int):
    def retry(*, revocation_id: int, approver, comment: str):  # a retry takes no comment
        return revocation_retry(revocation_id=revocation_id, actor=approver)

    return _decision(request, pk, retry, "Retried the revocation of")


@require_POST
@staff_required("accounts.approve_revocation")
def revocation_abandon_view(request, pk: int):
    def abandon(*, revocation_id: int, approver, comment: str):
        return revocation_abandon(revocation_id=revocation_id, actor=approver, reason=comment)

    return _decision(request, pk, abandon, "Abandoned the revocation of")


AUDIT_CSV_COLUMNS = [
    "at",
    "account_public_id",
    "account_email",
    "from_status",
    "to_status",
    "actor",
    "approver",
    "reason",
    "reference",
    "source",
    "sessions_removed",
]


def _audit_csv(rows):
    return csv_lines(
        header=AUDIT_CSV_COLUMNS,
        rows=(
            [
                row.at.isoformat(),
                row.account.public_id,
                row.account.email,
                row.from_status,
                row.to_status,
                row.actor,
                row.approver.email if row.approver else "",
                row.reason,
                row.reference,
                row.source,
                (row.details or {}).get("sessions_removed", ""),
            ]
            for row in rows.iterator(chunk_size=1000)
        ),
    )


@require_GET
@staff_required("accounts.view_access_audit")
def audit_list(request):
    form = AuditFilterForm(request.GET or None)
    valid = form.is_valid() if form.is_bound else True
    # The filters that are valid still apply: one bad date must not widen the list (or the
    # export) to the whole audit. The form shows what it refused.
    filters = form.cleaned_data if form.is_bound else {}
    rows = access_audit_list(**{k: v for k, v in filters.items() if v})
    if request.GET.get("format") == "csv":
        if not request.user.has_perm("accounts.export_access_audit"):
            raise PermissionDenied(role_needed_message(["accounts.export_access_audit"]))
        if not valid:
            problems = " ".join(str(m) for errors in form.errors.values() for m in errors)
            return HttpResponseBadRequest(
                f"Fix the filters before exporting: {problems}", content_type="text/plain"
            )
        response = StreamingHttpResponse(_audit_csv(rows), content_type="text/csv")
        # As an attachment there is always a header; django-stubs types it str | None.
        response["Content-Disposition"] = content_disposition_header(  # type: ignore[assignment]
            as_attachment=True, filename="access-audit.csv"
        )
        return response
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("format", None)
    return render(
        request,
        "accounts/audit_list.html",
        {
            "form": form if request.GET else AuditFilterForm(),
            "page": page,
            "query": query.urlencode(),
            "can_export": request.user.has_perm("accounts.export_access_audit"),
        },
    )
