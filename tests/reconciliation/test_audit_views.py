"""The Reconciliation pages and manage.py reconcile."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from reconciliation.models import Outcome, ReconciliationRun, RunOutcome, RunStatus
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db

RUNS = "/reconciliation/"


def _finished_run(**counts) -> ReconciliationRun:
    full = {o.value: 0 for o in Outcome}
    full.update(counts)
    return ReconciliationRun.objects.create(
        status=RunStatus.APPLIED, counts=full, change_ratio=0.01, durations={"total": 1.5}
    )


def test_the_runs_url_is_named_reconciliation_runs():
    assert reverse("reconciliation_runs") == RUNS


@pytest.mark.smoke
def test_history_draws_a_stacked_bar_per_run(finance_client, django_assert_max_num_queries):
    runs = [_finished_run(start_grace=3, flag_manual_grant=2, in_sync=100) for _ in range(3)]
    _finished_run(in_sync=100)
    finance_client.get(RUNS)
    with django_assert_max_num_queries(10):
        response = finance_client.get(RUNS)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.count('<g class="bar"') == 4
    assert f'data-run="{runs[0].pk}" data-total="5"' in body
    # Two outcomes stacked in each of the three runs with changes, one sliver for the clean run.
    assert body.count("<rect x=") == 3 * 2 + 1
    assert "Start grace period" in body
    assert "data-changes>3<" in body


def test_finance_cannot_start_or_decide_runs(finance_client):
    body = finance_client.get(RUNS).content.decode()
    assert "Run now" not in body and "Run dry run now" not in body
    assert finance_client.post("/reconciliation/start/", {"dry_run": "1"}).status_code == 403
    run = ReconciliationRun.objects.create(status=RunStatus.HALTED)
    detail = finance_client.get(f"/reconciliation/runs/{run.pk}/").content.decode()
    assert "Apply these outcomes" not in detail
    assert finance_client.post(f"/reconciliation/runs/{run.pk}/apply/").status_code == 403
    assert ReconciliationRun.objects.count() == 1


def test_an_admin_starts_a_dry_run_with_htmx(
    admin_client_, stripe_fake, django_capture_on_commit_callbacks
):
    account = AccountFactory()
    stripe_fake.add_subscription(customer=account.stripe_customer_id, status="canceled")
    body = admin_client_.get(RUNS).content.decode()
    assert "Run dry run now" in body and "hx-confirm" in body

    # The run is queued once its start commits; tasks run inline in tests.
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            "/reconciliation/start/", {"dry_run": "1"}, headers={"HX-Request": "true"}
        )

    assert response.status_code == 200
    run = ReconciliationRun.objects.get()
    assert run.dry_run and run.status == RunStatus.DRY_RUN
    assert run.triggered_by == "admin@janitor.test"
    assert f'id="run-status-{run.pk}"' in response.content.decode()
    account.refresh_from_db()
    assert account.access_status == "active"


def test_a_running_run_polls_its_progress_every_second(admin_client_):
    run = ReconciliationRun.objects.create(
        status=RunStatus.RUNNING, progress={"phase": "listing", "pages": 7, "subscriptions": 700}
    )
    response = admin_client_.get(
        f"/reconciliation/runs/{run.pk}/progress/", headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert 'hx-trigger="every 1s"' in body
    assert "700 subscriptions read" in body
    # Starting another while one runs is refused.
    refused = admin_client_.post(
        "/reconciliation/start/", {"dry_run": "0"}, headers={"HX-Request": "true"}
    )
    assert refused.status_code == 409
    run.status = RunStatus.APPLIED
    run.save()
    body = admin_client_.get(
        f"/reconciliation/runs/{run.pk}/progress/", headers={"HX-Request": "true"}
    ).content.decode()
    assert "every 1s" not in body


def test_run_detail_lists_outcomes_paginated(finance_client, django_assert_max_num_queries):
    run = _finished_run(start_grace=60)
    RunOutcome.objects.bulk_create(
        [
            RunOutcome(run=run, account=AccountFactory(), outcome=Outcome.START_GRACE, detail={})
            for _ in range(60)
        ]
    )
    finance_client.get(f"/reconciliation/runs/{run.pk}/")
    with django_assert_max_num_queries(10):
        response = finance_client.get(f"/reconciliation/runs/{run.pk}/?page=2")
    assert response.status_code == 200
    assert response.context["detail"].outcomes.number == 2
    assert response.content.decode().count('<tr data-outcome="start_grace">') == 10
    assert finance_client.get("/reconciliation/runs/999999/").status_code == 404


def test_manage_reconcile_dry_run_prints_a_summary_table(stripe_fake, settings):
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    account = AccountFactory()
    stripe_fake.add_subscription(customer=account.stripe_customer_id, status="past_due")
    out, err = StringIO(), StringIO()

    call_command("reconcile", "--dry-run", stdout=out, stderr=err)

    text = out.getvalue()
    assert "Dry run" in text
    assert "Payment failed: grace period" in text
    line = next(row for row in text.splitlines() if row.startswith("Payment failed"))
    assert line.split()[-1] == "1"
    assert "listing" in err.getvalue() or "deciding" in err.getvalue()
    account.refresh_from_db()
    assert account.access_status == "active"
