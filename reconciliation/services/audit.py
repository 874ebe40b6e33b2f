"""The nightly audit: stream provider subscriptions, refresh the mirror, decide, brake, apply."""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import AccessComp, AccessStatus, Account, User
from accounts.services.access import last_revoked_by_staff, system_actor
from janitor.errors import ErrorKind, JanitorError
from janitor.services import notify
from reconciliation import gateway
from reconciliation.models import (
    Outcome,
    ReconciliationRun,
    RunLink,
    RunOutcome,
    RunStatus,
    Subscription,
)
from reconciliation.services.access import (
    STATUS_CHANGING,
    access_decide,
    access_outcome_apply_checked,
    seats_enabled_members,
    seats_flag_apply_checked,
)
from reconciliation.services.sync import (
    LinkPlan,
    SyncReport,
    customer_link_write,
    customers_known_unmatched,
    customers_link_local,
    customers_link_plan,
    mirror_page_upsert,
    subscriptions_parse,
    waiting_emails_store,
)

logger = logging.getLogger(__name__)

AUDIT_ACTOR = system_actor("audit")
SCHEDULE_TRIGGER = system_actor("schedule")
SCHEDULE_NAME = "janitor: nightly audit"
SCHEDULE_FUNC = "reconciliation.tasks_audit.audit_scheduled"
# A million subscriptions take minutes, past the cluster's default task timeout. A broker that
# redelivers a task still running meets the run guard below and does nothing.
AUDIT_TASK_TIMEOUT = 3600
# pg_advisory_xact_lock key ("JANI" in ASCII): serialises run starts across every cluster.
START_LOCK_KEY = 0x4A414E49
ACCOUNT_BATCH = 2000
# Allocations (less frees) between two runs of the cycle collector during an audit; see
# _fewer_collector_passes. CPython's default is 700.
AUDIT_GC_THRESHOLD = 20_000
APPLY_BATCH = 100
# A running run that stopped reporting progress this long ago died with its worker.
RUN_STALE_AFTER = timedelta(minutes=20)
# A scheduled trigger this soon after another scheduled run is the same night, delivered twice.
SCHEDULED_MIN_GAP = timedelta(hours=12)
PROGRESS_EVERY_SECONDS = 1.0
# Provider pages are 100 subscriptions; the mirror is compared and written 500 at a time.
MIRROR_ROWS_PER_WRITE = 500
# Accounts that can use the product: the brake's denominator.
WITH_ACCESS = frozenset({AccessStatus.ACTIVE, AccessStatus.GRACE_PERIOD})
NO_SUBSCRIPTIONS: frozenset[str] = frozenset()

ProgressCallback = Callable[[dict], None]


class RunStateError(JanitorError):
    """The run is not in a state that allows this (e.g. applying a run that is not halted)."""

    kind = ErrorKind.CONFLICT


# --- Starting a run (at most one at a time, once per night) --------------------------------


def _serialise_starts() -> None:
    # Row locks cannot guard a row that does not exist yet; an advisory lock held to the end of
    # this transaction makes "is one running? no: create" atomic across processes.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [START_LOCK_KEY])


def _last_sign_of_life(run: ReconciliationRun):
    stamp = (run.progress or {}).get("updated_at")
    if stamp:
        try:
            return datetime.fromisoformat(stamp)
        except ValueError:
            pass
    return run.started_at


def audit_run_start(
    *, dry_run: bool, triggered_by: str, scheduled: bool = False
) -> ReconciliationRun | None:
    """Create the run row, or return None when another run is going (or tonight's already ran).

    Several clusters' schedulers, a redelivered task and a staff click all come through here.
    """
    with transaction.atomic():
        _serialise_starts()
        now = timezone.now()
        for running in ReconciliationRun.objects.select_for_update().filter(
            status=RunStatus.RUNNING
        ):
            if _last_sign_of_life(running) > now - RUN_STALE_AFTER:
                return None
            running.status = RunStatus.FAILED
            running.finished_at = now
            running.errors = (running.errors + "\n" if running.errors else "") + (
                "The worker stopped reporting progress; marked failed by the next start."
            )
            running.save(update_fields=["status", "finished_at", "errors"])
            notify.run_halted(run=running)
        if (
            scheduled
            and ReconciliationRun.objects.filter(
                triggered_by=SCHEDULE_TRIGGER, started_at__gte=now - SCHEDULED_MIN_GAP
            ).exists()
        ):
            return None
        return ReconciliationRun.objects.create(
            started_at=now,
            dry_run=dry_run,
            triggered_by=triggered_by,
            status=RunStatus.RUNNING,
            progress={"phase": "starting", "updated_at": now.isoformat()},
        )


# --- Executing it ---------------------------------------------------------------------------


class _Progress:
    """Writes the run's progress at most once a second: round trips follow time, not rows."""

    def __init__(self, run: ReconciliationRun, callback: ProgressCallback | None) -> None:
        self.run = run
        self.callback = callback
        self.state: dict = {"phase": "listing", "pages": 0, "subscriptions": 0, "accounts": 0}
        self._last = 0.0

    def update(self, force: bool = False, **changes) -> None:
        self.state.update(changes)
        if self.callback is not None:
            self.callback(dict(self.state))
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_EVERY_SECONDS:
            return
        self._last = now
        self.state["updated_at"] = timezone.now().isoformat()
        self.run.progress = dict(self.state)
        ReconciliationRun.objects.filter(pk=self.run.pk).update(
            progress=self.run.progress,
            pages_read=self.state["pages"],
            subscriptions_read=self.state["subscriptions"],
        )


class _StatusSets:
    """customer id -> the set of its subscriptions' statuses, sets shared between customers.

    A million customers share a few dozen distinct sets, so memory is one dict entry each.
    """

    def __init__(self) -> None:
        self.by_customer: dict[str, frozenset[str]] = {}
        self._interned: dict[frozenset[str], frozenset[str]] = {}
        # customer id -> seats its access-granting per-seat subscriptions pay for (few entries:
        # only customers on per-seat prices).
        self.seats: dict[str, int] = {}

    def add(self, customer_id: str, status: str, seat_quantity: int | None = None) -> None:
        if seat_quantity is not None and status in settings.JANITOR_ACCESS_STATUSES:
            self.seats[customer_id] = self.seats.get(customer_id, 0) + seat_quantity
        current = self.by_customer.get(customer_id, NO_SUBSCRIPTIONS)
        if status in current:
            return
        merged = current | {status}
        self.by_customer[customer_id] = self._interned.setdefault(merged, merged)


def _listing_read(
    *, run: ReconciliationRun, progress: _Progress, durations: Counter
) -> tuple[_StatusSets, set[str], Exception | None]:
    """Read every provider subscription; returns (statuses, unknown customers, listing error).

    The mirror is compared and written MIRROR_ROWS_PER_WRITE subscriptions at a time: one query
    for 500 costs much less than five for 100. What was read is written even when the listing
    fails part way.
    """
    statuses = _StatusSets()
    unknown: set[str] = set()
    write = not run.dry_run
    buffered: list = []
    buffered_since = None

    def flush() -> None:
        if not buffered:
            return
        started = time.perf_counter()
        # The oldest page's time: a row a webhook changed after it is newer than the listing.
        result = mirror_page_upsert(subscriptions=buffered, fetched_at=buffered_since, write=write)
        unknown.update(result.unknown_customers)
        progress.state["mirror_written"] = progress.state.get("mirror_written", 0) + result.written
        buffered.clear()
        durations["mirror"] += time.perf_counter() - started

    pages = iter(gateway.subscription_pages(status="all", limit=100))
    while True:
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            page = next(pages)
        except StopIteration:
            flush()
            return statuses, unknown, None
        except gateway.GatewayAuthError:
            raise  # a wrong or restricted key: the run fails at once, deciding nothing
        except gateway.GatewayError as exc:
            flush()
            return statuses, unknown, exc
        finally:
            durations["listing"] += time.perf_counter() - started
            durations["listing_cpu"] += time.process_time() - cpu_started
        started = time.perf_counter()
        if not buffered:
            buffered_since = timezone.now()
        parsed = subscriptions_parse(page)
        for sub in parsed:
            statuses.add(
                sub.fields["customer_id"], sub.fields["status"], sub.fields["seat_quantity"]
            )
        buffered.extend(parsed)
        durations["parsing"] += time.perf_counter() - started
        if len(buffered) >= MIRROR_ROWS_PER_WRITE:
            flush()
        progress.update(
            pages=progress.state["pages"] + 1,
            subscriptions=progress.state["subscriptions"] + len(parsed),
        )


def _decider(now: datetime) -> Callable[..., str]:
    """access_decide, remembered per distinct situation: a million accounts fall into a few
    dozen (status, grace ended or not, subscription statuses, comp, staff revocation).

    access_decide is pure and uses grace_ends_at only against `now`, so a grace end stands in
    as "ended" (now) or "running" (a day later) without changing the answer.
    """
    remembered: dict[tuple, str] = {}
    running = now + timedelta(days=1)

    def decide(access_status, grace_ends_at, sub_statuses, has_comp, staff_revoked) -> str:
        grace = None if grace_ends_at is None else (now if grace_ends_at <= now else running)
        key = (access_status, grace, sub_statuses, has_comp, staff_revoked)
        outcome = remembered.get(key)
        if outcome is None:
            outcome = remembered[key] = access_decide(
                access_status=access_status,
                grace_ends_at=grace,
                sub_statuses=sub_statuses,
                has_active_comp=has_comp,
                revoked_by_staff=staff_revoked,
                now=now,
            )
        return outcome

    return decide


def _mirror_holds_subscriptions() -> bool:
    return Subscription.objects.exists()


def _statuses_linked_elsewhere(
    *, after_id: int, own_customer: dict[int, str]
) -> dict[int, frozenset[str]]:
    """Statuses of subscriptions linked to the batch's accounts under another customer id
    (found by metadata or email): webhooks decide from them too, so the audit must.

    `own_customer` maps the batch's account ids to their customer id; the batch is the accounts
    with ids in (after_id, max(own_customer)]. One index range scan a batch, compared here: an
    IN list of 2,000 ids (or a join PostgreSQL plans as a scan of every account) cost much more
    (docs/benchmarks/audit.md). The mirror rows were refreshed from this run's listing.
    """
    found: dict[int, set[str]] = {}
    rows = Subscription.objects.filter(
        account_id__gt=after_id, account_id__lte=max(own_customer)
    ).values_list("account_id", "customer_id", "status")
    for account_id, customer_id, status in rows:
        own = own_customer.get(account_id)
        if own is not None and customer_id != own:
            found.setdefault(account_id, set()).add(status)
    return {account_id: frozenset(found_statuses) for account_id, found_statuses in found.items()}


def _unresolved_reason(plan: LinkPlan) -> str:
    """Why an account with no customer cannot be verified this run ("" when it can): some
    provider customer could not be looked up, and it could be that account's. Once a run."""
    if not plan.unresolved:
        return ""
    failed = sum(1 for why in plan.unresolved.values() if why.startswith("lookup failed"))
    capped = len(plan.unresolved) - failed
    parts = []
    if capped:
        parts.append(f"{capped} over the {settings.JANITOR_AUDIT_LINK_LOOKUPS} lookups a run")
    if failed:
        parts.append(f"{failed} failed")
    return (
        "no customer linked, and provider customers not looked up this run could be "
        f"this account's ({', '.join(parts)})"
    )


LISTING_UNREACHED = "the provider listing failed before reaching this account's customer"


def _outcomes_decide(
    *,
    run: ReconciliationRun,
    statuses: _StatusSets,
    listing_complete: bool,
    plan: LinkPlan,
    progress: _Progress,
) -> tuple[Counter, Counter, int, int]:
    """Decide every account in batches; saves RunOutcome rows for the ones needing a change
    (or that could not be checked) and RunLink rows for the links the lookups found.

    Links are used in memory only: the decision is the same whether they are written later
    (an applied run) or never (a dry or halted run).
    Returns (counts per outcome, not-checked reasons, accounts with access, customers with no
    account). Queries per batch: accounts, staff revocations, linked elsewhere, inserts.
    """
    counts: Counter = Counter()
    unchecked_reasons: Counter = Counter()
    with_access = 0
    matched_customers = 0
    now = timezone.now()
    last_id = 0
    decided = 0
    # Comps are a handful of deliberate grants: one read for the whole run beats an IN list
    # of thousands of ids per batch.
    comps = set(AccessComp.objects.filter(expires_at__gt=now).values_list("account_id", flat=True))
    decide = _decider(now)
    unresolved_reason = _unresolved_reason(plan)
    RunLink.objects.bulk_create(
        [
            RunLink(run=run, account_id=account_id, customer_id=customer_id, how=how)
            for account_id, (customer_id, how) in plan.by_account.items()
        ],
        batch_size=1000,
    )
    while True:
        batch = list(
            Account.objects.filter(pk__gt=last_id)
            .order_by("pk")
            .values_list("pk", "access_status", "grace_ends_at", "stripe_customer_id")[
                :ACCOUNT_BATCH
            ]
        )
        if not batch:
            break
        after_id, last_id = last_id, batch[-1][0]
        revoked = [row[0] for row in batch if row[1] == AccessStatus.REVOKED]
        staff_revoked = last_revoked_by_staff(account_ids=revoked) if revoked else set()
        elsewhere = _statuses_linked_elsewhere(
            after_id=after_id, own_customer={row[0]: row[3] for row in batch}
        )
        pending: list[RunOutcome] = []
        # Seat drift: enabled members counted only for accounts on a per-seat price (one
        # query a batch, and none when no customer in the listing has one).
        members: dict[int, int] = {}
        if statuses.seats:
            members = seats_enabled_members(
                account_ids=[
                    row[0]
                    for row in batch
                    if (row[3] or (plan.by_account.get(row[0]) or ("",))[0]) in statuses.seats
                ]
            )
        for account_id, access_status, grace_ends_at, customer_id in batch:
            link = plan.by_account.get(account_id) if not customer_id else None
            if link is not None:
                customer_id = link[0]
            sub_statuses = statuses.by_customer.get(customer_id, NO_SUBSCRIPTIONS)
            if customer_id and customer_id in statuses.by_customer:
                matched_customers += 1
            if account_id in elsewhere:
                sub_statuses = sub_statuses | elsewhere[account_id]
            outcome = decide(
                access_status,
                grace_ends_at,
                sub_statuses,
                account_id in comps,
                account_id in staff_revoked,
            )
            if access_status in WITH_ACCESS:
                with_access += 1
            seat_detail = None
            if (
                outcome == Outcome.IN_SYNC
                and access_status in WITH_ACCESS
                and customer_id in statuses.seats
                and account_id not in comps
                and members.get(account_id, 0) > statuses.seats[customer_id]
            ):
                outcome = Outcome.FLAG_SEATS_EXCEEDED
                seat_detail = {"members": members[account_id], "seats": statuses.seats[customer_id]}
            unchecked = ""
            if not listing_complete and customer_id not in statuses.by_customer:
                unchecked = LISTING_UNREACHED
            elif not customer_id:
                unchecked = unresolved_reason
            if unchecked:
                counts[Outcome.NOT_CHECKED] += 1
                unchecked_reasons[unchecked] += 1
            else:
                counts[outcome] += 1
            if outcome == Outcome.IN_SYNC:
                continue
            detail = {
                "access_status": access_status,
                "subscription_statuses": sorted(sub_statuses),
                "customer_id": customer_id,
            }
            if link is not None:
                detail["linked_by"] = link[1]
            if seat_detail is not None:
                detail.update(seat_detail)
            if unchecked:
                detail.update(would_be=outcome, reason=unchecked)
                outcome = Outcome.NOT_CHECKED
            pending.append(
                RunOutcome(run=run, account_id=account_id, outcome=outcome, detail=detail)
            )
        RunOutcome.objects.bulk_create(pending, batch_size=1000)
        decided += len(batch)
        progress.update(phase="deciding", accounts=decided)
    unmatched = len(statuses.by_customer) - matched_customers
    return counts, unchecked_reasons, with_access, unmatched


def _links_apply(*, run: ReconciliationRun) -> list[str]:
    """Write the run's planned links, each re-checked under the account's lock."""
    errors: list[str] = []
    last_id = 0
    while True:
        links = list(
            RunLink.objects.filter(run=run, applied=False, skip_reason="", pk__gt=last_id).order_by(
                "pk"
            )[:APPLY_BATCH]
        )
        if not links:
            return errors
        last_id = links[-1].pk
        with transaction.atomic():
            for link in links:
                why = customer_link_write(account_id=link.account_id, customer_id=link.customer_id)
                if why:
                    link.skip_reason = why
                else:
                    link.applied = True
            RunLink.objects.bulk_update(links, ["applied", "skip_reason"])


def _outcomes_apply(*, run: ReconciliationRun, progress: _Progress | None = None) -> list[str]:
    """Apply the run's saved outcomes, each decided again under the account's lock at the
    moment of writing (access_outcome_apply_checked): one no longer right is skipped and the
    reason kept on its row. Returns per-account errors.

    Re-applying is a no-op for rows done or skipped, so a crash mid-way is finished by
    applying again.
    """
    errors: list[str] = []
    source = f"run:{run.pk}"
    last_id = 0
    applied = skipped = 0
    decided_at = run.outcomes_decided_at or run.started_at
    while True:
        rows = list(
            RunOutcome.objects.filter(run=run, applied=False, skip_reason="", pk__gt=last_id)
            .exclude(outcome=Outcome.NOT_CHECKED)
            .select_related("account")
            .order_by("pk")[:APPLY_BATCH]
        )
        if not rows:
            break
        last_id = rows[-1].pk
        done: list[int] = []
        skips: list[RunOutcome] = []
        # One commit per batch, not per account (each commit waits for the WAL flush); the
        # savepoint per account keeps one failure from undoing the others.
        with transaction.atomic():
            for row in rows:
                try:
                    if row.outcome == Outcome.FLAG_SEATS_EXCEEDED:
                        why = seats_flag_apply_checked(
                            account=row.account, actor=AUDIT_ACTOR, run=run, source=source
                        )
                        if why:
                            row.skip_reason = why[:255]
                            skips.append(row)
                        else:
                            done.append(row.pk)
                        continue
                    # Atomic itself: inside this transaction, a savepoint.
                    _, why = access_outcome_apply_checked(
                        account=row.account,
                        planned=row.outcome,
                        planned_status=(row.detail or {}).get("access_status"),
                        decided_at=decided_at,
                        actor=AUDIT_ACTOR,
                        source=source,
                        run=run,
                        detail=row.detail,
                    )
                except Exception as exc:  # one account's failure must not stop the night
                    logger.exception("audit run %s: applying %s failed", run.pk, row.account_id)
                    errors.append(f"{row.account.public_id}: {row.outcome}: {exc}")
                    continue
                if why:
                    row.skip_reason = why[:255]
                    skips.append(row)
                else:
                    done.append(row.pk)
            RunOutcome.objects.filter(pk__in=done).update(applied=True)
            RunOutcome.objects.bulk_update(skips, ["skip_reason"])
        applied += len(done)
        skipped += len(skips)
        if progress is not None:
            progress.update(phase="applying", applied=applied, skipped=skipped)
    if skipped:
        run.counts = {**(run.counts or {}), "skipped_at_apply": skipped}
        ReconciliationRun.objects.filter(pk=run.pk).update(counts=run.counts)
    return errors


def _brake_reason(*, changes: int, with_access: int, ratio: float) -> str:
    limit = settings.JANITOR_AUDIT_MAX_CHANGE_RATIO
    if ratio <= limit:
        return ""
    return (
        f"Safety brake: {changes} of {with_access} accounts with access would change access "
        f"status ({ratio:.1%}, the limit is {limit:.1%}). Nothing was applied; an Admin can "
        "review the outcomes and apply or discard them."
    )


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
    """Run the collector for reference cycles less often while the audit runs.

    Listing a million subscriptions allocates and frees tens of millions of short-lived SDK
    objects. At CPython's default threshold (700) that starts the cycle collector about 20,000
    times in a 1M run, and its full passes walk every long-lived object of the process: a
    sixth of Janitor's own work when measured (docs/benchmarks/audit.md).
    Reference counting frees those objects anyway (peak RSS is the same either way); cycles
    are still collected, only in fewer, larger passes. Restored afterwards: a worker process
    runs one task at a time.
    """
    old = gc.get_threshold()
    gc.set_threshold(AUDIT_GC_THRESHOLD, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def audit_run_execute(
    *, run: ReconciliationRun, on_progress: ProgressCallback | None = None
) -> ReconciliationRun:
    """Run the audit for a started run: list, mirror, link, decide, brake, then apply or halt.

    A dry run writes nothing but the run and its outcomes. A listing that fails part way, or a
    change ratio above JANITOR_AUDIT_MAX_CHANGE_RATIO, halts the run with nothing applied.
    """
    with _fewer_collector_passes():
        return _audit_run_execute(run=run, on_progress=on_progress)


def _audit_run_execute(
    *, run: ReconciliationRun, on_progress: ProgressCallback | None
) -> ReconciliationRun:
    if not _run_claim(run=run):
        return run
    durations: Counter = Counter()
    started, cpu_started = time.perf_counter(), time.process_time()
    progress = _Progress(run, on_progress)
    try:
        statuses, unknown, listing_error = _listing_read(
            run=run, progress=progress, durations=durations
        )
        link_report = SyncReport()
        plan = LinkPlan()
        if unknown and listing_error is None:
            # Looked up (read only) in a dry run too, so it predicts the real run.
            phase_started = time.perf_counter()
            progress.update(force=True, phase="linking")
            cap = settings.JANITOR_AUDIT_LINK_LOOKUPS
            ordered = sorted(unknown)
            # Customers looked up on an earlier night are matched from what was kept; only
            # the others cost a call, so the cap moves on to new customers each night.
            known = customers_known_unmatched(customer_ids=ordered)
            customers_link_local(emails=known, plan=plan, report=link_report)
            fresh = [customer_id for customer_id in ordered if customer_id not in known]
            customers_link_plan(customer_ids=fresh[:cap], report=link_report, plan=plan)
            for customer_id in fresh[cap:]:
                plan.unresolved[customer_id] = "over the lookup cap"
            if not run.dry_run:
                waiting_emails_store(emails=plan.unmatched_emails)  # mirror data only
            durations["linking"] += time.perf_counter() - phase_started
        phase_started = time.perf_counter()
        progress.update(force=True, phase="deciding")
        run.outcomes_decided_at = timezone.now()
        ReconciliationRun.objects.filter(pk=run.pk).update(
            outcomes_decided_at=run.outcomes_decided_at
        )
        counts, unchecked_reasons, with_access, unmatched = _outcomes_decide(
            run=run,
            statuses=statuses,
            listing_complete=listing_error is None,
            plan=plan,
            progress=progress,
        )
        durations["deciding"] += time.perf_counter() - phase_started
        changes = sum(counts[o] for o in STATUS_CHANGING)
        ratio = changes / with_access if with_access else (1.0 if changes else 0.0)
        run.counts = {o.value: counts.get(o.value, 0) for o in Outcome}
        run.counts["unmatched_customers"] = unmatched
        run.counts["linked_customers"] = len(plan.by_account)
        run.counts["customers_not_looked_up"] = len(plan.unresolved)
        if unchecked_reasons:
            run.counts["not_checked_reasons"] = dict(unchecked_reasons)
        run.change_ratio = ratio
        errors: list[str] = [f"ambiguous {c}: {why}" for c, why in link_report.ambiguous]
        halt_reason = _brake_reason(changes=changes, with_access=with_access, ratio=ratio)
        if listing_error is None and not statuses.by_customer and _mirror_holds_subscriptions():
            # A wrong key (another Stripe account, test mode) lists nothing: that would flag
            # every account as a manual grant. Nothing is applied until someone looks.
            halt_reason = (
                "The provider listed no subscriptions while the mirror holds some: check "
                "STRIPE_API_KEY (another account or mode?). Nothing was applied."
            )
        if listing_error is not None and getattr(listing_error, "status", None) in {401, 403}:
            notify.provider_key_refused(
                status=listing_error.status, message=str(listing_error), where="Nightly audit"
            )
        if listing_error is not None:
            halt_reason = (
                f"The provider listing failed after {progress.state['pages']} page(s): "
                f"{listing_error}. Nothing was applied; accounts the listing did not reach "
                "are not checked."
            )
        if run.dry_run:
            run.status = RunStatus.DRY_RUN
            run.halt_reason = f"A real run would halt here. {halt_reason}" if halt_reason else ""
        elif halt_reason:
            run.status = RunStatus.HALTED
            run.halt_reason = halt_reason
        else:
            phase_started = time.perf_counter()
            progress.update(force=True, phase="applying", applied=0)
            errors += _links_apply(run=run)
            errors += _outcomes_apply(run=run, progress=progress)
            durations["applying"] += time.perf_counter() - phase_started
            run.status = RunStatus.APPLIED
        run.errors = "\n".join(errors[:200])
    except Exception as exc:
        logger.exception("audit run %s failed", run.pk)
        run.status = RunStatus.FAILED
        run.errors = f"{type(exc).__name__}: {exc}"
    durations["total"] = time.perf_counter() - started
    durations["own_work"] = durations["total"] - durations["listing"]
    # CPU seconds of this process: steadier than wall time on a busy machine (the database's
    # own time is not in them).
    durations["own_work_cpu"] = time.process_time() - cpu_started - durations["listing_cpu"]
    run.durations = {phase: round(seconds, 3) for phase, seconds in durations.items()}
    run.finished_at = timezone.now()
    run.pages_read = progress.state["pages"]
    run.subscriptions_read = progress.state["subscriptions"]
    progress.state.update(phase="done", updated_at=run.finished_at.isoformat())
    run.progress = dict(progress.state)
    run.save()
    if run.status in {RunStatus.HALTED, RunStatus.FAILED}:
        notify.run_halted(run=run)
    return run


def audit_run(
    *,
    dry_run: bool,
    triggered_by: str,
    scheduled: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ReconciliationRun | None:
    """Start and execute a run in this process; None when another run is already going."""
    run = audit_run_start(dry_run=dry_run, triggered_by=triggered_by, scheduled=scheduled)
    if run is None:
        return None
    return audit_run_execute(run=run, on_progress=on_progress)


def audit_run_queue(*, dry_run: bool, triggered_by: str) -> ReconciliationRun | None:
    """Start a run and hand its execution to the queue once this transaction commits (the
    dashboard's "Run now"); None when another run is already going."""
    run = audit_run_start(dry_run=dry_run, triggered_by=triggered_by)
    if run is not None:
        _enqueue_after_commit("reconciliation.tasks_audit.audit_run_task", run.pk)
    return run


def _enqueue_after_commit(task: str, run_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(task, run_id, q_options={"timeout": AUDIT_TASK_TIMEOUT})
    )


# --- An Admin's decision on a halted run ----------------------------------------------------


def audit_run_apply_begin(*, run: ReconciliationRun, actor_user: User) -> ReconciliationRun:
    """Claim a halted run for applying (two clicks cannot both apply it)."""
    with transaction.atomic():
        locked = ReconciliationRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.HALTED:
            raise RunStateError(f"Run {locked.pk} is {locked.status}, not halted.")
        if locked.dry_run:
            raise RunStateError("A dry run's outcomes are for reading; start a real run instead.")
        locked.status = RunStatus.RUNNING
        locked.decided_by = actor_user
        locked.decided_at = timezone.now()
        locked.progress = {**locked.progress, "phase": "applying", "applied": 0}
        locked.progress["updated_at"] = locked.decided_at.isoformat()
        locked.save(update_fields=["status", "decided_by", "decided_at", "progress"])
    return locked


def audit_run_apply_queue(*, run: ReconciliationRun, actor_user: User) -> ReconciliationRun:
    """Claim a halted run for applying and hand the apply to the queue after commit."""
    claimed = audit_run_apply_begin(run=run, actor_user=actor_user)
    _enqueue_after_commit("reconciliation.tasks_audit.audit_apply_task", claimed.pk)
    return claimed


def audit_run_apply_finish(*, run: ReconciliationRun) -> ReconciliationRun:
    """Apply exactly the outcomes the halted run saved, then mark it applied."""
    progress = _Progress(run, None)
    progress.state.update(run.progress or {})
    started = time.perf_counter()
    errors = _links_apply(run=run)
    errors += _outcomes_apply(run=run, progress=progress)
    run.refresh_from_db()
    run.durations = {**run.durations, "applying": round(time.perf_counter() - started, 3)}
    run.status = RunStatus.APPLIED
    run.errors = "\n".join(filter(None, [run.errors, *errors[:200]]))
    run.progress = {**progress.state, "phase": "done", "updated_at": timezone.now().isoformat()}
    run.finished_at = timezone.now()
    run.save()
    return run


def audit_run_discard(*, run: ReconciliationRun, actor_user: User) -> ReconciliationRun:
    """Throw a halted run's outcomes away (they stay readable); nothing is applied."""
    with transaction.atomic():
        locked = ReconciliationRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.HALTED:
            raise RunStateError(f"Run {locked.pk} is {locked.status}, not halted.")
        locked.status = RunStatus.DISCARDED
        locked.decided_by = actor_user
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decided_by", "decided_at"])
    return locked


# --- The schedule ---------------------------------------------------------------------------


def audit_schedule_ensure() -> None:
    """Create or update the nightly audit's django-q2 cron schedule from JANITOR_AUDIT_CRON."""
    from django_q.models import Schedule

    cron = settings.JANITOR_AUDIT_CRON
    kwargs = repr({"q_options": {"timeout": AUDIT_TASK_TIMEOUT}})
    schedule = Schedule.objects.filter(name=SCHEDULE_NAME).first()
    if schedule is None:
        Schedule.objects.create(
            name=SCHEDULE_NAME,
            func=SCHEDULE_FUNC,
            kwargs=kwargs,
            schedule_type=Schedule.CRON,
            cron=cron,
            repeats=-1,
        )
        return
    wanted = (SCHEDULE_FUNC, kwargs, Schedule.CRON, cron, -1)
    current = (schedule.func, schedule.kwargs, schedule.schedule_type, schedule.cron)
    if (*current, schedule.repeats) != wanted:
        schedule.func, schedule.kwargs, schedule.schedule_type, schedule.cron = wanted[:4]
        schedule.repeats = -1
        schedule.next_run = schedule.calculate_next_run()
        schedule.save()
