"""The access rules hold on every path: a stateful property test of the whole rule set (issue 11).

Hypothesis interleaves staff revocations, restores and grace extensions, comps, provider changes
at the Stripe fake and their webhook events (posted signed to the real URL, in any order,
duplicated, stale, processed late or twice), audit runs that apply or halt, applies and discards
of halted runs, and catch-ups; after every step it checks the four rules of issue 11 on the
access audit of the example's accounts:

1. no staff revocation is undone by a system actor;
2. no automated change is applied on the strength of a decision taken before the latest staff
   change to that account (a comp since the decision also forbids taking access away);
3. every access change has exactly one audit row (the trail chains, ends at the current status,
   and records no non-change but a grace extension);
4. no automated path sets revoked or revoked_pending.

CI runs 200 derandomized examples of at most 20 steps each (the same examples every run). The
longer run, e.g. before a release or after touching an access writer, is

    JANITOR_INVARIANT_EXAMPLES=1000 pytest tests/reconciliation/test_access_invariants.py

(the only environment variable this module reads; still derandomized, so a failure found there
is found again by the same command).

The named interleavings of issue 11 (a staff change between a halted run's decision and its
apply) are also played by hand at the end of this module on the same machine, every run.

Each example runs in a savepoint rolled back at its end and restarts the fake from nothing:
the audit is append-only, so examples are isolated by rollback, never by deleting rows.
"""

from __future__ import annotations

import copy
import json
import os
from collections import defaultdict
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts.models import (
    AccessAudit,
    AccessComp,
    AccessStatus,
    Account,
    RevocationRequest,
    RevocationStatus,
)
from accounts.services.revocation import access_restore, revocation_run_now
from reconciliation.models import (
    Outcome,
    ReconciliationRun,
    RunOutcome,
    RunStatus,
    WebhookEvent,
    WebhookStatus,
)
from reconciliation.services.access_decisions import comp_record, grace_period_extend
from reconciliation.services.runs import (
    RunStateError,
    reconciliation_run,
    reconciliation_run_apply_begin,
    reconciliation_run_apply_finish,
    reconciliation_run_discard,
)
from reconciliation.services.webhooks import webhook_event_process, webhook_events_catch_up
from sandbox.signing import stripe_signature_header
from tests.factories import AccountFactory
from tests.reconciliation.webhook_support import SECRET

ACCOUNTS = 2
MAX_SUBSCRIPTIONS = 6
EXAMPLES = int(os.environ.get("JANITOR_INVARIANT_EXAMPLES") or 200)
MACHINE_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

STAFF_ONLY = frozenset({AccessStatus.REVOKED, AccessStatus.REVOKED_PENDING})
# How an account starts an example. "revoked_legacy" was revoked before the audit trail
# existed (no audit row says a person did it), so automation may re-activate it: the one way
# a halted run can hold a "reactivate" outcome, issue 11's first bullet.
ACCOUNT_STARTS = ("active", "active", "grace", "grace", "grace_ended", "revoked_legacy")
# Stripe's own subscription life cycle: canceled and incomplete_expired are final.
PROVIDER_NEXT: dict[str, tuple[str, ...]] = {
    "incomplete": ("active", "incomplete_expired"),
    "trialing": ("active", "past_due", "canceled", "paused", "unpaid"),
    "active": ("past_due", "canceled", "unpaid", "paused"),
    "past_due": ("active", "canceled", "unpaid"),
    "unpaid": ("active", "canceled"),
    "paused": ("active", "canceled"),
    "canceled": (),
    "incomplete_expired": (),
}
FIRST_STATUSES = ("active", "active", "trialing", "past_due", "incomplete", "canceled")


@st.composite
def provider_histories(draw) -> list[str]:
    """A subscription's statuses so far, oldest first, along Stripe's life cycle."""
    history = [draw(st.sampled_from(FIRST_STATUSES))]
    for _ in range(draw(st.integers(0, 2))):
        following = PROVIDER_NEXT[history[-1]]
        if not following:
            break
        history.append(draw(st.sampled_from(following)))
    return history


def _subscription_event_type(before: str | None, after: str) -> str:
    if before is None:
        return "customer.subscription.created"
    if after == "canceled":
        return "customer.subscription.deleted"
    if after == "paused":
        return "customer.subscription.paused"
    if before == "paused":
        return "customer.subscription.resumed"
    return "customer.subscription.updated"


def _invoice(subscription_id: str, customer_id: str, n: int) -> dict:
    return {
        "id": f"in_{subscription_id}_{n}",
        "object": "invoice",
        "customer": customer_id,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription_id, "metadata": {}},
        },
    }


def _is_system(actor: str) -> bool:
    return actor.startswith("system:")


# --- The rules, as checks over one account's audit trail (oldest first) ---------------------


def check_staff_revocation_never_undone(account: Account, rows: list[AccessAudit]) -> None:
    revoked_by = ""
    for row in rows:
        if _is_system(row.actor):
            assert not revoked_by, (
                f"rule 1: {account.public_id} was revoked by {revoked_by} and not restored by "
                f"staff, yet {row.actor} moved it {row.from_status} -> {row.to_status} "
                f"({row.source})"
            )
            continue
        if row.to_status == AccessStatus.REVOKED:
            revoked_by = row.actor
        elif row.from_status == AccessStatus.REVOKED:
            revoked_by = ""


def check_no_stale_automated_change(
    account: Account,
    rows: list[AccessAudit],
    runs: dict[int, ReconciliationRun],
    comps: list[AccessComp],
) -> None:
    for row in rows:
        if not row.source.startswith("run:"):
            continue
        run = runs[int(row.source.removeprefix("run:"))]
        decided_at = run.outcomes_decided_at or run.started_at
        for staff in rows:
            if not _is_system(staff.actor) and decided_at < staff.at < row.at:
                raise AssertionError(
                    f"rule 2: run {run.pk} decided at {decided_at:%H:%M:%S.%f}, "
                    f"{staff.actor} changed {account.public_id} ({staff.from_status} -> "
                    f"{staff.to_status}) at {staff.at:%H:%M:%S.%f}, and the run still applied "
                    f"{row.from_status} -> {row.to_status} at {row.at:%H:%M:%S.%f}"
                )
        if row.to_status == AccessStatus.GRACE_PERIOD:
            for comp in comps:
                assert not (decided_at < comp.created_at < row.at), (
                    f"rule 2: run {run.pk} started a grace period for {account.public_id} "
                    f"although a comp was recorded at {comp.created_at:%H:%M:%S.%f}, after "
                    f"its decision at {decided_at:%H:%M:%S.%f}"
                )


def check_one_audit_row_per_change(
    account: Account, rows: list[AccessAudit], initial_status: str
) -> None:
    status = initial_status
    for row in rows:
        assert row.from_status == status, (
            f"rule 3: {account.public_id}'s audit does not chain: a row says "
            f"{row.from_status} -> {row.to_status} ({row.actor}, {row.source}) but the "
            f"account was {status}"
        )
        assert row.from_status != row.to_status or row.to_status == AccessStatus.GRACE_PERIOD, (
            f"rule 3: {account.public_id} has an audit row for a non-change "
            f"{row.from_status} -> {row.to_status} ({row.actor}, {row.source})"
        )
        status = row.to_status
    assert account.access_status == status, (
        f"rule 3: {account.public_id} is {account.access_status} but its audit trail ends at "
        f"{status}: a change without its audit row"
    )
    assert account.is_active == (account.access_status != AccessStatus.REVOKED)
    assert (account.grace_ends_at is not None) == (
        account.access_status == AccessStatus.GRACE_PERIOD
    )


def check_automation_never_revokes(account: Account, rows: list[AccessAudit]) -> None:
    for row in rows:
        assert not (_is_system(row.actor) and row.to_status in STAFF_ONLY), (
            f"rule 4: {row.actor} moved {account.public_id} {row.from_status} -> "
            f"{row.to_status} ({row.source})"
        )


# --- The machine ----------------------------------------------------------------------------


class StepClock:
    """timezone.now for the examples: wall time when an example starts, then 10 s further at
    every step and a microsecond further at every call.

    Provider times are whole seconds; on the wall clock, whether an event shares its second
    with an audit's listing depends on how fast the machine is, so the same steps could end
    differently from run to run (and hypothesis could not replay or shrink them). On this
    clock every step has a second of its own: the same steps, the same story, every run.
    """

    def __init__(self) -> None:
        self._real_now = timezone.now
        self.restart()

    def restart(self) -> None:
        self.start = self._real_now().replace(microsecond=0)
        self.step = 0
        self.calls = 0

    def tick(self) -> None:
        self.step += 1
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        return self.start + timedelta(seconds=10 * self.step, microseconds=250_000 + self.calls)

    def second(self) -> int:
        """Now as a provider time (whole seconds)."""
        return int(self().timestamp())


class AccessRulesMachine(RuleBasedStateMachine):
    """A few accounts, their customers and subscriptions at the fake, and everyone acting."""

    events = Bundle("events")  # provider event ids, at the fake (deliverable, listable)
    stored = Bundle("stored")  # WebhookEvent ids, as a queue worker would receive them
    halted = Bundle("halted")  # ReconciliationRun ids that halted

    def __init__(
        self, *, fake, admin: Account, client: Client, django_settings, clock: StepClock
    ) -> None:
        super().__init__()
        self.fake = fake
        self.clock = clock
        clock.restart()
        self.admin = admin
        self.client = client
        self.django_settings = django_settings
        # Everything an example writes goes in this savepoint, rolled back in teardown.
        self._sandbox = transaction.atomic()
        self._sandbox.__enter__()
        fake.reset()
        self.accounts: list[Account] = []
        self.initial_status: dict[int, str] = {}
        self.status: dict[int, str] = {}
        self.subscriptions: dict[str, str] = {}  # subscription id -> customer id
        self.provider_events: dict[str, dict] = {}
        self.stored_event_ids: set[str] = set()

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._sandbox.__exit__(None, None, None)

    # --- helpers ----------------------------------------------------------------------------

    def _event(self, type: str, obj: dict, created: int) -> str:
        event = self.fake.add_event(type, copy.deepcopy(obj), created=created)
        self.provider_events[event["id"]] = event
        return event["id"]

    def _subscription_change(self, subscription_id: str, status: str, created: int) -> list[str]:
        before = self.fake.subscription(subscription_id)["status"]
        obj = self.fake.set_subscription_status(subscription_id, status)
        ids = [self._event(_subscription_event_type(before, status), obj, created)]
        # A payment, failed or made, also comes as an invoice event (applied by re-fetching).
        invoice_type = {"past_due": "invoice.payment_failed", "active": "invoice.paid"}.get(status)
        if invoice_type and before != "paused":
            customer = self.subscriptions[subscription_id]
            invoice = _invoice(subscription_id, customer, len(self.provider_events))
            ids.append(self._event(invoice_type, invoice, created))
        return ids

    def _customer_subscriptions(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for customer in self.subscriptions.values():
            counts[customer] += 1
        return counts

    # --- the world an example starts from ---------------------------------------------------

    @initialize(
        target=events,
        starts=st.lists(st.sampled_from(ACCOUNT_STARTS), min_size=ACCOUNTS, max_size=ACCOUNTS),
        histories=st.lists(provider_histories(), min_size=ACCOUNTS, max_size=ACCOUNTS + 1),
    )
    def world(self, starts: list[str], histories: list[list[str]]):
        now = timezone.now()
        for start in starts:
            fields = {
                "active": {},
                "grace": {
                    "access_status": AccessStatus.GRACE_PERIOD,
                    "grace_ends_at": now + timedelta(days=3),
                },
                "grace_ended": {
                    "access_status": AccessStatus.GRACE_PERIOD,
                    "grace_ends_at": now - timedelta(days=1),
                },
                "revoked_legacy": {"access_status": AccessStatus.REVOKED, "is_active": False},
            }[start]
            account = AccountFactory(**fields)
            self.fake.add_customer(account.stripe_customer_id, email=account.email)
            self.accounts.append(account)
            self.initial_status[account.pk] = self.status[account.pk] = account.access_status
        # The history before the example, one second apart and in the past: events with
        # distinct times, so a stale delivery is ordered by time, not only by a re-fetch.
        created = self.clock.second() - 300
        ids: list[str] = []
        for n, history in enumerate(histories):
            customer = self.accounts[n % ACCOUNTS].stripe_customer_id
            sub = self.fake.add_subscription(customer=customer, status=history[0], created=created)
            self.subscriptions[sub["id"]] = customer
            ids.append(self._event(_subscription_event_type(None, history[0]), sub, created))
            for status in history[1:]:
                created += 1
                ids += self._subscription_change(sub["id"], status, created)
            created += 1
        return multiple(*ids)

    # --- the provider -----------------------------------------------------------------------

    def _changeable(self) -> list[str]:
        """Subscriptions not yet final, in the order they were made (ids are random)."""
        return [s for s in self.subscriptions if PROVIDER_NEXT[self.fake.subscription(s)["status"]]]

    @precondition(lambda self: self._changeable())
    @rule(target=events, data=st.data())
    def provider_change(self, data):
        """The customer pays, fails to pay, pauses or cancels; Stripe sends its event(s)."""
        subscription_id = data.draw(st.sampled_from(self._changeable()), label="subscription")
        before = self.fake.subscription(subscription_id)["status"]
        status = data.draw(st.sampled_from(PROVIDER_NEXT[before]), label="status")
        return multiple(*self._subscription_change(subscription_id, status, self.clock.second()))

    @precondition(lambda self: len(self.subscriptions) < MAX_SUBSCRIPTIONS)
    @rule(
        target=events,
        account=st.integers(0, ACCOUNTS - 1),
        status=st.sampled_from(["active", "trialing", "incomplete"]),
    )
    def provider_resubscribe(self, account: int, status: str):
        """The customer starts a new subscription (e.g. after canceling)."""
        customer = self.accounts[account].stripe_customer_id
        created = self.clock.second()
        sub = self.fake.add_subscription(customer=customer, status=status, created=created)
        self.subscriptions[sub["id"]] = customer
        return self._event("customer.subscription.created", sub, created)

    # --- webhooks ---------------------------------------------------------------------------

    @rule(target=stored, event_id=events, process_now=st.booleans())
    def webhook_deliver(self, event_id: str, process_now: bool):
        """Stripe posts an event (any one, any number of times, in any order)."""
        body = json.dumps(self.provider_events[event_id]).encode()
        response = self.client.post(
            reverse("stripe_webhook"),
            data=body,
            content_type="application/json",
            headers={"Stripe-Signature": stripe_signature_header(body, SECRET)},
        )
        assert response.status_code == 200, response.content
        rows = list(WebhookEvent.objects.filter(provider_event_id=event_id).values_list("pk"))
        assert len(rows) == 1, "a delivery stores its event exactly once"
        if event_id in self.stored_event_ids:
            return multiple()  # a duplicate: answered 200, nothing new to process
        self.stored_event_ids.add(event_id)
        pk = rows[0][0]
        if process_now:
            self._process(pk)
        return pk

    def _process(self, pk: int) -> None:
        status = webhook_event_process(event_id=pk, trigger="queue")
        stored = WebhookEvent.objects.get(pk=pk)
        assert status in {WebhookStatus.PROCESSED, WebhookStatus.IGNORED}, stored.last_error

    @rule(pk=stored)
    def webhook_process(self, pk: int):
        """A queue worker runs the event's task (late, or again after a redelivery)."""
        self._process(pk)

    @rule(target=stored)
    def catch_up(self):
        """The periodic catch-up ingests the events the endpoint never received."""
        webhook_events_catch_up()
        new = list(
            WebhookEvent.objects.filter(source="catch_up")
            .exclude(provider_event_id__in=self.stored_event_ids)
            .values_list("pk", "provider_event_id")
        )
        self.stored_event_ids.update(event_id for _, event_id in new)
        return multiple(*(pk for pk, _ in new))

    # --- the nightly audit and an Admin's decision on a halted run --------------------------

    @rule(target=halted, max_change_ratio=st.sampled_from([0.0, 0.0, 1.0]))
    def audit(self, max_change_ratio: float):
        """An audit run; a ratio of 0 halts it on any change, to be applied (much) later."""
        self.django_settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = max_change_ratio
        run = reconciliation_run(dry_run=False, triggered_by="test")
        assert run is not None
        assert run.status in {RunStatus.APPLIED, RunStatus.HALTED}, run.errors
        assert not run.errors, run.errors
        return run.pk if run.status == RunStatus.HALTED else multiple()

    @rule(pk=halted, decision=st.sampled_from(["apply", "apply", "apply", "discard"]))
    def halted_run_decide(self, pk: int, decision: str):
        """An Admin applies (or discards) a halted run, any number of steps later, or again."""
        run = ReconciliationRun.objects.get(pk=pk)
        decide = (
            reconciliation_run_apply_begin if decision == "apply" else reconciliation_run_discard
        )
        if run.status != RunStatus.HALTED:
            with pytest.raises(RunStateError):
                decide(run=run, actor_user=self.admin)
            return
        if decision == "discard":
            assert decide(run=run, actor_user=self.admin).status == RunStatus.DISCARDED
            return
        run = reconciliation_run_apply_finish(run=decide(run=run, actor_user=self.admin))
        assert run.status == RunStatus.APPLIED
        assert not run.errors, run.errors

    # --- staff ------------------------------------------------------------------------------

    def _account_drawn(self, data) -> Account:
        """Any account, or (half the time) one a halted run holds a change for: a staff change
        between a run's decision and its apply is the interleaving rule 2 is about."""
        waiting = set(
            RunOutcome.objects.filter(run__status=RunStatus.HALTED, applied=False, skip_reason="")
            .exclude(outcome=Outcome.NOT_CHECKED)
            .values_list("account_id", flat=True)
        )
        targets = [account for account in self.accounts if account.pk in waiting]
        # The same draws whatever the state, so hypothesis can replay and shrink freely.
        prefer_waiting = data.draw(st.booleans(), label="one a halted run waits on")
        index = data.draw(st.integers(0, ACCOUNTS - 1), label="account")
        if prefer_waiting and targets:
            return targets[index % len(targets)]
        return self.accounts[index]

    @rule(data=st.data())
    def staff_decide(self, data):
        """An Admin revokes (the staged revocation, inline), restores, or extends a grace."""
        account = self._account_drawn(data)
        extend = data.draw(st.booleans(), label="extend a grace period rather than revoke")
        self.staff_act(account, extend=extend)

    def staff_act(self, account: Account, *, extend: bool = False) -> None:
        status = self.status[account.pk]
        if status == AccessStatus.REVOKED:
            access_restore(account=account, actor=self.admin, reason="Dispute won")
            account.refresh_from_db()
            assert account.access_status == AccessStatus.ACTIVE
            return
        if status == AccessStatus.GRACE_PERIOD and extend:
            grace_period_extend(
                account=account, days=7, reason="Customer asked", actor_user=self.admin
            )
            return
        assert not RevocationRequest.objects.filter(
            account=account, status__in=[RevocationStatus.PENDING, RevocationStatus.APPROVED]
        ).exists()
        revocation = revocation_run_now(
            account=account, actor=self.admin, reason="Chargeback lost", reference="case-1"
        )
        assert revocation.status == RevocationStatus.COMPLETED, revocation.last_error
        account.refresh_from_db()
        assert account.access_status == AccessStatus.REVOKED

    @rule(data=st.data(), days=st.integers(1, 60))
    def staff_comp(self, data, days: int):
        comp_record(
            account=self._account_drawn(data),
            reason="Partner account",
            expires_at=timezone.now() + timedelta(days=days),
            granted_by=self.admin,
        )

    # --- the rules, after every step --------------------------------------------------------

    @invariant()
    def access_rules_hold(self):
        ids = [account.pk for account in self.accounts]
        accounts = Account.objects.in_bulk(ids)
        trails: dict[int, list[AccessAudit]] = defaultdict(list)
        for row in AccessAudit.objects.filter(account_id__in=ids).order_by("at", "id"):
            trails[row.account_id].append(row)
        run_ids = {
            int(row.source.removeprefix("run:"))
            for rows in trails.values()
            for row in rows
            if row.source.startswith("run:")
        }
        runs = ReconciliationRun.objects.in_bulk(run_ids)
        comps: dict[int, list[AccessComp]] = defaultdict(list)
        for comp in AccessComp.objects.filter(account_id__in=ids):
            comps[comp.account_id].append(comp)
        for pk in ids:
            account, rows = accounts[pk], trails[pk]
            check_staff_revocation_never_undone(account, rows)
            check_no_stale_automated_change(account, rows, runs, comps[pk])
            check_one_audit_row_per_change(account, rows, self.initial_status[pk])
            check_automation_never_revokes(account, rows)
            self.status[pk] = account.access_status
        # Invariants run once after every step: the one place to move the clock on.
        self.clock.tick()


@pytest.mark.django_db
def test_access_rules_hold_on_every_interleaving(stripe_fake, settings, admin_user, monkeypatch):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]
    clock = StepClock()
    monkeypatch.setattr(timezone, "now", clock)
    client = Client()
    run_state_machine_as_test(
        lambda: AccessRulesMachine(
            fake=stripe_fake,
            admin=admin_user,
            client=client,
            django_settings=settings,
            clock=clock,
        ),
        settings=MACHINE_SETTINGS,
    )


# --- The interleavings issue 11 names, played by hand on the same machine -------------------
# Random search reaches these only now and then in 200 examples; played here every run, so a
# writer that stops re-checking staff changes fails CI for certain.


@pytest.fixture
def machine(stripe_fake, settings, admin_user, monkeypatch):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]
    clock = StepClock()
    monkeypatch.setattr(timezone, "now", clock)
    machine = AccessRulesMachine(
        fake=stripe_fake, admin=admin_user, client=Client(), django_settings=settings, clock=clock
    )
    yield machine
    machine.teardown()


def _step(machine: AccessRulesMachine, result=None):
    """What hypothesis does after every rule: check the rules (and move the clock on)."""
    machine.access_rules_hold()
    return result


@pytest.mark.django_db
def test_a_grace_extended_after_a_halted_run_is_not_ended_by_its_apply(machine):
    _step(machine, machine.world(starts=["grace", "active"], histories=[["active"], ["active"]]))
    grace = machine.accounts[0]
    run_pk = _step(machine, machine.audit(max_change_ratio=0.0))
    assert RunOutcome.objects.get(run_id=run_pk, account=grace).outcome == Outcome.END_GRACE
    _step(machine, machine.staff_act(grace, extend=True))
    _step(machine, machine.halted_run_decide(pk=run_pk, decision="apply"))
    grace.refresh_from_db()
    assert grace.access_status == AccessStatus.GRACE_PERIOD


@pytest.mark.django_db
def test_a_halted_reactivate_does_not_undo_a_later_staff_revocation(machine):
    # Issue 11's first bullet: revoked before the audit trail (automation may re-activate it),
    # the run halts with "reactivate", an Admin restores then revokes, the old run is applied.
    _step(machine, machine.world(starts=["revoked_legacy", "active"], histories=[["active"]] * 2))
    legacy = machine.accounts[0]
    run_pk = _step(machine, machine.audit(max_change_ratio=0.0))
    assert RunOutcome.objects.get(run_id=run_pk, account=legacy).outcome == Outcome.REACTIVATE
    _step(machine, machine.staff_act(legacy))  # restore
    _step(machine, machine.staff_act(legacy))  # revoke
    _step(machine, machine.halted_run_decide(pk=run_pk, decision="apply"))
    legacy.refresh_from_db()
    assert legacy.access_status == AccessStatus.REVOKED


@pytest.mark.django_db
def test_a_halted_grace_start_is_not_applied_after_a_revoke_and_restore(machine):
    _step(machine, machine.world(starts=["active", "active"], histories=[["canceled"], ["active"]]))
    lapsed = machine.accounts[0]
    run_pk = _step(machine, machine.audit(max_change_ratio=0.0))
    assert RunOutcome.objects.get(run_id=run_pk, account=lapsed).outcome == Outcome.START_GRACE
    _step(machine, machine.staff_act(lapsed))  # revoke
    _step(machine, machine.staff_act(lapsed))  # restore
    _step(machine, machine.halted_run_decide(pk=run_pk, decision="apply"))
    lapsed.refresh_from_db()
    assert lapsed.access_status == AccessStatus.ACTIVE
