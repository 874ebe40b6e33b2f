"""Reconciliation pages: run history with its chart, one run, start / apply / discard (Admin)."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from janitor.permissions import staff_required
from reconciliation.forms import RunStartForm
from reconciliation.models import Outcome, ReconciliationRun
from reconciliation.selectors.runs import run_detail, run_get, runs_page
from reconciliation.services.runs import (
    RunStateError,
    reconciliation_run_apply_queue,
    reconciliation_run_discard,
    reconciliation_run_queue,
)

TEMPLATE_LIST = "reconciliation/runs.html"
TEMPLATE_DETAIL = "reconciliation/run_detail.html"


def _page_number(request) -> int:
    try:
        return max(1, int(request.GET.get("page", 1)))
    except ValueError:
        return 1


def _run_or_404(run_id: int) -> ReconciliationRun:
    try:
        return run_get(run_id=run_id)
    except ReconciliationRun.DoesNotExist:
        raise Http404("No such run.") from None


@require_GET
@staff_required("reconciliation.view_reconciliation")
def run_list_view(request):
    context = {
        "runs": runs_page(page_number=_page_number(request)),
        "can_run": request.user.has_perm("reconciliation.run_reconciliation"),
    }
    return render(request, TEMPLATE_LIST, context)


@require_GET
@staff_required("reconciliation.view_reconciliation")
def run_detail_view(request, run_id: int):
    try:
        detail = run_detail(
            run_id=run_id,
            outcome=request.GET.get("outcome", ""),
            page_number=_page_number(request),
        )
    except ReconciliationRun.DoesNotExist:
        raise Http404("No such run.") from None
    context = {
        "detail": detail,
        "run": detail.run,
        "outcomes": Outcome.choices,
        "can_run": request.user.has_perm("reconciliation.run_reconciliation"),
    }
    if request.htmx and request.htmx.target == "run-outcomes":
        return render(request, f"{TEMPLATE_DETAIL}#outcomes", context)
    return render(request, TEMPLATE_DETAIL, context)


@require_GET
@staff_required("reconciliation.view_reconciliation")
def run_progress_view(request, run_id: int):
    """The run's status block; it keeps polling itself while the run is running."""
    context = {
        "run": _run_or_404(run_id),
        "can_run": request.user.has_perm("reconciliation.run_reconciliation"),
    }
    if not request.htmx:
        return redirect("reconciliation_run_detail", run_id=run_id)
    return render(request, f"{TEMPLATE_DETAIL}#run-status", context)


@require_POST
@staff_required("reconciliation.run_reconciliation")
def run_start_view(request):
    dry_run = RunStartForm(request.POST).is_dry_run()
    run = reconciliation_run_queue(dry_run=dry_run, triggered_by=request.user.email)
    if run is None:
        messages.error(request, "A reconciliation run is already in progress.")
        if request.htmx:
            return render(
                request,
                f"{TEMPLATE_DETAIL}#start-refused",
                {"message": "A reconciliation run is already in progress."},
                status=409,
            )
        return redirect("reconciliation_runs")
    run.refresh_from_db()
    if request.htmx:
        return render(request, f"{TEMPLATE_DETAIL}#run-status", {"run": run, "can_run": True})
    return redirect("reconciliation_run_detail", run_id=run.pk)


def _decision(request, run_id: int, decide) -> object:
    run = _run_or_404(run_id)
    try:
        run = decide(run)
    except RunStateError as exc:
        messages.error(request, str(exc))
        status = exc.status
    else:
        status = 200
    run.refresh_from_db()
    if request.htmx:
        context = {"run": run, "can_run": True}
        return render(request, f"{TEMPLATE_DETAIL}#run-status", context, status=status)
    return redirect("reconciliation_run_detail", run_id=run.pk)


@require_POST
@staff_required("reconciliation.run_reconciliation")
def run_apply_view(request, run_id: int):
    return _decision(
        request,
        run_id,
        lambda run: reconciliation_run_apply_queue(run=run, actor_user=request.user),
    )


@require_POST
@staff_required("reconciliation.run_reconciliation")
def run_discard_view(request, run_id: int):
    return _decision(
        request, run_id, lambda run: reconciliation_run_discard(run=run, actor_user=request.user)
    )
