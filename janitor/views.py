"""The dashboard shell's own pages: the overview, a health check, notifications."""

from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import AccessStatus
from janitor.forms import NoticePreferencesForm
from janitor.models import NoticeKind, NoticeStatus
from janitor.permissions import staff_required
from janitor.selectors import (
    account_page_get,
    notice_page,
    notice_preferences_get,
    overview_get,
)
from janitor.selectors.search import AccountFilters, account_list_page, account_search
from janitor.services.notifications import notice_mutes_set


@require_GET
@staff_required()
def overview(request):
    overview = overview_get(with_disputes=request.user.has_perm("reconciliation.view_disputes"))
    return render(request, "janitor/overview.html", {"overview": overview})


@require_GET
def healthz(request):
    """For load balancers: 200 when the database answers, 503 otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any database failure means "not ready"
        return JsonResponse({"ok": False, "error": exc.__class__.__name__}, status=503)
    return JsonResponse({"ok": True})


def _panel_url(name: str, public_id: str) -> str:
    """A panel another app provides, lazy-loaded into the account page. A name that does not
    reverse is an error (a renamed URL must not make a panel vanish quietly)."""
    return reverse(name, kwargs={"public_id": public_id})


@require_GET
@staff_required("accounts.view_user")
def account_detail(request, public_id: str):
    page = account_page_get(public_id=public_id)
    return render(
        request,
        "janitor/account_detail.html",
        {
            "page": page,
            "access_actions_url": _panel_url("account_access_actions", public_id),
            "evidence_panel_url": _panel_url("account_evidence_panel", public_id),
        },
    )


@require_GET
@staff_required("janitor.view_notice")
def notice_list(request):
    """Admins: every notice Janitor recorded (what, to whom, when, outcome)."""
    status, kind = request.GET.get("status", ""), request.GET.get("kind", "")
    page = notice_page(status=status, kind=kind, page_number=request.GET.get("page"))
    return render(
        request,
        "janitor/notices.html",
        {
            "page": page,
            "status": status,
            "kind": kind,
            "statuses": NoticeStatus.choices,
            "kinds": NoticeKind.choices,
        },
    )


@require_http_methods(["GET", "POST"])
@staff_required()
def notice_preferences(request):
    """Any staff member: which kinds of notice they receive by email (approvals stay on)."""
    notice = ""
    if request.method == "POST":
        form = NoticePreferencesForm(request.POST)
        form.is_valid()  # never refused: unknown kinds are dropped
        notice_mutes_set(user=request.user, kinds=form.cleaned_data["muted"])
        notice = "Saved."
    return render(
        request,
        "janitor/notice_preferences.html",
        {"kinds": notice_preferences_get(user=request.user), "notice": notice},
    )


@require_GET
@staff_required("accounts.view_user")
def account_list(request):
    """Every customer account; with ?q= the search (one match jumps to the account)."""
    filters = AccountFilters.from_query(request.GET)
    context = {"filters": filters, "statuses": AccessStatus.choices}
    if filters.q:
        result = account_search(query=filters.q, status=filters.status)
        if result.single is not None:
            return redirect("account_detail", public_id=result.single.public_id)
        context["search"] = result
    else:
        context["accounts"] = account_list_page(filters=filters)
    return render(request, "janitor/account_list.html", context)
