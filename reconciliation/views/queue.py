"""The review queue page and its inline flag actions (each answers with the updated row)."""

from urllib.parse import quote

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from janitor.permissions import staff_required
from reconciliation.forms import (
    FlagCompForm,
    FlagExtendForm,
    FlagNoteForm,
    FlagResolveForm,
    form_error,
)
from reconciliation.models import Flag, FlagKind
from reconciliation.selectors.queue import (
    AGE_CHOICES,
    PAGE_SIZES,
    SORTS,
    QueueFilters,
    flag_notes_list,
    flag_row_get,
    review_queue_page,
)
from reconciliation.services.access_decisions import GRACE_EXTENSION_MAX_DAYS
from reconciliation.services.queue import (
    FlagActionError,
    flag_assign,
    flag_comp_record,
    flag_grace_extend,
    flag_note_add,
    flag_resolve_by_staff,
)

TEMPLATE = "reconciliation/queue.html"


def _abilities(user) -> dict:
    return {
        "grace_max_days": GRACE_EXTENSION_MAX_DAYS,
        "can_work": user.has_perm("reconciliation.work_review_queue"),
        "can_comp": user.has_perm("reconciliation.record_comp"),
        "can_request_revocation": user.has_perm("accounts.request_revocation"),
    }


@require_GET
@staff_required("reconciliation.view_review_queue")
def review_queue(request):
    filters = QueueFilters.from_query(request.GET)
    context = {
        "queue": review_queue_page(filters=filters, user=request.user),
        "kinds": FlagKind.choices,
        "ages": AGE_CHOICES,
        "page_sizes": PAGE_SIZES,
        "sort_keys": list(SORTS),
        **_abilities(request.user),
    }
    if request.htmx and request.htmx.target == "queue-results":
        return render(request, f"{TEMPLATE}#results", context)
    return render(request, TEMPLATE, context)


def _queue_back(value: object) -> str:
    """Where "back to the queue" leads: the queue page the flag was opened from (its filters,
    sort and page), when it is one of ours; else the queue's first page."""
    queue = reverse("review_queue")
    if (
        isinstance(value, str)
        and value.startswith(queue)
        and url_has_allowed_host_and_scheme(value, allowed_hosts=None)
    ):
        return value
    return queue


def _row_response(request, flag_id: int, *, error: str = "", status: int = 200):
    flag = _flag_or_404(flag_id, row=True)
    if not request.htmx:
        # Without JavaScript the form posted from the flag's own page: a refusal goes back to
        # it, to be corrected; a saved action back to the queue page it came from.
        back = _queue_back(request.POST.get("back"))
        if error:
            messages.error(request, error)
            return redirect(f"{reverse('flag_row', args=[flag_id])}?back={quote(back)}")
        messages.success(request, f"Saved: {flag.get_kind_display()} for {flag.account.email}.")
        return redirect(back)
    context = {
        "flag": flag,
        "error": error,
        "notes": flag_notes_list(flag=flag),
        "show_actions": True,
    }
    context.update(_abilities(request.user))
    return render(request, f"{TEMPLATE}#flag-row", context, status=status)


def _flag_or_404(flag_id: int, *, row: bool = False) -> Flag:
    """The flag (with what its queue row shows when `row`), or a 404: the one lookup."""
    try:
        if row:
            return flag_row_get(flag_id=flag_id)
        return Flag.objects.select_related("account").get(pk=flag_id)
    except Flag.DoesNotExist:
        raise Http404("No such flag.") from None


@require_GET
@staff_required("reconciliation.view_review_queue")
def flag_row(request, flag_id: int):
    """One flag with its actions and notes: the queue row opened in place (HTMX), else a page.

    The queue's rows carry no forms until opened, so a page of 200 rows stays light.
    """
    flag = _flag_or_404(flag_id, row=True)
    context = {"flag": flag, "notes": flag_notes_list(flag=flag), "show_actions": True}
    context.update(_abilities(request.user))
    if not request.htmx:
        context["back"] = _queue_back(request.GET.get("back"))
    template = f"{TEMPLATE}#flag-row" if request.htmx else "reconciliation/queue_flag.html"
    return render(request, template, context)


def _act(request, flag_id: int, action, form=None) -> object:
    flag = _flag_or_404(flag_id)
    if form is not None and not form.is_valid():
        return _row_response(request, flag_id, error=form_error(form), status=422)
    try:
        action(flag)
    except FlagActionError as exc:
        return _row_response(request, flag_id, error=str(exc), status=exc.status)
    return _row_response(request, flag_id)


@require_POST
@staff_required("reconciliation.work_review_queue")
def flag_assign_view(request, flag_id: int):
    return _act(
        request,
        flag_id,
        lambda flag: flag_assign(flag=flag, assignee=request.user, actor_user=request.user),
    )


@require_POST
@staff_required("reconciliation.work_review_queue")
def flag_note_view(request, flag_id: int):
    form = FlagNoteForm(request.POST)
    return _act(
        request,
        flag_id,
        lambda flag: flag_note_add(flag=flag, body=form.cleaned_data["body"], author=request.user),
        form,
    )


@require_POST
@staff_required("reconciliation.work_review_queue")
def flag_extend_view(request, flag_id: int):
    form = FlagExtendForm(request.POST)
    return _act(
        request,
        flag_id,
        lambda flag: flag_grace_extend(
            flag=flag,
            days=form.cleaned_data["days"],
            reason=form.cleaned_data["reason"],
            actor_user=request.user,
        ),
        form,
    )


@require_POST
@staff_required("reconciliation.record_comp")
def flag_comp_view(request, flag_id: int):
    form = FlagCompForm(request.POST)

    def record(flag):
        flag_comp_record(
            flag=flag,
            reason=form.cleaned_data["reason"],
            expires_at=form.expires_at(),
            actor_user=request.user,
        )

    return _act(request, flag_id, record, form)


@require_POST
@staff_required("reconciliation.work_review_queue")
def flag_resolve_view(request, flag_id: int):
    form = FlagResolveForm(request.POST)
    return _act(
        request,
        flag_id,
        lambda flag: flag_resolve_by_staff(
            flag=flag,
            resolution=form.cleaned_data["resolution"],
            actor_user=request.user,
            restore_access=form.cleaned_data["restore_access"],
        ),
        form,
    )
