"""The nightly audit against the local Stripe fake, through the real SDK over HTTP."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import AccessAudit, AccessComp, AccessStatus, Account
from reconciliation.models import (
    Flag,
    FlagKind,
    FlagStatus,
    Outcome,
    ReconciliationRun,
    RunOutcome,
    RunStatus,
    Subscription,
)
from reconciliation.services.runs import reconciliation_run
from tests.factories import AccountFactory, StaffFactory

pytestmark = pytest.mark.django_db


def _run(**kwargs) -> ReconciliationRun:
    run = reconciliation_run(dry_run=kwargs.pop("dry_run", False), triggered_by="test", **kwargs)
    assert run is not None
    return run


def _revoked(*, by: str, **kwargs) -> Account:
    account = AccountFactory(access_status=AccessStatus.REVOKED, is_active=False, **kwargs)
    if by:
        AccessAudit.objects.create(
            account=account,
            actor=by,
            from_status=AccessStatus.REVOKED_PENDING,
            to_status=AccessStatus.REVOKED,
            reason="revoked in a test",
        )
    return account


@pytest.fixture
def no_brake(settings):
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0


@pytest.fixture
def world(stripe_fake, no_brake):
    """One account per rule of docs/design.md, with its subscriptions at the fake provider."""
    now = timezone.now()
    accounts = {
        "in_sync": AccountFactory(),
        "start_grace": AccountFactory(),
        "payment_failed": AccountFactory(),
        "end_grace": AccountFactory(
            access_status=AccessStatus.GRACE_PERIOD, grace_ends_at=now + timedelta(days=3)
        ),
        "reactivate": _revoked(by=""),
        "mismatch": _revoked(by="admin@janitor.test"),
        "manual_grant": AccountFactory(stripe_customer_id=""),
        "grace_expired": AccountFactory(
            access_status=AccessStatus.GRACE_PERIOD, grace_ends_at=now - timedelta(days=1)
        ),
        "comped": AccountFactory(),
        "mixed": AccountFactory(),
        "trialing": AccountFactory(),
    }
    subs = {
        "in_sync": ["active"],
        "start_grace": ["canceled"],
        "payment_failed": ["past_due"],
        "end_grace": ["active"],
        "reactivate": ["active"],
        "mismatch": ["trialing"],
        "grace_expired": ["canceled"],
        "mixed": ["canceled", "active"],
        "trialing": ["trialing"],
    }
    for name, statuses in subs.items():
        customer = accounts[name].stripe_customer_id
        stripe_fake.add_customer(customer, email=accounts[name].email)
        for status in statuses:
            stripe_fake.add_subscription(customer=customer, status=status)
    AccessComp.objects.create(
        account=accounts["comped"],
        reason="Partner account",
        expires_at=now + timedelta(days=30),
        granted_by=StaffFactory(),
    )
    stripe_fake.add_customer("cus_nobody", email="nobody@example.test")
    stripe_fake.add_subscription(customer="cus_nobody", status="active")
    return accounts


def _status(account: Account) -> str:
    account.refresh_from_db()
    return account.access_status


def _open_flags(account: Account) -> set[str]:
    return set(
        Flag.objects.filter(account=account, status=FlagStatus.OPEN).values_list("kind", flat=True)
    )


@pytest.mark.smoke
def test_every_outcome_is_decided_and_applied(
    world, stripe_fake, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = _run()

    assert run.status == RunStatus.APPLIED, run.errors or run.halt_reason
    assert run.counts[Outcome.IN_SYNC] == 4  # in_sync, comped, mixed, trialing
    for outcome in (
        Outcome.START_GRACE,
        Outcome.PAYMENT_FAILED,
        Outcome.END_GRACE,
        Outcome.REACTIVATE,
        Outcome.FLAG_MISMATCH,
        Outcome.FLAG_MANUAL_GRANT,
        Outcome.FLAG_GRACE_EXPIRED,
    ):
        assert run.counts[outcome] == 1, outcome
    saved = dict(RunOutcome.objects.filter(run=run).values_list("account_id", "outcome"))
    assert saved[world["start_grace"].pk] == Outcome.START_GRACE
    assert all(RunOutcome.objects.filter(run=run).values_list("applied", flat=True))

    assert _status(world["in_sync"]) == AccessStatus.ACTIVE
    assert _status(world["start_grace"]) == AccessStatus.GRACE_PERIOD
    assert world["start_grace"].grace_ends_at > timezone.now() + timedelta(days=6)
    assert _open_flags(world["start_grace"]) == {FlagKind.MISSING_SUBSCRIPTION}
    assert _status(world["payment_failed"]) == AccessStatus.GRACE_PERIOD
    assert _open_flags(world["payment_failed"]) == {FlagKind.PAYMENT_FAILED}
    assert _status(world["end_grace"]) == AccessStatus.ACTIVE
    assert _status(world["reactivate"]) == AccessStatus.ACTIVE
    assert _open_flags(world["reactivate"]) == {FlagKind.REACTIVATED}
    # Automation never undoes a staff revocation: it only flags it.
    assert _status(world["mismatch"]) == AccessStatus.REVOKED
    assert _open_flags(world["mismatch"]) == {FlagKind.PROVIDER_MISMATCH}
    assert _status(world["manual_grant"]) == AccessStatus.ACTIVE
    assert _open_flags(world["manual_grant"]) == {FlagKind.MANUAL_GRANT}
    # A grace period that ended is flagged, never revoked.
    assert _status(world["grace_expired"]) == AccessStatus.GRACE_PERIOD
    assert _open_flags(world["grace_expired"]) == {FlagKind.GRACE_EXPIRED}
    assert _status(world["comped"]) == AccessStatus.ACTIVE
    assert _open_flags(world["comped"]) == set()
    # One canceled and one active subscription: still active, nothing flagged.
    assert _status(world["mixed"]) == AccessStatus.ACTIVE
    assert _open_flags(world["mixed"]) == set()

    # Access changes are audited as the audit's, with the run as the source.
    audit = AccessAudit.objects.get(account=world["start_grace"])
    assert (audit.actor, audit.source) == ("system:audit", f"run:{run.pk}")
    # The customers moved into grace are told, once.
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        [world["start_grace"].email, world["payment_failed"].email]
    )
    # The mirror holds every provider subscription, linked where an account exists.
    assert Subscription.objects.count() == 11
    assert Subscription.objects.filter(customer_id="cus_nobody", account__isnull=True).count() == 1
    assert run.counts["unmatched_customers"] == 1
    assert run.pages_read == 1 and run.subscriptions_read == 11
    assert stripe_fake.requests_to("/v1/subscriptions")[0].query["status"] == "all"


def test_a_second_run_changes_nothing(world):
    first = _run()
    assert first.status == RunStatus.APPLIED
    audits = AccessAudit.objects.count()
    flags = list(Flag.objects.order_by("pk").values_list("pk", "status"))
    mirror = list(Subscription.objects.order_by("pk").values_list("pk", "updated_at", "status"))
    statuses = list(Account.objects.order_by("pk").values_list("pk", "access_status"))

    second = _run()

    assert second.status == RunStatus.APPLIED
    for outcome in (Outcome.START_GRACE, Outcome.PAYMENT_FAILED, Outcome.END_GRACE):
        assert second.counts[outcome] == 0
    assert second.counts[Outcome.REACTIVATE] == 0
    assert second.progress["mirror_written"] == 0
    assert AccessAudit.objects.count() == audits
    assert list(Flag.objects.order_by("pk").values_list("pk", "status")) == flags
    assert (
        list(Subscription.objects.order_by("pk").values_list("pk", "updated_at", "status"))
        == mirror
    )
    assert list(Account.objects.order_by("pk").values_list("pk", "access_status")) == statuses


def test_a_dry_run_writes_only_the_run_and_its_outcomes(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = _run(dry_run=True)

    assert run.status == RunStatus.DRY_RUN
    assert run.counts[Outcome.START_GRACE] == 1
    assert RunOutcome.objects.filter(run=run).count() == 7
    assert not RunOutcome.objects.filter(applied=True).exists()
    assert Subscription.objects.count() == 0
    assert Flag.objects.count() == 0
    assert AccessAudit.objects.exclude(reason="revoked in a test").count() == 0
    assert _status(world["start_grace"]) == AccessStatus.ACTIVE
    assert mail.outbox == []


def _bulk_accounts(n: int, *, prefix: str = "cus_bench_") -> list[int]:
    Account.objects.bulk_create(
        [
            Account(email=f"bench{i}@example.test", stripe_customer_id=f"{prefix}{i:07d}")
            for i in range(n)
        ]
    )
    return list(Account.objects.filter(stripe_customer_id__startswith=prefix).values_list("pk"))


def test_a_listing_that_fails_on_page_3_halts_with_nothing_applied(stripe_fake, no_brake):
    _bulk_accounts(250)
    # Every fifth subscription is canceled: an applied run would start 50 grace periods.
    stripe_fake.add_subscriptions_bulk(250, status_cycle=("active",) * 4 + ("canceled",))
    stripe_fake.fail("/v1/subscriptions", status=500, times=5, after=2)

    run = _run()

    assert run.status == RunStatus.HALTED
    assert run.pages_read == 2
    assert "listing failed after 2 page(s)" in run.halt_reason
    # What was read still refreshes the mirror; only access is left alone.
    assert Subscription.objects.count() == 200
    assert len(stripe_fake.requests_to("/v1/subscriptions")) == 3
    assert not Account.objects.exclude(access_status=AccessStatus.ACTIVE).exists()
    assert AccessAudit.objects.count() == 0
    assert Flag.objects.count() == 0
    assert mail.outbox == []
    assert not RunOutcome.objects.filter(applied=True).exists()


@pytest.mark.parametrize("outage", [False, True], ids=["applied", "listing-failed"])
def test_the_run_leaves_the_cycle_collector_as_it_found_it(stripe_fake, no_brake, outage):
    """The audit collects cycles less often while it runs; the worker must get its own
    setting back, whatever the run's end."""
    import gc

    _bulk_accounts(20)
    stripe_fake.add_subscriptions_bulk(20, status_cycle=("active",))
    if outage:
        stripe_fake.fail("/v1/subscriptions", status=500, times=10)
    seen: list[tuple[int, ...]] = []
    before = gc.get_threshold()
    gc.set_threshold(1234, *before[1:])
    try:
        _run(on_progress=lambda state: seen.append(gc.get_threshold()))
        assert gc.get_threshold() == (1234, *before[1:])
    finally:
        gc.set_threshold(*before)
    assert seen and all(threshold[0] > 1234 for threshold in seen)


def test_an_outage_from_the_first_page_locks_nobody_out(stripe_fake, no_brake):
    _bulk_accounts(30)
    stripe_fake.add_subscriptions_bulk(30, status_cycle=("active",))
    stripe_fake.fail("/v1/subscriptions", status=503, times=10)

    run = _run()

    assert run.status == RunStatus.HALTED
    assert run.pages_read == 0
    assert not Account.objects.exclude(access_status=AccessStatus.ACTIVE).exists()
    assert Flag.objects.count() == 0


@pytest.fixture
def braking_world(stripe_fake, settings):
    """20 active accounts; 2 lost their subscription: 10 % would change, the brake is 5 %."""
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 0.05
    accounts = [AccountFactory() for _ in range(20)]
    for index, account in enumerate(accounts):
        status = "canceled" if index < 2 else "active"
        stripe_fake.add_subscription(customer=account.stripe_customer_id, status=status)
    return accounts


def test_a_run_over_the_brake_halts_and_applying_it_applies_exactly_its_outcomes(
    braking_world, stripe_fake, admin_client_, admin_user, django_capture_on_commit_callbacks
):
    run = _run()

    assert run.status == RunStatus.HALTED
    assert run.change_ratio == pytest.approx(0.1)
    assert "Safety brake" in run.halt_reason
    saved = set(RunOutcome.objects.filter(run=run).values_list("account_id", "outcome"))
    assert saved == {(a.pk, Outcome.START_GRACE) for a in braking_world[:2]}
    assert AccessAudit.objects.count() == 0

    # Drift after the run must not sneak in: applying applies the run's saved diff only.
    stripe_fake.add_subscription(customer="cus_late", status="active")
    braking_world[5].stripe_customer_id = "cus_other"
    braking_world[5].save()

    # The apply is queued once the claim commits; tasks run inline in tests.
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            f"/reconciliation/runs/{run.pk}/apply/", headers={"HX-Request": "true"}
        )

    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == RunStatus.APPLIED
    assert run.decided_by == admin_user
    assert set(
        Account.objects.filter(access_status=AccessStatus.GRACE_PERIOD).values_list("pk")
    ) == {(a.pk,) for a in braking_world[:2]}
    assert RunOutcome.objects.filter(run=run, applied=True).count() == 2
    assert AccessAudit.objects.count() == 2
    # A second click finds nothing to apply.
    again = admin_client_.post(
        f"/reconciliation/runs/{run.pk}/apply/", headers={"HX-Request": "true"}
    )
    assert again.status_code == 409
    assert AccessAudit.objects.count() == 2


def test_a_redelivered_apply_task_does_nothing_while_the_first_is_applying(
    braking_world, admin_user
):
    """The ORM broker hands an unacknowledged task out again after Q_CLUSTER["retry"]: the
    second copy finds the apply claimed and leaves it to the first."""
    from reconciliation.services.runs.apply import (
        reconciliation_run_apply_begin,
        reconciliation_run_apply_finish,
    )

    run = _run()
    claimed = reconciliation_run_apply_begin(run=run, actor_user=admin_user)
    ReconciliationRun.objects.filter(pk=run.pk).update(
        progress={**claimed.progress, "apply_claimed": True}  # the first copy, still applying
    )

    second = reconciliation_run_apply_finish(run=ReconciliationRun.objects.get(pk=run.pk))

    assert second.status == RunStatus.RUNNING
    assert not RunOutcome.objects.filter(run=run, applied=True).exists()
    assert AccessAudit.objects.count() == 0


def test_an_apply_that_fails_part_way_goes_back_to_halted_and_applies_again(
    braking_world, admin_user, monkeypatch
):
    from reconciliation.services.runs import apply

    run = _run()
    real_apply = apply.outcomes_apply

    def broken(*, run, progress=None):
        raise RuntimeError("connection to the database lost")

    monkeypatch.setattr(apply, "outcomes_apply", broken)
    claimed = apply.reconciliation_run_apply_begin(run=run, actor_user=admin_user)
    stopped = apply.reconciliation_run_apply_finish(run=claimed)

    assert stopped.status == RunStatus.HALTED  # not stuck running, not failed for good
    assert "Applying stopped: RuntimeError: connection to the database lost" in (
        stopped.halt_reason
    )
    assert "apply_claimed" not in stopped.progress
    # Another start is not held back by it.
    assert ReconciliationRun.objects.filter(status=RunStatus.RUNNING).count() == 0

    monkeypatch.setattr(apply, "outcomes_apply", real_apply)
    again = apply.reconciliation_run_apply_begin(run=stopped, actor_user=admin_user)
    done = apply.reconciliation_run_apply_finish(run=again)
    assert done.status == RunStatus.APPLIED
    assert RunOutcome.objects.filter(run=run, applied=True).count() == 2


@pytest.mark.parametrize("task_started", [True, False], ids=["worker-died", "task-lost"])
def test_an_apply_whose_worker_died_goes_back_to_halted_at_the_next_start(
    braking_world, admin_user, task_started
):
    """Whether its worker died while applying, or its task was lost before it claimed the run
    (a broker loses a crashed worker's task), an Admin's apply stays appliable: it was failed
    for good when the task had not started yet (found in review)."""
    from reconciliation.services.runs.apply import reconciliation_run_apply_begin
    from reconciliation.services.runs.start import RUN_STALE_AFTER

    run = _run()
    claimed = reconciliation_run_apply_begin(run=run, actor_user=admin_user)
    long_ago = (timezone.now() - RUN_STALE_AFTER - timedelta(minutes=1)).isoformat()
    claim = {"apply_claimed": True} if task_started else {}
    ReconciliationRun.objects.filter(pk=run.pk).update(
        progress={**claimed.progress, **claim, "updated_at": long_ago}
    )

    _run(dry_run=True)

    run.refresh_from_db()
    assert run.status == RunStatus.HALTED
    assert "stopped reporting progress while applying" in run.halt_reason


def test_discarding_a_halted_run_applies_nothing(braking_world, admin_client_):
    run = _run()
    assert run.status == RunStatus.HALTED

    response = admin_client_.post(f"/reconciliation/runs/{run.pk}/discard/")

    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.DISCARDED
    assert AccessAudit.objects.count() == 0
    assert not Account.objects.exclude(access_status=AccessStatus.ACTIVE).exists()


def test_the_decision_phase_queries_grow_with_batches_not_accounts(
    stripe_fake, no_brake, django_assert_max_num_queries
):
    _bulk_accounts(300)
    stripe_fake.add_subscriptions_bulk(300, status_cycle=("active", "trialing"))
    # Settle the mirror first; then a nightly run over 300 accounts only reads.
    _run()
    with django_assert_max_num_queries(30):
        run = _run()
    assert run.counts[Outcome.IN_SYNC] == 300
    assert run.pages_read == 3


def test_a_comp_that_expired_is_flagged_again(stripe_fake, no_brake):
    account = AccountFactory(stripe_customer_id="")
    comp = AccessComp.objects.create(
        account=account, reason="trial extension", expires_at=timezone.now() + timedelta(days=1)
    )
    assert _run().counts[Outcome.FLAG_MANUAL_GRANT] == 0
    AccessComp.objects.filter(pk=comp.pk).update(
        created_at=timezone.now() - timedelta(days=2), expires_at=timezone.now() - timedelta(days=1)
    )
    assert _run().counts[Outcome.FLAG_MANUAL_GRANT] == 1
    assert _open_flags(account) == {FlagKind.MANUAL_GRANT}
