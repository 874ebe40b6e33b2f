"""Janitor against localstripe: a second opinion on Stripe's behaviour from a fake we did not write.

What localstripe cannot show, and so this suite does not claim (sandbox/README.md covers it
with our own fake, held to Stripe's fixtures):
- it speaks 2017-era shapes (API 2017-08-15): top-level `plan` and `current_period_end` on a
  subscription, no Prices; Janitor's legacy parsing is what reads them here;
- it has no disputes, charges lookups by payment intent, invoice payments or files: nothing of
  the dispute and evidence flow runs here;
- it has no trialing status and sends no customer.subscription.updated;
- GET /v1/subscriptions?created[gte]=... answers 500 (see
  test_localstripe_has_no_created_filter_on_subscription_lists), so nothing here uses it;
- it posts each webhook once, with no retries, and only for customer.subscription.created /
  deleted and invoice.payment_succeeded / failed.
"""

from __future__ import annotations

import io
import time
import urllib.error

import pytest
from django.core.management import call_command

from accounts.models import AccessStatus, Account, User
from reconciliation.listing import SubscriptionListing
from reconciliation.models import (
    Flag,
    FlagKind,
    FlagStatus,
    Outcome,
    RunStatus,
    Subscription,
    WebhookEvent,
    WebhookStatus,
)
from reconciliation.services.runs import (
    reconciliation_run,
    reconciliation_run_apply_begin,
    reconciliation_run_apply_finish,
)

pytestmark = pytest.mark.postgres

EMAILS = [f"u{n}@example.com" for n in range(1, 6)]


def _import(tmp_path, emails, customer_ids) -> None:
    csv = "public_id,email,name,is_active,stripe_customer_id\n" + "".join(
        f"user-{n},{email},Account {n},true,{customer_ids.get(email, '')}\n"
        for n, email in enumerate(emails, start=1)
    )
    path = tmp_path / "accounts.csv"
    path.write_text(csv)
    call_command("import_accounts", str(path), stdout=io.StringIO())


def _audit_and_apply(admin_user):
    run = reconciliation_run(dry_run=False, triggered_by="system:test")
    assert run.status == RunStatus.HALTED, str((run.counts, run.errors))
    assert "Nothing was changed" in run.halt_reason or run.halt_reason
    run = reconciliation_run_apply_finish(
        run=reconciliation_run_apply_begin(run=run, actor_user=admin_user)
    )
    assert run.status == RunStatus.APPLIED, run.errors
    return run


def _status(email: str) -> str:
    return Account.objects.get(email=email).access_status


@pytest.mark.django_db
def test_import_sync_reconcile_then_cancel_and_recreate_at_localstripe(
    localstripe, tmp_path, admin_user
):
    customers = {email: localstripe.add_paying_customer(email) for email in EMAILS[:4]}
    subscriptions = {e: localstripe.subscribe(c["id"]) for e, c in customers.items()}
    assert {s["status"] for s in subscriptions.values()} == {"active"}
    # u5 is a known customer who pays nothing; u1..u4 are linked by email by sync_stripe.
    u5 = localstripe.add_paying_customer(EMAILS[4])
    _import(tmp_path, EMAILS, {EMAILS[4]: u5["id"]})

    out = io.StringIO()
    call_command("sync_stripe", stdout=out)
    assert "Linked: 4" in out.getvalue(), out.getvalue()
    for email, customer in customers.items():
        assert Account.objects.get(email=email).stripe_customer_id == customer["id"]
    mirror = Subscription.objects.get(provider_id=subscriptions[EMAILS[0]]["id"])
    # localstripe's 2017 shape: the plan at the top, parsed by Janitor's legacy path.
    assert (mirror.price_id, mirror.amount, mirror.status) == ("basic", 1500, "active")
    assert mirror.current_period_end is not None

    # u4 cancels before the first audit: one access change in five accounts trips the 5%
    # brake, and an admin applies. u5 has access but no subscription: a manual grant to flag.
    localstripe.cancel(subscriptions[EMAILS[3]]["id"])
    run = _audit_and_apply(admin_user)
    assert run.counts["start_grace"] == 1 and run.counts["flag_manual_grant"] == 1, run.counts
    assert [_status(e) for e in EMAILS] == ["active"] * 3 + [
        AccessStatus.GRACE_PERIOD,
        AccessStatus.ACTIVE,
    ]
    assert _open_flags() == {
        (EMAILS[3], FlagKind.MISSING_SUBSCRIPTION),
        (EMAILS[4], FlagKind.MANUAL_GRANT),
    }

    # At the provider: u1 cancels; u4 subscribes again; u5 starts paying.
    localstripe.cancel(subscriptions[EMAILS[0]]["id"])
    localstripe.subscribe(customers[EMAILS[3]]["id"])
    localstripe.subscribe(u5["id"])

    run = _audit_and_apply(admin_user)
    assert [_status(e) for e in EMAILS] == [
        AccessStatus.GRACE_PERIOD,
        AccessStatus.ACTIVE,
        AccessStatus.ACTIVE,
        AccessStatus.ACTIVE,
        AccessStatus.ACTIVE,
    ], run.counts
    assert (EMAILS[0], FlagKind.MISSING_SUBSCRIPTION) in _open_flags()
    assert (EMAILS[3], FlagKind.MISSING_SUBSCRIPTION) not in _open_flags()
    assert Subscription.objects.filter(account__email=EMAILS[3], status="active").count() == 1
    assert Subscription.objects.filter(account__email=EMAILS[3], status="canceled").count() == 1
    assert Subscription.objects.filter(account__email=EMAILS[4], status="active").count() == 1


def _open_flags() -> set[tuple[str, str]]:
    return set(Flag.objects.filter(status=FlagStatus.OPEN).values_list("account__email", "kind"))


def _wait_for(predicate, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("localstripe's webhook did not arrive in time")


@pytest.mark.django_db(transaction=True)
def test_webhooks_from_localstripe_are_verified_stored_and_applied(
    localstripe, live_server, settings
):
    secret = "whsec_localstripe_suite"
    settings.STRIPE_WEBHOOK_SECRETS = [secret]
    localstripe.call(
        "POST",
        "/_config/webhooks/janitor",
        url=f"{live_server.url}/webhooks/stripe/",
        secret=secret,
    )
    account = Account.objects.create(email="hook@example.com", public_id="acct-hook")
    User.objects.create_user(email="hook@example.com", password="x" * 20, account=account)
    customer = localstripe.add_paying_customer("hook@example.com")
    Account.objects.filter(pk=account.pk).update(stripe_customer_id=customer["id"])

    subscription = localstripe.subscribe(customer["id"])

    about_it = WebhookEvent.objects.filter(payload__data__object__id=subscription["id"])
    created = _wait_for(
        lambda: about_it.filter(
            type="customer.subscription.created", status=WebhookStatus.PROCESSED
        ).first()
    )
    assert created.api_version == "2017-08-15"  # kept, and warned about on the Webhooks page
    assert Subscription.objects.get(provider_id=subscription["id"]).account_id == account.pk
    _wait_for(
        lambda: WebhookEvent.objects.filter(
            type="invoice.payment_succeeded",
            payload__data__object__customer=customer["id"],
            status__in=[WebhookStatus.PROCESSED, WebhookStatus.IGNORED],
        ).exists()
    )

    localstripe.cancel(subscription["id"])

    _wait_for(
        lambda: about_it.filter(
            type="customer.subscription.deleted", status=WebhookStatus.PROCESSED
        ).exists()
    )
    assert Subscription.objects.get(provider_id=subscription["id"]).status == "canceled"
    account.refresh_from_db()
    assert account.access_status == AccessStatus.GRACE_PERIOD


@pytest.fixture
def live_server(live_server, localstripe):
    """The live server, and no localstripe delivery still arriving when its tables are flushed
    (localstripe has no way to remove a webhook: point it at a closed port instead)."""
    yield live_server
    localstripe.call(
        "POST", "/_config/webhooks/janitor", url="http://127.0.0.1:9/closed", secret="whsec_x"
    )
    time.sleep(0.5)


def test_localstripe_has_no_created_filter_on_subscription_lists(localstripe):
    """A documented gap, checked so the note above stays true (and fails when it is fixed)."""
    with pytest.raises(urllib.error.HTTPError) as failure:
        localstripe.call("GET", "/v1/subscriptions?created[gte]=1")
    assert failure.value.code == 500


@pytest.mark.django_db
def test_a_first_reconcile_links_every_account_from_the_listing_at_localstripe(
    localstripe, tmp_path, settings
):
    """localstripe expands data.customer on lists (issue 13): the first reconcile links every
    account by email with no customer lookup. With the lookup cap at 0, a customer the listing
    did not carry expanded could not be linked at all, so every link here came from the list."""
    settings.JANITOR_AUDIT_LINK_LOOKUPS = 0
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    emails = [f"team{n}@example.com" for n in range(1, 8)]
    for email in emails:
        localstripe.subscribe(localstripe.add_paying_customer(email.upper())["id"])
    _import(tmp_path, emails, {})

    run = reconciliation_run(dry_run=False, triggered_by="system:test")

    assert run.status == RunStatus.APPLIED, str((run.counts, run.errors, run.halt_reason))
    assert run.counts["linked_customers"] == len(emails)
    assert run.counts["customers_not_looked_up"] == 0
    assert run.counts[Outcome.NOT_CHECKED] == 0
    assert not Account.objects.filter(email__in=emails, stripe_customer_id="").exists()
    assert not Flag.objects.exists()


def test_the_listing_falls_back_to_sequential_at_localstripe(localstripe):
    """localstripe answers 500 to a created filter: past its sequential start the listing asks
    once, then reads the rest one page after another, every subscription once (pages of two
    and a sequential start of one page, so five subscriptions are enough)."""
    ids = {
        localstripe.subscribe(localstripe.add_paying_customer(f"s{n}@example.com")["id"])["id"]
        for n in range(5)
    }

    listing = SubscriptionListing(mirror_boundaries=[], sequential_pages=1, page_size=2)
    seen = [sub["id"] for page in listing for sub in page]

    assert listing.how == "sequential: the provider refused the created filter"
    assert sorted(seen) == sorted(ids)
