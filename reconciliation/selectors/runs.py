"""Reads for the reconciliation pages: run history, its chart, one run's outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet

from reconciliation.models import Outcome, ReconciliationRun, RunLink, RunOutcome
from reconciliation.services.access_decisions import STATUS_CHANGING

CHART_RUNS = 30
# The chart's picture of each outcome: a colour, in the dashboard palette.
OUTCOME_COLOURS = {
    Outcome.START_GRACE: "#b54708",
    Outcome.PAYMENT_FAILED: "#dc6803",
    Outcome.END_GRACE: "#067647",
    Outcome.REACTIVATE: "#2457c5",
    Outcome.FLAG_MANUAL_GRANT: "#7a5af8",
    Outcome.FLAG_MISMATCH: "#b42318",
    Outcome.FLAG_GRACE_EXPIRED: "#98a2b3",
    Outcome.FLAG_SEATS_EXCEEDED: "#c11574",
}
CHART_WIDTH = 720
CHART_HEIGHT = 180
CHART_LEFT = 40  # room for the axis labels
CHART_BOTTOM = 20


@dataclass
class ChartBar:
    run_id: int
    x: float
    width: float
    label: str
    segments: list[dict[str, Any]]  # {y, height, colour, outcome, count}
    total: int


@dataclass
class Chart:
    bars: list[ChartBar]
    legend: list[tuple[str, str, str]]  # (value, label, colour)
    max_total: int
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = CHART_LEFT
    plot_height: int = CHART_HEIGHT - CHART_BOTTOM


def runs_chart(*, runs: list[ReconciliationRun]) -> Chart:
    """Stacked bars of the changes each run found (in-sync accounts left out: they dwarf it)."""
    ordered = sorted(runs, key=lambda r: r.started_at)
    max_total = max(
        [sum((r.counts or {}).get(o, 0) for o in OUTCOME_COLOURS) for r in ordered] + [1]
    )
    plot_height = CHART_HEIGHT - CHART_BOTTOM
    slot = (CHART_WIDTH - CHART_LEFT) / max(len(ordered), 1)
    bars = []
    for index, run in enumerate(ordered):
        y = float(plot_height)
        segments = []
        total = 0
        for outcome, colour in OUTCOME_COLOURS.items():
            count = (run.counts or {}).get(outcome, 0)
            if not count:
                continue
            height = plot_height * count / max_total
            y -= height
            total += count
            segments.append(
                {
                    "y": round(y, 2),
                    "height": round(max(height, 1), 2),
                    "colour": colour,
                    "outcome": Outcome(outcome).label,
                    "count": count,
                }
            )
        bars.append(
            ChartBar(
                run_id=run.pk,
                x=round(CHART_LEFT + index * slot + slot * 0.15, 2),
                width=round(slot * 0.7, 2),
                label=f"{run.started_at:%m-%d}",
                segments=segments,
                total=total,
            )
        )
    legend = [(o.value, o.label, OUTCOME_COLOURS[o]) for o in Outcome if o in OUTCOME_COLOURS]
    return Chart(bars=bars, legend=legend, max_total=max_total)


@dataclass
class RunsPage:
    page: Page[ReconciliationRun]
    chart: Chart


def run_decorate(run: ReconciliationRun) -> ReconciliationRun:
    """Add what the tables show: changes of access status found, and the ratio in percent."""
    counts = run.counts or {}
    run.changes = sum(counts.get(o, 0) for o in STATUS_CHANGING)
    run.flags_found = sum(counts.get(o, 0) for o in OUTCOME_COLOURS) - run.changes
    run.count_rows = [(o.value, o.label, counts.get(o.value, 0)) for o in Outcome]
    run.change_percent = None if run.change_ratio is None else round(run.change_ratio * 100, 2)
    return run


def runs_page(*, page_number: int, per_page: int = 25) -> RunsPage:
    runs = ReconciliationRun.objects.select_related("decided_by").order_by("-started_at", "-id")
    page = Paginator(runs, per_page).get_page(page_number)
    for run in page.object_list:
        run_decorate(run)
    recent = list(runs[:CHART_RUNS]) if page.number != 1 else list(page.object_list)[:CHART_RUNS]
    return RunsPage(page=page, chart=runs_chart(runs=recent))


def run_get(*, run_id: int) -> ReconciliationRun:
    return run_decorate(ReconciliationRun.objects.select_related("decided_by").get(pk=run_id))


@dataclass
class RunDetail:
    run: ReconciliationRun
    outcomes: Page[RunOutcome]
    outcome_filter: str
    outcome_counts: list[tuple[str, str, int]]  # saved outcomes per kind: (value, label, n)


# The outcome filter's extra choice: rows an apply re-decided and left alone, with the reason.
SKIPPED_FILTER = "skipped"


def run_outcomes(*, run: ReconciliationRun, outcome: str = "") -> QuerySet[RunOutcome]:
    rows = RunOutcome.objects.filter(run=run).select_related("account").order_by("outcome", "pk")
    if outcome == SKIPPED_FILTER:
        rows = rows.exclude(skip_reason="")
    elif outcome:
        rows = rows.filter(outcome=outcome)
    return rows


def run_detail(*, run_id: int, outcome: str = "", page_number: int = 1) -> RunDetail:
    run = run_get(run_id=run_id)
    outcome = outcome if outcome in Outcome.values or outcome == SKIPPED_FILTER else ""
    page = Paginator(run_outcomes(run=run, outcome=outcome), 50).get_page(page_number)
    saved: dict[str, int] = {}
    skipped = 0
    for value, n, n_skipped in (
        RunOutcome.objects.filter(run=run)
        .values_list("outcome")
        .annotate(n=Count("id"), skipped=Count("id", filter=~Q(skip_reason="")))
        .values_list("outcome", "n", "skipped")
    ):
        saved[value] = n
        skipped += n_skipped
    counts = [(o.value, o.label, saved[o.value]) for o in Outcome if saved.get(o.value)]
    if skipped:
        counts.append((SKIPPED_FILTER, "Skipped at apply (no longer right)", skipped))
    run.links_skipped = []
    if (run.counts or {}).get("linked_customers") and run.status == "applied":
        run.links_skipped = list(
            RunLink.objects.filter(run=run)
            .exclude(skip_reason="")
            .select_related("account")
            .order_by("pk")[:50]
        )
    return RunDetail(run=run, outcomes=page, outcome_filter=outcome, outcome_counts=counts)
