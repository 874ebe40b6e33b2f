"""The safety rules on every path (issue 11): a saved run is re-decided when applied, links are
written only by an applied run, what was not checked is never flagged, and subscriptions that
arrive before their account are linked when it appears."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccessAudit, AccessStatus, Account
from accounts.services.revocation import access_restore, revocation_run_now
from reconciliation.models import (
    Flag,
    Outcome,
    ReconciliationRun,
    RunLink,
    RunOutcome,
    RunStatus,
    Subscription,
)
from reconciliation.services.access_decisions import comp_record
from reconciliation.services.runs import (
    reconciliation_run,
    reconciliation_run_apply_begin,
    reconciliation_run_apply_finish,
)
from reconciliation.services.subscriptions import subscription_apply
from tests.factories import AccountFactory, StaffFactory
from tests.reconciliation.webhook_support import SECRET, body_for, post_signed, sub_obj

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(admin_user):
    return admin_user


def _halted_run(settings):
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 0.0
    run = reconciliation_run(dry_run=False, triggered_by="test")
    assert run.status == RunStatus.HALTED, run.halt_reason
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    return run


def _apply(run, admin):
    reconciliation_run_apply_begin(run=run, actor_user=admin)
    return reconciliation_run_apply_finish(run=run)


# --- Applying an old halted run -------------------------------------------------------------


def test_an_old_halted_run_does_not_undo_a_staff_revocation(stripe_fake, settings, admin):
    # Revoked by an import (not by staff) while Stripe shows a paid subscription: reactivate.
    account = AccountFactory(access_status=AccessStatus.REVOKED, is_active=False)
    AccessAudit.objects.create(
        account=account, actor="system:import", from_status="", to_status="revoked", reason="x"
    )
    stripe_fake.add_subscription("sub_paid", customer=account.stripe_customer_id)
    run = _halted_run(settings)
    assert RunOutcome.objects.get(run=run, account=account).outcome == Outcome.REACTIVATE

    # Later an Admin restores and then revokes the account by hand.
    access_restore(account=account, actor=admin, reason="Bank reversed the chargeback")
    revocation_run_now(account=account, actor=admin, reason="Fraud confirmed")
    account.refresh_from_db()
    assert account.access_status == AccessStatus.REVOKED

    applied = _apply(run, admin)

    account.refresh_from_db()
    assert applied.status == RunStatus.APPLIED
    assert account.access_status == AccessStatus.REVOKED
    assert not AccessAudit.objects.filter(account=account, source=f"run:{run.pk}").exists()
    row = RunOutcome.objects.get(run=run, account=account)
    assert (row.applied, row.skip_reason) == (False, "revoked by staff since the run")


def test_an_old_halted_run_does_not_start_grace_for_a_customer_who_resubscribed(
    stripe_fake, settings, admin
):
    account = AccountFactory()
    stripe_fake.add_subscription("sub_gone", customer=account.stripe_customer_id, status="canceled")
    run = _halted_run(settings)
    assert RunOutcome.objects.get(run=run, account=account).outcome == Outcome.START_GRACE

    # The customer resubscribes; the webhook brings it into the mirror.
    subscription_apply(
        obj=sub_obj("sub_back", account.stripe_customer_id, "active"),
        provider_time=run.started_at.replace(year=run.started_at.year + 1),
        actor="system:webhook",
        source="event:evt_back",
    )
    _apply(run, admin)

    account.refresh_from_db()
    assert account.access_status == AccessStatus.ACTIVE
    row = RunOutcome.objects.get(run=run, account=account)
    assert row.skip_reason == "resubscribed since the run"
    assert not Flag.objects.filter(account=account).exists()


def test_an_old_halted_run_skips_an_account_whose_status_changed_since(
    stripe_fake, settings, admin
):
    account = AccountFactory()
    stripe_fake.add_subscription("sub_gone", customer=account.stripe_customer_id, status="canceled")
    other = AccountFactory()
    stripe_fake.add_subscription("sub_other", customer=other.stripe_customer_id, status="canceled")
    run = _halted_run(settings)
    # A comp recorded since: the other account's grace is no longer right either.
    from datetime import timedelta

    from django.utils import timezone

    comp_record(
        account=other,
        reason="Sales deal",
        expires_at=timezone.now() + timedelta(days=30),
        granted_by=admin,
    )
    # A webhook already started the grace period of the first one.
    subscription_apply(
        obj=sub_obj("sub_gone", account.stripe_customer_id, "canceled"),
        provider_time=timezone.now() + timedelta(days=1),
        actor="system:webhook",
        source="event:evt_late",
    )
    account.refresh_from_db()
    assert account.access_status == AccessStatus.GRACE_PERIOD

    _apply(run, admin)

    rows = {r.account_id: r for r in RunOutcome.objects.filter(run=run)}
    assert rows[account.pk].skip_reason == "status changed since the run (active → grace_period)"
    assert rows[other.pk].skip_reason == "a comp was recorded since the run"
    assert AccessAudit.objects.filter(account=account).count() == 1  # only the webhook's


def test_the_run_page_lists_skipped_rows_with_their_reason(
    stripe_fake, settings, admin, admin_client_
):
    account = AccountFactory()
    stripe_fake.add_subscription("sub_gone", customer=account.stripe_customer_id, status="canceled")
    run = _halted_run(settings)
    subscription_apply(
        obj=sub_obj("sub_back", account.stripe_customer_id, "active"),
        provider_time=run.started_at.replace(year=run.started_at.year + 1),
        actor="system:webhook",
        source="event:evt_back",
    )
    _apply(run, admin)
    page = admin_client_.get(
        reverse("reconciliation_run_detail", args=[run.pk]), {"outcome": "skipped"}
    ).content.decode()
    assert "skipped: resubscribed since the run" in page
    assert "Skipped at apply" in page


# --- Never flag what was not checked; first runs on email-matched customers ----------------


def _email_matched_shop(stripe_fake, n: int, status: str = "active") -> list[Account]:
    accounts = AccountFactory.create_batch(n, stripe_customer_id="")
    for i, account in enumerate(accounts):
        customer = stripe_fake.add_customer(f"cus_mail{i:05d}", email=account.email.upper())
        stripe_fake.add_subscription(f"sub_mail{i:05d}", customer=customer["id"], status=status)
    return accounts


def test_a_first_reconcile_of_1000_email_matched_accounts_links_all_without_a_lookup(
    stripe_fake, settings
):
    """The listing carries each customer (expand[]=data.customer): every account is linked in
    the first run, with no call per customer and no cap, and nobody is flagged (issue 13)."""
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 0.05
    accounts = _email_matched_shop(stripe_fake, 1000)

    out = StringIO()
    call_command("reconcile", stdout=out)

    first = ReconciliationRun.objects.get()
    assert first.status == RunStatus.APPLIED
    assert first.counts["linked_customers"] == 1000
    assert first.counts[Outcome.NOT_CHECKED] == 0
    assert first.counts[Outcome.FLAG_MANUAL_GRANT] == 0
    assert not Flag.objects.exists()
    assert stripe_fake.requests_to("/v1/customers/") == []
    assert len(stripe_fake.requests_to("/v1/subscriptions")) == 10  # 1,000 at 100 a page
    assert not Account.objects.filter(
        pk__in=[a.pk for a in accounts], stripe_customer_id=""
    ).exists()
    # A second look finds everything in sync.
    second = reconciliation_run(dry_run=True, triggered_by="test")
    assert second.counts[Outcome.IN_SYNC] == 1000


def test_without_expanded_customers_a_first_reconcile_links_up_to_the_cap(stripe_fake, settings):
    """The fallback for a server that does not expand: one lookup per customer, capped per run;
    the accounts left over are not checked, never flagged, and the next night links them."""
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 0.05
    stripe_fake.expand_lists = False
    accounts = _email_matched_shop(stripe_fake, 1000)

    out = StringIO()
    call_command("reconcile", stdout=out)

    run = reconciliation_run(dry_run=True, triggered_by="test")  # what a second look would say
    assert not Flag.objects.exists()
    first = run.__class__.objects.exclude(pk=run.pk).get()
    assert first.status == RunStatus.APPLIED
    cap = settings.JANITOR_AUDIT_LINK_LOOKUPS
    assert first.counts["linked_customers"] == cap
    assert first.counts[Outcome.NOT_CHECKED] == 1000 - cap
    assert first.counts[Outcome.FLAG_MANUAL_GRANT] == 0
    assert "not checked" not in first.counts.get("not_checked_reasons", {})
    assert (
        Account.objects.filter(pk__in=[a.pk for a in accounts])
        .exclude(stripe_customer_id="")
        .count()
        == cap
    )
    # The next night links the rest, and still flags no one.
    reconciliation_run(dry_run=False, triggered_by="test")
    assert not Flag.objects.exists()
    assert not Account.objects.filter(stripe_customer_id="").exists()


def test_a_failed_customer_lookup_makes_unlinked_accounts_not_checked(stripe_fake, settings):
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    stripe_fake.expand_lists = False  # a lookup per customer: the fallback path
    [account] = _email_matched_shop(stripe_fake, 1)
    lonely = AccountFactory(
        stripe_customer_id=""
    )  # no customer anywhere: a manual grant, if checked
    stripe_fake.fail("/v1/customers/", status=500, times=10)

    run = reconciliation_run(dry_run=False, triggered_by="test")

    assert run.counts[Outcome.NOT_CHECKED] == 2
    assert not Flag.objects.exists()
    rows = RunOutcome.objects.filter(run=run, outcome=Outcome.NOT_CHECKED)
    assert {r.account_id for r in rows} == {account.pk, lonely.pk}
    assert all("failed" in r.detail["reason"] for r in rows)
    assert {r.detail["would_be"] for r in rows} == {Outcome.FLAG_MANUAL_GRANT}


def test_a_partial_listing_neither_flags_nor_graces_accounts_it_did_not_reach(
    stripe_fake, settings
):
    """A listing that failed part way decides only what its unread part could not change: a
    customer never reached is not checked, and so is one whose read subscriptions say "take
    access away" (a canceled one does not prove there is no active one among those unread).
    An active subscription read grants access whatever else the customer has."""
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    reached = AccountFactory(stripe_customer_id="cus_a")
    stripe_fake.add_subscription("sub_a", customer="cus_a", status="canceled")
    paying = AccountFactory(
        stripe_customer_id="cus_p",
        access_status=AccessStatus.GRACE_PERIOD,
        grace_ends_at=timezone.now() + timedelta(days=3),
    )
    stripe_fake.add_subscription("sub_p", customer="cus_p", status="active")
    unreached = AccountFactory(stripe_customer_id="cus_z")
    stripe_fake.add_subscription("sub_z", customer="cus_z", status="canceled")
    Subscription.objects.create(
        provider_id="sub_z", account=unreached, customer_id="cus_z", status="canceled",
        provider_updated_at="2026-01-01T00:00:00Z",
    )  # fmt: skip
    monkey_pages = iter([[stripe_fake.subscription("sub_a"), stripe_fake.subscription("sub_p")]])

    def pages(**kwargs):
        from reconciliation.gateway import ListedPage

        yield ListedPage(next(monkey_pages), timezone.now())
        from reconciliation.gateway import GatewayError

        raise GatewayError("listing broke", retryable=True)

    from reconciliation import gateway

    original = gateway.subscription_pages
    gateway.subscription_pages = pages
    try:
        run = reconciliation_run(dry_run=False, triggered_by="test")
    finally:
        gateway.subscription_pages = original
    assert run.status == RunStatus.HALTED
    outcomes = {r.account_id: r for r in RunOutcome.objects.filter(run=run)}
    assert outcomes[unreached.pk].outcome == Outcome.NOT_CHECKED
    assert "listing failed before reaching" in outcomes[unreached.pk].detail["reason"]
    assert outcomes[reached.pk].outcome == Outcome.NOT_CHECKED
    assert outcomes[reached.pk].detail["would_be"] == Outcome.START_GRACE
    assert "failed part way" in outcomes[reached.pk].detail["reason"]
    assert outcomes[paying.pk].outcome == Outcome.END_GRACE  # stands whatever else exists


# --- Dry-run parity; a halted run writes to no account -------------------------------------


def _table(run):
    return sorted(
        (r.account_id, r.outcome, tuple(sorted(r.detail.items(), key=str)))
        for r in RunOutcome.objects.filter(run=run)
    )


@pytest.mark.parametrize("expanded", [True, False], ids=["customers-expanded", "looked-up"])
def test_a_dry_run_predicts_the_real_run(stripe_fake, settings, expanded):
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    stripe_fake.expand_lists = expanded
    accounts = _email_matched_shop(stripe_fake, 6)
    for i in (1, 3):
        stripe_fake.set_subscription_status(f"sub_mail{i:05d}", "canceled")
    stripe_fake.set_subscription_status("sub_mail00005", "past_due")
    AccountFactory(stripe_customer_id="")  # a real manual grant
    settings.JANITOR_AUDIT_LINK_LOOKUPS = 4  # two customers left for the next night

    dry = reconciliation_run(dry_run=True, triggered_by="test")
    assert (
        not Account.objects.filter(pk__in=[a.pk for a in accounts])
        .exclude(stripe_customer_id="")
        .exists()
    )
    real = reconciliation_run(dry_run=False, triggered_by="test")

    assert dry.status == RunStatus.DRY_RUN and real.status == RunStatus.APPLIED
    assert dry.counts == real.counts
    assert _table(dry) == _table(real)
    if expanded:
        # Every customer came with the listing: all linked, and the account with no customer
        # anywhere is a real manual grant.
        assert dry.counts[Outcome.START_GRACE] == 2
        assert dry.counts[Outcome.PAYMENT_FAILED] == 1
        assert dry.counts[Outcome.NOT_CHECKED] == 0
        assert dry.counts[Outcome.FLAG_MANUAL_GRANT] == 1
        return
    assert dry.counts[Outcome.START_GRACE] == 2  # found only through the links
    # Two customers were not looked up: the two accounts they belong to and the account with
    # no customer at all (it could be theirs) are not checked, not flagged.
    assert dry.counts[Outcome.NOT_CHECKED] == 3
    assert dry.counts[Outcome.FLAG_MANUAL_GRANT] == 0


def test_a_halted_run_changes_no_account_and_its_apply_writes_the_links(
    stripe_fake, settings, admin
):
    accounts = _email_matched_shop(stripe_fake, 3, status="canceled")
    run = _halted_run(settings)

    assert (
        not Account.objects.filter(pk__in=[a.pk for a in accounts])
        .exclude(stripe_customer_id="")
        .exists()
    )
    assert not AccessAudit.objects.exists()
    assert RunLink.objects.filter(run=run).count() == 3
    assert Subscription.objects.count() == 3  # the mirror was refreshed: provider data only

    _apply(run, admin)
    for account in accounts:
        account.refresh_from_db()
        assert account.stripe_customer_id.startswith("cus_mail")
        assert account.access_status == AccessStatus.GRACE_PERIOD
    assert not Subscription.objects.filter(account__isnull=True).exists()


def test_a_halted_runs_links_are_rechecked_when_applied(stripe_fake, settings, admin):
    """Links are written a batch at a time, each re-checked at the moment of writing: an
    account linked to another customer since the run, or a customer another account took,
    is skipped with the reason kept; the others are written with their waiting rows."""
    first, second, third = _email_matched_shop(stripe_fake, 3, status="canceled")
    run = _halted_run(settings)
    Account.objects.filter(pk=first.pk).update(stripe_customer_id="cus_someone_else")
    Account.objects.filter(pk=AccountFactory(stripe_customer_id="").pk).update(
        stripe_customer_id="cus_mail00001"
    )  # the second account's customer, taken by another account since the run

    _apply(run, admin)

    reasons = dict(RunLink.objects.filter(run=run).values_list("account_id", "skip_reason"))
    assert reasons == {
        first.pk: "linked to another customer since the run",
        second.pk: "the customer was linked to another account since the run",
        third.pk: "",
    }
    assert RunLink.objects.get(run=run, account=third).applied
    third.refresh_from_db()
    assert third.stripe_customer_id == "cus_mail00002"
    assert Subscription.objects.get(customer_id="cus_mail00002").account_id == third.pk
    assert Subscription.objects.get(customer_id="cus_mail00000").account_id is None


def test_links_saved_while_listing_are_dropped_when_the_listing_fails_part_way(
    stripe_fake, settings, admin, monkeypatch
):
    """A first night saves its planned links as the listing goes (they are a plan, written only
    by an applied run). A listing that then fails links nothing: the saved plan goes, and an
    Admin's apply of the halted run writes no link."""
    import functools

    from reconciliation.listing import SubscriptionListing
    from reconciliation.services.runs import decide, execute

    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    settings.STRIPE_MAX_NETWORK_RETRIES = 1
    monkeypatch.setattr(decide, "LINK_STAGE_BATCH", 2)
    monkeypatch.setattr(execute, "MIRROR_ROWS_PER_WRITE", 2)
    monkeypatch.setattr(
        execute, "SubscriptionListing", functools.partial(SubscriptionListing, page_size=2)
    )
    saved: list[int] = []
    save = decide.run_links_stage

    def spy(*, run, links):
        saved.append(len(links))
        save(run=run, links=links)

    monkeypatch.setattr(decide, "run_links_stage", spy)
    accounts = _email_matched_shop(stripe_fake, 8)
    stripe_fake.fail("/v1/subscriptions", status=500, times=100, after=2)  # two pages, then none

    run = reconciliation_run(dry_run=False, triggered_by="test")

    assert run.status == RunStatus.HALTED
    assert sum(saved) == 4  # the two pages' customers, saved during the listing
    assert not RunLink.objects.filter(run=run).exists()
    _apply(run, admin)
    assert (
        not Account.objects.filter(pk__in=[a.pk for a in accounts])
        .exclude(stripe_customer_id="")
        .exists()
    )
    assert not Subscription.objects.exclude(account=None).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the plain batch is PostgreSQL's")
def test_a_batch_of_links_as_planned_is_written_whole_and_one_changed_since_link_by_link(
    stripe_fake, settings, admin, monkeypatch
):
    """A batch whose links are all still as the run found them is written in three statements;
    a batch with one that is not writes nothing that way and goes link by link, the others
    written and the changed one refused with its reason."""
    from reconciliation.services.runs import apply

    monkeypatch.setattr(apply, "LINK_BATCH", 2)
    plain: list[bool] = []
    write = apply._links_apply_range_plain

    def spy(run, id_range):
        plain.append(write(run, id_range))
        return plain[-1]

    monkeypatch.setattr(apply, "_links_apply_range_plain", spy)
    accounts = _email_matched_shop(stripe_fake, 4, status="canceled")
    run = _halted_run(settings)
    first_batch, second_batch = (
        [link.account_id for link in RunLink.objects.filter(run=run).order_by("pk")][i : i + 2]
        for i in (0, 2)
    )
    changed = Account.objects.get(pk=second_batch[1])
    Account.objects.filter(pk=changed.pk).update(stripe_customer_id="cus_someone_else")

    _apply(run, admin)

    assert plain == [True, False]
    reasons = dict(RunLink.objects.filter(run=run).values_list("account_id", "skip_reason"))
    assert reasons == {
        first_batch[0]: "",
        first_batch[1]: "",
        second_batch[0]: "",
        changed.pk: "linked to another customer since the run",
    }
    assert RunLink.objects.filter(run=run, applied=True).count() == 3
    for i, account in enumerate(accounts):
        account.refresh_from_db()
        rows = Subscription.objects.filter(customer_id=f"cus_mail{i:05d}")
        if account.pk == changed.pk:
            assert account.stripe_customer_id == "cus_someone_else"
            assert rows.get().account_id is None
        else:
            assert account.stripe_customer_id == f"cus_mail{i:05d}"
            assert rows.get().account_id == account.pk


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="threads write on PostgreSQL")
def test_a_first_nights_links_written_by_two_threads_are_each_rechecked(
    stripe_fake, settings, admin_user, monkeypatch
):
    """Many links are written by LINK_WRITERS threads, each batch on its own connection and
    re-checked under its accounts' locks as the serial path does: the result is the same."""
    from reconciliation.services.runs import apply

    monkeypatch.setattr(apply, "LINK_BATCH", 3)
    monkeypatch.setattr(apply, "LINK_PARALLEL_FROM", 10)
    used: set[str] = set()
    write = apply._links_apply_range

    def spy(run, id_range):
        import threading

        used.add(threading.current_thread().name)
        write(run, id_range)

    monkeypatch.setattr(apply, "_links_apply_range", spy)
    accounts = _email_matched_shop(stripe_fake, 20, status="canceled")
    run = _halted_run(settings)
    Account.objects.filter(pk=accounts[4].pk).update(stripe_customer_id="cus_someone_else")
    Account.objects.filter(pk=AccountFactory(stripe_customer_id="").pk).update(
        stripe_customer_id="cus_mail00011"
    )

    _apply(run, admin_user)

    assert len(used) == apply.LINK_WRITERS and all(n.startswith("janitor-links") for n in used)
    reasons = dict(RunLink.objects.filter(run=run).values_list("account_id", "skip_reason"))
    assert reasons.pop(accounts[4].pk) == "linked to another customer since the run"
    assert (
        reasons.pop(accounts[11].pk) == "the customer was linked to another account since the run"
    )
    assert set(reasons.values()) == {""}
    assert RunLink.objects.filter(run=run, applied=True).count() == 18
    for i, account in enumerate(accounts):
        account.refresh_from_db()
        if i not in (4, 11):
            assert account.stripe_customer_id == f"cus_mail{i:05d}"
            assert (
                Subscription.objects.get(customer_id=account.stripe_customer_id).account == account
            )


# --- Waiting subscriptions are linked when their account appears ----------------------------


@pytest.fixture
def signed(settings, django_capture_on_commit_callbacks):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]
    return django_capture_on_commit_callbacks


def _post(signed, client, type_, obj, event_id):
    with signed(execute=True):  # the queue takes the event after the intake commits
        response = post_signed(client, body_for(type_, obj, id=event_id))
    assert response.status_code == 200


def test_a_waiting_subscription_is_linked_by_import(client, stripe_fake, signed, tmp_path):
    stripe_fake.add_customer("cus_early", email="Early.Bird@Example.com")
    _post(
        signed, client, "customer.subscription.created", sub_obj("sub_early", "cus_early"), "evt_1"
    )
    waiting = Subscription.objects.get(provider_id="sub_early")
    assert waiting.account is None
    assert waiting.customer_email == "Early.Bird@Example.com"

    csv = tmp_path / "accounts.csv"
    csv.write_text(
        "public_id,email,name,is_active,stripe_customer_id\n"
        "user-early,early.bird@example.com,Early Bird,true,\n"
    )
    out = StringIO()
    call_command("import_accounts", str(csv), stdout=out)

    account = Account.objects.get(public_id="user-early")
    waiting.refresh_from_db()
    assert waiting.account == account
    assert account.stripe_customer_id == "cus_early"
    assert "Linked 1 waiting subscription" in out.getvalue()


def test_a_waiting_subscription_is_linked_by_the_next_event(client, stripe_fake, signed):
    stripe_fake.add_customer("cus_late", email="late@example.com")
    _post(signed, client, "customer.subscription.created", sub_obj("sub_late", "cus_late"), "evt_1")
    account = AccountFactory(email="late@example.com", stripe_customer_id="")  # created later
    stripe_fake.add_subscription("sub_late", customer="cus_late", status="past_due")

    _post(
        signed,
        client,
        "customer.subscription.updated",
        sub_obj("sub_late", "cus_late", "past_due"),
        "evt_2",
    )

    account.refresh_from_db()
    assert Subscription.objects.get(provider_id="sub_late").account == account
    assert account.stripe_customer_id == "cus_late"
    assert account.access_status == AccessStatus.GRACE_PERIOD


def test_a_waiting_subscription_is_linked_by_metadata_on_import(
    client, stripe_fake, signed, tmp_path
):
    stripe_fake.add_customer("cus_meta", email="someone-else@example.com")
    obj = sub_obj("sub_meta", "cus_meta", "canceled", metadata={"account_id": "user-meta"})
    _post(signed, client, "customer.subscription.created", obj, "evt_1")
    csv = tmp_path / "accounts.csv"
    csv.write_text(
        "public_id,email,name,is_active,stripe_customer_id\nuser-meta,meta@example.com,Meta,true,\n"
    )
    call_command("import_accounts", str(csv), stdout=StringIO())
    account = Account.objects.get(public_id="user-meta")
    assert Subscription.objects.get(provider_id="sub_meta").account == account
    assert account.access_status == AccessStatus.GRACE_PERIOD  # decided from what waited


def test_the_lookup_cap_moves_on_to_new_customers_each_night(stripe_fake, settings):
    """Customers looked up once and matched to nobody are not asked for again: the cap
    reaches the others, and an account created later with their email is matched locally."""
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    settings.JANITOR_AUDIT_LINK_LOOKUPS = 2
    stripe_fake.expand_lists = False  # the lookup fallback
    for name in ("a", "b", "c"):
        stripe_fake.add_customer(f"cus_nobody_{name}", email=f"{name}@elsewhere.example")
        stripe_fake.add_subscription(f"sub_nobody_{name}", customer=f"cus_nobody_{name}")
    AccountFactory()  # some account, so there is something to decide

    def lookups():
        return sorted(r.path for r in stripe_fake.requests_to("/v1/customers/"))

    reconciliation_run(dry_run=False, triggered_by="test")
    assert lookups() == ["/v1/customers/cus_nobody_a", "/v1/customers/cus_nobody_b"]
    reconciliation_run(dry_run=False, triggered_by="test")
    assert lookups() == [
        "/v1/customers/cus_nobody_a",
        "/v1/customers/cus_nobody_b",
        "/v1/customers/cus_nobody_c",
    ]
    third = reconciliation_run(dry_run=False, triggered_by="test")
    assert len(lookups()) == 3  # nobody left to ask
    assert third.counts.get(Outcome.NOT_CHECKED, 0) == 0

    # An account appears with b's email: the next night links it without a call.
    late = AccountFactory(email="B@elsewhere.example", stripe_customer_id="")
    Subscription.objects.filter(customer_id="cus_nobody_b").update(account=None)
    reconciliation_run(dry_run=False, triggered_by="test")
    late.refresh_from_db()
    assert late.stripe_customer_id == "cus_nobody_b"
    assert len(lookups()) == 3


def test_an_email_naming_two_waiting_customers_links_neither(client, stripe_fake, signed, tmp_path):
    for n in (1, 2):
        stripe_fake.add_customer(f"cus_twin{n}", email="twin@example.com")
        obj = sub_obj(f"sub_t{n}", f"cus_twin{n}")
        _post(signed, client, "customer.subscription.created", obj, f"evt_t{n}")
    csv = tmp_path / "accounts.csv"
    csv.write_text(
        "public_id,email,name,is_active,stripe_customer_id\nuser-twin,twin@example.com,Twin,true,\n"
    )
    call_command("import_accounts", str(csv), stdout=StringIO())
    assert not Subscription.objects.filter(account__isnull=False).exists()
    assert Account.objects.get(public_id="user-twin").stripe_customer_id == ""


def test_an_account_created_in_the_django_admin_takes_what_waited(
    client, stripe_fake, signed, django_capture_on_commit_callbacks
):
    stripe_fake.add_customer("cus_admin_made", email="made@example.com")
    _post(
        signed, client, "customer.subscription.created", sub_obj("sub_am", "cus_admin_made"), "e1"
    )
    superuser = StaffFactory(is_superuser=True)
    admin = Client()
    admin.force_login(superuser)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            reverse("admin:accounts_account_add"),
            {
                "public_id": "acct-made",
                "name": "Made in the admin",
                "email": "made@example.com",
                "stripe_customer_id": "",
            },
        )
    assert response.status_code == 302, response.content[:500]
    account = Account.objects.get(email="made@example.com")
    assert account.stripe_customer_id == "cus_admin_made"
    assert Subscription.objects.get(provider_id="sub_am").account == account
