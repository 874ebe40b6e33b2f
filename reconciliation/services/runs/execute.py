"""Executing a run: list every provider subscription into the mirror, link customers to
accounts, decide, brake, then apply or halt. One run per worker process at a time."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from janitor.services import notify
from reconciliation import gateway
from reconciliation.listing import LISTING_RANGES, SubscriptionListing
from reconciliation.models import Outcome, ReconciliationRun, RunLink, RunStatus, Subscription
from reconciliation.selectors.mirror import subscription_created_boundaries
from reconciliation.services.access_decisions import STATUS_CHANGING
from reconciliation.services.runs.apply import links_apply, outcomes_apply
from reconciliation.services.runs.common import PhaseTimer, Progress, ProgressCallback
from reconciliation.services.runs.decide import (
    StatusSets,
    brake_reason,
    outcomes_decide,
    run_links_stage_new,
)
from reconciliation.services.runs.start import reconciliation_run_start
from reconciliation.services.sync import (
    LinkPlan,
    ParsedSubscription,
    SyncReport,
    customers_known_unmatched,
    customers_link_listed,
    customers_link_local,
    customers_link_plan,
    mirror_page_upsert,
    subscriptions_parse,
    waiting_emails_store,
)

logger = logging.getLogger(__name__)

# Allocations (less frees) between two runs of the cycle collector during a run; see
# _fewer_collector_passes. CPython's default is 700.
RUN_GC_THRESHOLD = 20_000
# Provider pages are 100 subscriptions; the mirror is compared and written 500 at a time.
MIRROR_ROWS_PER_WRITE = 500


@dataclass
class _Listing:
    """What reading the provider's subscriptions found."""

    statuses: StatusSets = field(default_factory=StatusSets)
    # Customers with no account whose details the listing did not carry (a server that does not
    # expand): they are looked up one by one afterwards, within the lookup cap.
    unknown: set[str] = field(default_factory=set)
    # Links planned from the customers the listing carried expanded (no call per customer).
    plan: LinkPlan = field(default_factory=LinkPlan)
    report: SyncReport = field(default_factory=lambda: SyncReport(keep_linked=False))
    # Customers already matched (or not) this run: a customer's later subscriptions, in a later
    # batch, are not matched again.
    matched: set[str] = field(default_factory=set)
    error: gateway.GatewayError | None = None
    # How the provider was read (sequentially, or in parallel created ranges, and why).
    how: str = ""
    # How many of plan.by_account (a prefix: the plan only ever adds) are saved as the run's
    # RunLink rows already, staged while the listing waits on the provider.
    links_staged: int = 0


def _listing_read(*, run: ReconciliationRun, progress: Progress, timer: PhaseTimer) -> _Listing:
    """Read every provider subscription, each with its customer expanded: a long listing in
    parallel `created` ranges (reconciliation/listing.py), merged here in whatever order the
    pages arrive, since nothing below depends on the order.

    The mirror is compared and written MIRROR_ROWS_PER_WRITE subscriptions at a time: one query
    for 500 costs much less than five for 100. What was read is written even when the listing
    fails part way. Customers no account knows yet are matched to accounts as each batch is
    written, from the email and metadata the listing carried.
    """
    listing = _Listing()
    write = not run.dry_run
    buffered: list[ParsedSubscription] = []
    buffered_since: datetime | None = None

    def flush() -> None:
        nonlocal buffered_since
        if not buffered:
            return
        assert buffered_since is not None  # set with the first row buffered
        with timer.phase("mirror"):
            # When the oldest buffered page was asked for: a row a webhook changed after that
            # is newer than the listing, and is left as it is.
            result = mirror_page_upsert(
                subscriptions=buffered, fetched_at=buffered_since, write=write
            )
            progress.state["mirror_written"] = (
                progress.state.get("mirror_written", 0) + result.written
            )
        if result.unknown_customers:
            with timer.phase("linking"):
                fresh = result.unknown_customers - listing.matched
                expanded = {
                    sub.customer["id"]: sub.customer
                    for sub in buffered
                    if sub.customer is not None and sub.customer["id"] in fresh
                }
                listing.matched.update(expanded)
                listing.unknown.update(fresh - expanded.keys())
                customers_link_listed(
                    customers=expanded.values(), plan=listing.plan, report=listing.report
                )
                listing.links_staged = run_links_stage_new(
                    run=run, plan=listing.plan, staged=listing.links_staged, final=False
                )
        buffered.clear()
        buffered_since = None

    # Read before the listing writes the mirror: the rows it writes are the newest ones.
    provider = SubscriptionListing(
        mirror_boundaries=subscription_created_boundaries(LISTING_RANGES), expand_customer=True
    )
    pages = iter(provider)
    while True:
        try:
            with timer.phase("listing", cpu=True):
                page = next(pages)
        except StopIteration:
            flush()
            listing.how = provider.how
            return listing
        except gateway.GatewayAuthError:
            raise  # a wrong or restricted key: the run fails at once, deciding nothing
        except gateway.GatewayError as exc:
            flush()
            listing.error = exc
            listing.how = provider.how
            return listing
        with timer.phase("parsing"):
            # The oldest request behind the buffered pages: pages of parallel ranges, or read
            # ahead, arrive here a while after they were asked for, not in that order.
            if buffered_since is None or page.fetched_at < buffered_since:
                buffered_since = page.fetched_at
            parsed = subscriptions_parse(page)
            for sub in parsed:
                listing.statuses.add(
                    sub.fields["customer_id"], sub.fields["status"], sub.fields["seat_quantity"]
                )
            buffered.extend(parsed)
        if len(buffered) >= MIRROR_ROWS_PER_WRITE:
            flush()
        progress.update(
            pages=progress.state["pages"] + 1,
            subscriptions=progress.state["subscriptions"] + len(parsed),
        )


def _mirror_holds_subscriptions() -> bool:
    return Subscription.objects.exists()


def _run_claim(*, run: ReconciliationRun) -> bool:
    """Take a freshly started run for this worker; False if a (redelivered) task already has."""
    with transaction.atomic():
        locked = ReconciliationRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING or (locked.progress or {}).get("phase") != "starting":
            return False
        locked.progress = {**locked.progress, "phase": "listing"}
        locked.save(update_fields=["progress"])
    return True


@contextmanager
def _fewer_collector_passes() -> Iterator[None]:
    """Run the collector for reference cycles less often while a run goes.

    Listing a million subscriptions allocates and frees tens of millions of short-lived SDK
    objects. At CPython's default threshold (700) that starts the cycle collector about 20,000
    times for 1M subscriptions, and its full passes walk every long-lived object of the
    process: a sixth of Janitor's own work when measured (docs/benchmarks/audit.md).
    Reference counting frees those objects anyway (peak RSS is the same either way); cycles
    are still collected, only in fewer, larger passes. Restored afterwards: a worker process
    runs one task at a time.
    """
    old = gc.get_threshold()
    gc.set_threshold(RUN_GC_THRESHOLD, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def reconciliation_run_execute(
    *, run: ReconciliationRun, on_progress: ProgressCallback | None = None
) -> ReconciliationRun:
    """Execute a started run: list, mirror, link, decide, brake, then apply or halt.

    A dry run writes nothing but the run and its outcomes. A listing that fails part way, or a
    change ratio above JANITOR_AUDIT_MAX_CHANGE_RATIO, halts the run with nothing applied.
    """
    with _fewer_collector_passes():
        return _execute(run=run, on_progress=on_progress)


def _link_unknown(
    *, run: ReconciliationRun, unknown: set[str], plan: LinkPlan, report: SyncReport
) -> None:
    """Plan links for customers the mirror holds no account for and the listing did not carry
    expanded: one provider call each, within the cap. Looked up (read only) in a dry run too,
    so it predicts the real run."""
    cap = settings.JANITOR_AUDIT_LINK_LOOKUPS
    ordered = sorted(unknown)
    # Customers looked up on an earlier night are matched from what was kept; only the others
    # cost a call, so the cap moves on to new customers each night.
    known = customers_known_unmatched(customer_ids=ordered)
    customers_link_local(emails=known, plan=plan, report=report)
    fresh = [customer_id for customer_id in ordered if customer_id not in known]
    customers_link_plan(customer_ids=fresh[:cap], report=report, plan=plan)
    for customer_id in fresh[cap:]:
        plan.unresolved[customer_id] = "over the lookup cap"


def _halt_reason(
    *,
    changes: int,
    with_access: int,
    ratio: float,
    listing_error: gateway.GatewayError | None,
    listed_any: bool,
    pages: int,
) -> str:
    """Why a run must not apply ("" when it may): the brake, an empty listing over a full
    mirror, or a listing that failed part way (the last wins: it says the most)."""
    reason = brake_reason(changes=changes, with_access=with_access, ratio=ratio)
    if listing_error is None and not listed_any and _mirror_holds_subscriptions():
        # A wrong key (another Stripe account, test mode) lists nothing: that would flag every
        # account as a manual grant. Nothing is applied until someone looks.
        reason = (
            "The provider listed no subscriptions while the mirror holds some: check "
            "STRIPE_API_KEY (another account or mode?). Nothing was applied."
        )
    if listing_error is not None:
        reason = (
            f"The provider listing failed after {pages} page(s): {listing_error}. Nothing was "
            "applied; accounts the listing did not reach, or whose unread subscriptions could "
            "change the outcome, are not checked."
        )
    return reason


def _execute(*, run: ReconciliationRun, on_progress: ProgressCallback | None) -> ReconciliationRun:
    if not _run_claim(run=run):
        return run
    timer = PhaseTimer()
    progress = Progress(run, on_progress)
    try:
        listing = _listing_read(run=run, progress=progress, timer=timer)
        statuses, listing_error = listing.statuses, listing.error
        # A listing that failed part way links nothing this run, as it applies nothing: the
        # links it staged go too (an Admin's apply of the halted run writes what is staged).
        plan = listing.plan if listing_error is None else LinkPlan()
        if listing_error is not None and listing.links_staged:
            RunLink.objects.filter(run=run).delete()
            listing.links_staged = 0
        link_report = listing.report if listing_error is None else SyncReport(keep_linked=False)
        if listing_error is None:
            if listing.unknown:
                progress.update(force=True, phase="linking")
                with timer.phase("linking"):
                    _link_unknown(run=run, unknown=listing.unknown, plan=plan, report=link_report)
            if not run.dry_run:
                with timer.phase("linking"):
                    waiting_emails_store(emails=plan.unmatched_emails)  # mirror data only
        progress.update(force=True, phase="deciding")
        with timer.phase("deciding"):
            run.outcomes_decided_at = timezone.now()
            ReconciliationRun.objects.filter(pk=run.pk).update(
                outcomes_decided_at=run.outcomes_decided_at
            )
            counts, unchecked_reasons, with_access, unmatched = outcomes_decide(
                run=run,
                statuses=statuses,
                listing_complete=listing_error is None,
                plan=plan,
                progress=progress,
                links_staged=listing.links_staged,
            )
        changes = sum(counts[o] for o in STATUS_CHANGING)
        ratio = changes / with_access if with_access else (1.0 if changes else 0.0)
        run.counts = {o.value: counts.get(o.value, 0) for o in Outcome}
        run.counts["unmatched_customers"] = unmatched
        run.counts["linked_customers"] = len(plan.by_account)
        run.counts["customers_not_looked_up"] = len(plan.unresolved)
        if listing.how:
            run.counts["listing"] = listing.how
        if unchecked_reasons:
            run.counts["not_checked_reasons"] = dict(unchecked_reasons)
        run.change_ratio = ratio
        errors: list[str] = [f"ambiguous {c}: {why}" for c, why in link_report.ambiguous]
        halt_reason = _halt_reason(
            changes=changes,
            with_access=with_access,
            ratio=ratio,
            listing_error=listing_error,
            listed_any=bool(statuses.by_customer),
            pages=progress.state["pages"],
        )
        if listing_error is not None and listing_error.status in {401, 403}:
            notify.provider_key_refused(
                status=listing_error.status, message=str(listing_error), where="Nightly audit"
            )
        if run.dry_run:
            run.status = RunStatus.DRY_RUN
            run.halt_reason = f"A real run would halt here. {halt_reason}" if halt_reason else ""
        elif halt_reason:
            run.status = RunStatus.HALTED
            run.halt_reason = halt_reason
        else:
            progress.update(force=True, phase="applying", applied=0)
            with timer.phase("applying"):
                errors += links_apply(run=run)
                errors += outcomes_apply(run=run, progress=progress)
            run.status = RunStatus.APPLIED
        run.errors = "\n".join(errors[:200])
    except Exception as exc:
        logger.exception("reconciliation run %s failed", run.pk)
        run.status = RunStatus.FAILED
        run.errors = f"{type(exc).__name__}: {exc}"
    run.durations = timer.summary()
    run.finished_at = timezone.now()
    run.pages_read = progress.state["pages"]
    run.subscriptions_read = progress.state["subscriptions"]
    progress.state.update(phase="done", updated_at=run.finished_at.isoformat())
    run.progress = dict(progress.state)
    run.save()
    if run.status in {RunStatus.HALTED, RunStatus.FAILED}:
        notify.run_halted(run=run)
    return run


def reconciliation_run(
    *,
    dry_run: bool,
    triggered_by: str,
    scheduled: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ReconciliationRun | None:
    """Start and execute a run in this process; None when another run is already going."""
    run = reconciliation_run_start(dry_run=dry_run, triggered_by=triggered_by, scheduled=scheduled)
    if run is None:
        return None
    return reconciliation_run_execute(run=run, on_progress=on_progress)
