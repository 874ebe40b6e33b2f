"""A comp stops the audit flagging an account in its grace period; what a run reports (metrics,
notices, counts, the chart) matches what happened. Each found in review, seventh session."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AccessStatus
from janitor.models import Notice, NoticeKind
from reconciliation.models import (
    Flag,
    FlagKind,
    FlagStatus,
    Outcome,
    RunOutcome,
    RunStatus,
)
from reconciliation.services.access_decisions import comp_record
from reconciliation.services.runs import (
    reconciliation_run,
)
from tests.factories import AccountFactory
from tests.reconciliation.test_safety_paths import _apply, _halted_run

pytestmark = pytest.mark.django_db


def _grace_account_expired(stripe_fake):
    account = AccountFactory(
        access_status=AccessStatus.GRACE_PERIOD,
        grace_ends_at=timezone.now() - timedelta(days=1),
    )
    stripe_fake.add_subscription(customer=account.stripe_customer_id, status="canceled")
    return account


def test_a_comp_stops_the_grace_expired_flag(stripe_fake, settings, admin_user):
    """README: record a comp '(reason and expiry; the audit stops flagging the account until
    it expires)'. Support records it on the missing_subscription flag of an account in grace."""
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    account = _grace_account_expired(stripe_fake)
    comp_record(
        account=account,
        reason="Partner, billed by invoice",
        expires_at=timezone.now() + timedelta(days=90),
        granted_by=admin_user,
    )
    run = reconciliation_run(dry_run=False, triggered_by="test")
    assert run.status == RunStatus.APPLIED
    assert not Flag.objects.filter(
        account=account, kind=FlagKind.GRACE_EXPIRED, status=FlagStatus.OPEN
    ).exists(), "the audit flagged a comped account"


def test_a_comp_recorded_after_a_halted_run_stops_its_grace_expired_flag(
    stripe_fake, settings, admin_user
):
    """A halted run's planned grace_expired flag is skipped at apply when a comp was recorded
    since the run (access_decide ignored comps in a grace period, so it was applied)."""
    account = _grace_account_expired(stripe_fake)
    other = AccountFactory()  # a status change, so that the brake halts the run
    stripe_fake.add_subscription(customer=other.stripe_customer_id, status="canceled")
    run = _halted_run(settings)
    assert RunOutcome.objects.get(run=run, account=account).outcome == Outcome.FLAG_GRACE_EXPIRED
    comp_record(
        account=account,
        reason="Sales deal",
        expires_at=timezone.now() + timedelta(days=30),
        granted_by=admin_user,
    )
    _apply(run, admin_user)
    row = RunOutcome.objects.get(run=run, account=account)
    assert row.skip_reason == "a comp was recorded since the run", (row.applied, row.skip_reason)


def test_metrics_keep_reporting_a_halted_run_after_a_dry_run(stripe_fake, settings, admin_user):
    """The JanitorReconciliationNotApplied alert reads last_run_status{status=~"halted|failed"}:
    a staff dry run started after a halted run must not clear it while the run still waits."""
    account = AccountFactory()
    stripe_fake.add_subscription(customer=account.stripe_customer_id, status="canceled")
    halted = _halted_run(settings)
    dry = reconciliation_run(dry_run=True, triggered_by=admin_user.email)
    assert dry.status == RunStatus.DRY_RUN
    halted.refresh_from_db()
    assert halted.status == RunStatus.HALTED  # still waiting for an Admin
    body = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'janitor_reconciliation_last_run_status{status="halted"} 1.0' in body, [
        line for line in body.splitlines() if "last_run_status" in line
    ]


def test_admins_hear_that_an_apply_stopped(stripe_fake, settings, admin_user, monkeypatch):
    """An apply that stopped part way tells the Admins again: the notice's key was the run id
    alone, which the halt had used, so 'Applying stopped' was never recorded nor sent."""
    account = AccountFactory()
    stripe_fake.add_subscription(customer=account.stripe_customer_id, status="canceled")
    run = _halted_run(settings)
    assert Notice.objects.filter(kind=NoticeKind.RUN_HALTED).count() == 1

    import reconciliation.services.runs.apply as apply_module

    def boom(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(apply_module, "outcomes_apply", boom)
    _apply(run, admin_user)
    run.refresh_from_db()
    assert run.status == RunStatus.HALTED and "Applying stopped" in run.halt_reason
    subjects = list(
        Notice.objects.filter(kind=NoticeKind.RUN_HALTED).values_list("body", flat=True)
    )
    assert any("Applying stopped" in body for body in subjects), subjects


def test_skipped_at_apply_counts_every_skip_of_a_resumed_apply(
    stripe_fake, settings, admin_user, monkeypatch
):
    """counts["skipped_at_apply"] counts every skip of the run: it was written at the end of
    each apply with that call's skips only, so an apply that stopped part way lost them."""
    skipped_one, applied_one = AccountFactory(), AccountFactory()
    for account in (skipped_one, applied_one):
        stripe_fake.add_subscription(customer=account.stripe_customer_id, status="canceled")
    run = _halted_run(settings)
    comp_record(
        account=skipped_one,
        reason="Sales deal",
        expires_at=timezone.now() + timedelta(days=30),
        granted_by=admin_user,
    )
    import reconciliation.services.runs.apply as apply_module
    from reconciliation.services.runs.common import Progress

    monkeypatch.setattr(apply_module, "APPLY_BATCH", 1)
    original = Progress.update
    calls = {"n": 0}

    def update_then_die(self, force=False, **changes):
        if changes.get("phase") == "applying" and "skipped" in changes:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("worker lost its connection")
        return original(self, force, **changes)

    monkeypatch.setattr(Progress, "update", update_then_die)
    # Make the skipped account's row come first.
    first = RunOutcome.objects.get(run=run, account=skipped_one)
    assert first.pk < RunOutcome.objects.get(run=run, account=applied_one).pk
    _apply(run, admin_user)
    run.refresh_from_db()
    assert run.status == RunStatus.HALTED
    _apply(run, admin_user)
    run.refresh_from_db()
    assert run.status == RunStatus.APPLIED
    skipped_rows = RunOutcome.objects.filter(run=run).exclude(skip_reason="").count()
    assert skipped_rows == 1
    assert run.counts.get("skipped_at_apply") == skipped_rows, run.counts


def test_the_runs_chart_draws_every_outcome_that_opens_a_flag_or_changes_access():
    from reconciliation.selectors.runs import OUTCOME_COLOURS

    drawn = {Outcome(outcome) for outcome in OUTCOME_COLOURS}
    expected = {o for o in Outcome if o not in {Outcome.IN_SYNC, Outcome.NOT_CHECKED}}
    assert expected <= drawn, expected - drawn
