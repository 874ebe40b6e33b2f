"""Applying a run: its planned links and outcomes, each re-checked under the account's lock at
the moment of writing; an Admin's apply or discard of a halted run."""

from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import IntegrityError, OperationalError, connection, connections, transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from accounts.models import Account, User
from janitor.services import notify
from reconciliation.models import (
    Outcome,
    ReconciliationRun,
    RunLink,
    RunOutcome,
    RunStatus,
    Subscription,
)
from reconciliation.services.access_decisions import (
    access_outcome_apply_checked,
    seats_flag_apply_checked,
)
from reconciliation.services.runs.common import (
    RECONCILIATION_ACTOR,
    Progress,
    RunStateError,
    enqueue_after_commit,
)
from reconciliation.services.sync import customer_links_write

logger = logging.getLogger(__name__)

APPLY_BATCH = 100
DEADLOCK_SQLSTATE = "40P01"
# Links lock only their own accounts and are written in a fixed number of statements a batch:
# larger batches, fewer round trips and commits (a first night writes one per account).
LINK_BATCH = 1000
# Threads writing a first night's links at once (PostgreSQL only), from this many links on.
LINK_WRITERS = 2
LINK_PARALLEL_FROM = 20 * LINK_BATCH
APPLY_TASK = "reconciliation.tasks.reconciliation_apply_task"


def links_apply(*, run: ReconciliationRun) -> list[str]:
    """Write the run's planned links, each re-checked under its account's lock, a batch (a
    range of LINK_BATCH link ids) at a time. A first night plans one per account: on
    PostgreSQL, outside a transaction, LINK_WRITERS threads write the batches side by side,
    each on its own connection (the cost is the database's index updates, which two backends
    do at once). The batches hold disjoint accounts and customers, so they cannot deadlock."""
    bounds = RunLink.objects.filter(run=run, applied=False, skip_reason="").aggregate(
        low=Min("pk"), high=Max("pk"), count=Count("pk")
    )
    if not bounds["count"]:
        return []
    if connection.vendor == "postgresql" and bounds["count"] >= LINK_PARALLEL_FROM:
        # The mirror rows these links give to their accounts were written by this run's
        # listing, after the statistics were last gathered: without fresh ones the planner
        # reads every unlinked row (the partial index on them) for each batch instead of each
        # customer's own rows, quadratic in a first night (1M links: hours, not a minute).
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Subscription._meta.db_table}")
            cursor.execute(f"ANALYZE {RunLink._meta.db_table}")
    ranges = [
        (first, first + LINK_BATCH - 1)
        for first in range(bounds["low"], bounds["high"] + 1, LINK_BATCH)
    ]
    parallel = (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block  # other connections could not see its rows
        and bounds["count"] >= LINK_PARALLEL_FROM
    )
    if not parallel:
        for id_range in ranges:
            _links_apply_range(run, id_range)
        return []
    with ThreadPoolExecutor(LINK_WRITERS, thread_name_prefix="janitor-links") as pool:
        for _ in pool.map(functools.partial(_links_apply_in_thread, run), ranges):
            pass  # re-raises the first batch that failed
    return []


def _links_apply_in_thread(run: ReconciliationRun, id_range: tuple[int, int]) -> None:
    try:
        _links_apply_range(run, id_range)
    finally:
        connections.close_all()  # this thread's own connection only


# A batch aborted as a deadlock victim (some other writer took the same rows in another
# order) is tried again this many times: it is all-or-nothing, so nothing of it was written.
LINK_DEADLOCK_RETRIES = 3


def _links_apply_range(run: ReconciliationRun, id_range: tuple[int, int]) -> None:
    for attempt in range(LINK_DEADLOCK_RETRIES + 1):
        try:
            _links_apply_range_once(run, id_range)
            return
        except OperationalError as exc:
            deadlock = getattr(exc.__cause__, "sqlstate", None) == DEADLOCK_SQLSTATE
            if not deadlock or attempt == LINK_DEADLOCK_RETRIES or connection.in_atomic_block:
                raise
            logger.warning("links %s-%s: deadlock, trying the batch again", *id_range)
            time.sleep(0.05 * (attempt + 1))


def _links_apply_range_once(run: ReconciliationRun, id_range: tuple[int, int]) -> None:
    if connection.vendor == "postgresql" and _links_apply_range_plain(run, id_range):
        return
    pending = RunLink.objects.filter(
        run=run, applied=False, skip_reason="", pk__gte=id_range[0], pk__lte=id_range[1]
    )
    with transaction.atomic():
        links = list(pending.values_list("account_id", "customer_id"))
        if not links:
            return
        refused = customer_links_write(links=links)
        pending.exclude(account_id__in=list(refused)).update(applied=True)
        for account_id, reason in refused.items():
            RunLink.objects.filter(run=run, account_id=account_id).update(skip_reason=reason)


# A batch's pending links: the run's, in its id range, neither written nor refused yet.
_PENDING = (
    "l.run_id = %(run)s AND l.id BETWEEN %(low)s AND %(high)s"
    " AND NOT l.applied AND l.skip_reason = ''"
)
_PLAIN_WAITING_SQL = f"""
UPDATE {Subscription._meta.db_table} AS s SET account_id = l.account_id
FROM {RunLink._meta.db_table} AS l
WHERE {_PENDING} AND s.customer_id = l.customer_id AND s.account_id IS NULL
"""
_PLAIN_ACCOUNTS_SQL = f"""
UPDATE {Account._meta.db_table} AS a SET stripe_customer_id = l.customer_id
FROM {RunLink._meta.db_table} AS l
WHERE {_PENDING} AND a.id = l.account_id AND a.stripe_customer_id = ''
"""
_PLAIN_DONE_SQL = f"UPDATE {RunLink._meta.db_table} AS l SET applied = true WHERE {_PENDING}"


class _NotAsPlanned(Exception):
    """Rolls back a batch whose links are not all still as the run found them."""


def _links_apply_range_plain(run: ReconciliationRun, id_range: tuple[int, int]) -> bool:
    """Write a batch of links in three statements when every one of them is still as the run
    found it (the account exists and still has no customer, and no other account has taken the
    customer): the usual case, and a first night's million. False, with nothing written, when
    one is not; the batch is then written link by link, with the reasons (customer_links_write).

    Each UPDATE locks the rows it writes and re-reads them under that lock (PostgreSQL's READ
    COMMITTED re-check), so an account linked since the run is not written; the unique index
    on the customer refuses one whose customer another account took. The waiting mirror rows
    are locked before the accounts, as webhook processing takes them. No SELECT ... FOR UPDATE
    of its own: each lock would be one more write of every row."""
    params = {"run": run.pk, "low": id_range[0], "high": id_range[1]}
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_PLAIN_WAITING_SQL, params)
            cursor.execute(_PLAIN_ACCOUNTS_SQL, params)
            written = cursor.rowcount
            cursor.execute(_PLAIN_DONE_SQL, params)
            if cursor.rowcount != written:
                raise _NotAsPlanned
    except (_NotAsPlanned, IntegrityError):
        return False
    return True


def outcomes_apply(*, run: ReconciliationRun, progress: Progress | None = None) -> list[str]:
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
                            account=row.account, actor=RECONCILIATION_ACTOR, run=run, source=source
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
                        actor=RECONCILIATION_ACTOR,
                        source=source,
                        run=run,
                        detail=row.detail,
                    )
                except Exception as exc:  # one account's failure must not stop the night
                    logger.exception(
                        "reconciliation run %s: applying %s failed", run.pk, row.account_id
                    )
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
    # Every skip of the run, not this call's: an apply that stopped part way and was applied
    # again skipped some rows the first time (they are not tried again).
    every_skip = RunOutcome.objects.filter(run=run).exclude(skip_reason="").count()
    if every_skip:
        run.counts = {**(run.counts or {}), "skipped_at_apply": every_skip}
        ReconciliationRun.objects.filter(pk=run.pk).update(counts=run.counts)
    return errors


# --- An Admin's decision on a halted run ----------------------------------------------------


def reconciliation_run_apply_begin(
    *, run: ReconciliationRun, actor_user: User
) -> ReconciliationRun:
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


def reconciliation_run_apply_queue(
    *, run: ReconciliationRun, actor_user: User
) -> ReconciliationRun:
    """Claim a halted run for applying and hand the apply to the queue after commit."""
    claimed = reconciliation_run_apply_begin(run=run, actor_user=actor_user)
    enqueue_after_commit(APPLY_TASK, claimed.pk)
    return claimed


APPLY_STOPPED = (
    "Applying stopped: {reason}. What was applied stays applied; apply again to finish (each "
    "remaining row is re-checked at the moment of writing, rows done are skipped)."
)


def _apply_claim(*, run: ReconciliationRun) -> bool:
    """Take an Admin-approved run for applying; False when a (redelivered) task already has:
    the queue may hand the same task out again while the first is still applying."""
    with transaction.atomic():
        locked = ReconciliationRun.objects.select_for_update().get(pk=run.pk)
        state = locked.progress or {}
        if (
            locked.status != RunStatus.RUNNING
            or state.get("phase") != "applying"
            or state.get("apply_claimed")
        ):
            return False
        locked.progress = {
            **state,
            "apply_claimed": True,
            "updated_at": timezone.now().isoformat(),
        }
        locked.save(update_fields=["progress"])
        run.progress = locked.progress
    return True


def _unclaimed(state: dict[str, Any]) -> dict[str, Any]:
    """A run's progress without the apply claim (the apply is over, one way or the other)."""
    return {k: v for k, v in state.items() if k != "apply_claimed"}


def run_apply_stopped(*, run: ReconciliationRun, reason: str) -> None:
    """An apply that stopped part way goes back to halted, so an Admin can apply it again (it is
    idempotent), instead of staying running (which holds every other run back) or failing
    (which could never be applied again)."""
    state = _unclaimed(run.progress or {})
    run.status = RunStatus.HALTED
    run.halt_reason = APPLY_STOPPED.format(reason=reason)
    run.progress = {**state, "phase": "halted", "updated_at": timezone.now().isoformat()}
    run.save(update_fields=["status", "halt_reason", "progress"])
    notify.run_halted(run=run)


def reconciliation_run_apply_finish(*, run: ReconciliationRun) -> ReconciliationRun:
    """Apply exactly the outcomes the halted run saved, then mark it applied. A redelivered
    task finds the run claimed and does nothing; a failure part way puts it back to halted."""
    if not _apply_claim(run=run):
        return run
    progress = Progress(run, None)
    progress.state.update(run.progress or {})
    started = time.perf_counter()
    try:
        errors = links_apply(run=run)
        errors += outcomes_apply(run=run, progress=progress)
    except Exception as exc:
        logger.exception("reconciliation run %s: applying stopped", run.pk)
        run.refresh_from_db()
        run_apply_stopped(run=run, reason=f"{type(exc).__name__}: {exc}")
        return run
    run.refresh_from_db()
    run.durations = {**run.durations, "applying": round(time.perf_counter() - started, 3)}
    run.status = RunStatus.APPLIED
    run.errors = "\n".join(filter(None, [run.errors, *errors[:200]]))
    run.progress = {
        **_unclaimed(progress.state),
        "phase": "done",
        "updated_at": timezone.now().isoformat(),
    }
    run.finished_at = timezone.now()
    run.save()
    return run


def reconciliation_run_discard(*, run: ReconciliationRun, actor_user: User) -> ReconciliationRun:
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
