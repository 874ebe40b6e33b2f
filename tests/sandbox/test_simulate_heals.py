"""Provider-side changes whose webhooks never arrive are healed: the sandbox seeded from the
demo, `simulate` with dropped webhooks, then the catch-up (Events API) and an audit leave
every account's access as the sandbox's subscriptions say it should be, and audited."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from accounts.models import AccessAudit, AccessStatus, Account
from janitor.demo import demo_sandbox_customers, demo_sandbox_disputes
from reconciliation.models import WebhookEvent, WebhookStatus
from reconciliation.services.runs.execute import reconciliation_run
from reconciliation.services.webhooks.recovery import webhook_events_catch_up
from sandbox.provider import Sandbox
from sandbox.seed import orphan_customers, sandbox_seed
from tests.sandbox.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


def _staff_revoked() -> set[int]:
    """Accounts whose latest revocation a person made (automation must leave them revoked)."""
    latest: dict[int, str] = {}
    for account_id, actor in (
        AccessAudit.objects.filter(to_status=AccessStatus.REVOKED)
        .order_by("account_id", "-at", "-id")
        .values_list("account_id", "actor")
    ):
        latest.setdefault(account_id, actor)
    return {pk for pk, actor in latest.items() if not actor.startswith("system:")}


def access_mismatches(sandbox: Sandbox) -> dict[str, str]:
    """customer id -> what is wrong, for every account whose access disagrees with the
    sandbox by the design's rules: a granting subscription means active (unless staff
    revoked it: then revoked); none means no access from automation (grace or revoked)."""
    statuses: dict[str, set[str]] = {}
    for subscription in sandbox.subscriptions():
        statuses.setdefault(subscription["customer"], set()).add(subscription["status"])
    staff_revoked = _staff_revoked()
    wrong = {}
    for account in Account.objects.exclude(stripe_customer_id=""):
        held = statuses.get(account.stripe_customer_id, set())
        granting = bool(held & settings.JANITOR_ACCESS_STATUSES)
        if granting:
            want = AccessStatus.REVOKED if account.pk in staff_revoked else AccessStatus.ACTIVE
            ok = account.access_status == want
        else:
            want = "grace_period or revoked"
            ok = account.access_status in {AccessStatus.GRACE_PERIOD, AccessStatus.REVOKED}
        if not ok:
            wrong[account.stripe_customer_id] = (
                f"{sorted(held)} at the sandbox, {account.access_status} in the app (want {want})"
            )
    return wrong


def _demo_in_sync(sandbox: Sandbox) -> None:
    """The demo on both sides, then one audit: the seeded drift is healed, the baseline."""
    call_command("seed_demo", verbosity=0)
    customers = demo_sandbox_customers()
    now = int(time.time())
    sandbox_seed(
        sandbox,
        customers=customers + orphan_customers(now),
        disputes=demo_sandbox_disputes(),
    )
    wait_for(lambda: sandbox.pending_deliveries() == 0, what="the seeded disputes' webhooks")
    assert access_mismatches(sandbox), "the demo is seeded with drift"
    run = reconciliation_run(dry_run=False, triggered_by="test")
    assert run is not None and run.status == "applied", run and run.halt_reason
    assert access_mismatches(sandbox) == {}


def _simulate(sandbox: Sandbox) -> tuple[set[str], set[str], list[str]]:
    """(customers whose webhooks were dropped, ... delivered, the dropped event ids)."""
    changes = sandbox.simulate(minutes=60, drop_rate=0.5, rng=random.Random(17))
    wait_for(lambda: sandbox.pending_deliveries() == 0, what="the simulated webhooks")
    dropped = [c for c in changes if c.webhook == "dropped"]
    sent = [c for c in changes if c.webhook == "sent"]
    assert len(dropped) >= 5 and len(sent) >= 5, changes
    return (
        {c.customer for c in dropped},
        {c.customer for c in sent},
        [event for c in dropped for event in c.events],
    )


@pytest.fixture
def tolerant_brake(settings):
    # The seeded drift is about 6% of the accounts with access: past the default brake, which
    # the demo's Admin path covers (apply a halted run). Here the audit applies at once.
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0


def test_simulate_with_dropped_webhooks_is_healed_by_the_catch_up_and_an_audit(
    sandbox_live, tolerant_brake
):
    _demo_in_sync(sandbox_live)
    dropped_customers, sent_customers, dropped_events = _simulate(sandbox_live)

    # What was delivered is applied already; what was dropped is drift the app cannot see.
    drift = access_mismatches(sandbox_live)
    assert drift, "some dropped change moved an account's access"
    assert set(drift) <= dropped_customers - sent_customers, drift
    assert not WebhookEvent.objects.filter(provider_event_id__in=dropped_events).exists()

    since = timezone.now() - timedelta(hours=1)
    result = webhook_events_catch_up(since=since)
    assert result.stored == len(dropped_events)
    assert set(
        WebhookEvent.objects.filter(provider_event_id__in=dropped_events).values_list(
            "status", flat=True
        )
    ) <= {WebhookStatus.PROCESSED, WebhookStatus.IGNORED}
    run = reconciliation_run(dry_run=False, triggered_by="test")
    assert run is not None and run.status == "applied"

    assert access_mismatches(sandbox_live) == {}
    # Every heal is in the access audit, by the event that carried it.
    for customer_id in drift:
        account = Account.objects.get(stripe_customer_id=customer_id)
        assert account.access_audit.filter(source__startswith="event:evt_").exists(), customer_id


def test_the_audit_alone_heals_what_the_dropped_webhooks_left(sandbox_live, tolerant_brake):
    _demo_in_sync(sandbox_live)
    _simulate(sandbox_live)
    drift = access_mismatches(sandbox_live)
    assert drift

    run = reconciliation_run(dry_run=False, triggered_by="test")
    assert run is not None and run.status == "applied"

    assert access_mismatches(sandbox_live) == {}
    for customer_id in drift:
        account = Account.objects.get(stripe_customer_id=customer_id)
        assert account.access_audit.filter(source=f"run:{run.pk}").exists(), customer_id
