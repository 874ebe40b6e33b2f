"""Processing stored events: dispatch by type, order safety, retries, dead letters, replay."""

import itertools
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import AccessAudit, AccessStatus
from reconciliation.models import (
    Dispute,
    Flag,
    FlagKind,
    Subscription,
    WebhookAttempt,
    WebhookEvent,
    WebhookStatus,
)
from reconciliation.services import webhooks
from reconciliation.services.webhooks import (
    WEBHOOK_MAX_ATTEMPTS,
    webhook_event_process,
    webhook_event_replay,
    webhook_event_store,
)
from sandbox.stripe_fake import event_object
from tests.factories import AccountFactory
from tests.reconciliation.webhook_support import SECRET, body_for, post_signed, sub_obj


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]


def _store_and_process(event: dict) -> WebhookEvent:
    row = webhook_event_store(event=event)
    assert row is not None
    webhook_event_process(event_id=row.pk)
    row.refresh_from_db()
    return row


def _invoice(subscription_id: str, customer: str, *, legacy: bool = False) -> dict:
    invoice = {"id": "in_" + subscription_id, "object": "invoice", "customer": customer}
    if legacy:
        invoice["subscription"] = subscription_id
    else:
        invoice["parent"] = {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription_id, "metadata": {}},
        }
    return invoice


@pytest.mark.smoke
@pytest.mark.django_db
def test_past_due_starts_grace_with_audit_and_flag(client, django_capture_on_commit_callbacks):
    account = AccountFactory(stripe_customer_id="cus_pd")
    body = body_for(
        "customer.subscription.updated", sub_obj("sub_pd", "cus_pd", "past_due"), id="evt_pd"
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert post_signed(client, body).status_code == 200
    account.refresh_from_db()
    assert account.access_status == AccessStatus.GRACE_PERIOD
    audit = AccessAudit.objects.get(account=account)
    assert (audit.actor, audit.source, audit.to_status) == (
        "system:webhook",
        "event:evt_pd",
        AccessStatus.GRACE_PERIOD,
    )
    flag = Flag.objects.get(account=account, kind=FlagKind.PAYMENT_FAILED)
    assert flag.opened_by_event.provider_event_id == "evt_pd"
    assert WebhookEvent.objects.get().status == WebhookStatus.PROCESSED


@pytest.mark.django_db
def test_legacy_shape_is_parsed_into_the_mirror():
    AccountFactory(stripe_customer_id="cus_legacy")
    obj = sub_obj("sub_legacy", "cus_legacy", legacy=True)
    # The 2025-02-24.acacia shape keeps plan and the period at the top; items before the
    # 2018 API versions carried no price either, so the parser must do with the plan alone.
    del obj["items"]["data"][0]["price"]
    assert "plan" in obj and "current_period_end" not in obj["items"]["data"][0]
    _store_and_process(event_object("customer.subscription.created", obj))
    mirror = Subscription.objects.get(provider_id="sub_legacy")
    assert (mirror.price_id, mirror.amount, mirror.currency, mirror.interval) == (
        "price_basic",
        1500,
        "usd",
        "month",
    )
    assert int(mirror.current_period_end.timestamp()) == obj["current_period_end"]


@pytest.mark.django_db
def test_unknown_customer_is_stored_and_its_mirror_row_waits_for_the_account():
    created = int(time.time()) - 60
    first = _store_and_process(
        event_object(
            "customer.subscription.created", sub_obj("sub_wait", "cus_new"), created=created
        )
    )
    assert (first.status, first.customer_id) == (WebhookStatus.PROCESSED, "cus_new")
    mirror = Subscription.objects.get(provider_id="sub_wait")
    assert mirror.account is None
    # The account appears (signed up, linked by metadata); the next event links the row.
    account = AccountFactory(stripe_customer_id="")
    obj = sub_obj("sub_wait", "cus_new", metadata={"account_id": account.public_id})
    _store_and_process(event_object("customer.subscription.updated", obj, created=created + 5))
    mirror.refresh_from_db()
    account.refresh_from_db()
    assert mirror.account == account
    assert account.stripe_customer_id == "cus_new"


@pytest.mark.django_db
@pytest.mark.parametrize("legacy", [False, True], ids=["parent_details", "top_level"])
def test_invoice_payment_failed_applies_the_fetched_subscription(stripe_fake, legacy):
    account = AccountFactory(stripe_customer_id="cus_inv")
    stripe_fake.add_subscription("sub_inv", customer="cus_inv", status="past_due")
    event = _store_and_process(
        event_object("invoice.payment_failed", _invoice("sub_inv", "cus_inv", legacy=legacy))
    )
    assert event.status == WebhookStatus.PROCESSED
    assert Subscription.objects.get(provider_id="sub_inv").status == "past_due"
    account.refresh_from_db()
    assert account.access_status == AccessStatus.GRACE_PERIOD
    assert len(stripe_fake.requests_to("/v1/subscriptions/sub_inv", "GET")) == 1


@pytest.mark.django_db
def test_invoice_paid_ends_grace(stripe_fake):
    account = AccountFactory(stripe_customer_id="cus_paid")
    stripe_fake.add_subscription("sub_paid", customer="cus_paid", status="past_due")
    _store_and_process(event_object("invoice.payment_failed", _invoice("sub_paid", "cus_paid")))
    stripe_fake.set_subscription_status("sub_paid", "active")
    _store_and_process(
        event_object("invoice.paid", _invoice("sub_paid", "cus_paid"), created=int(time.time()) + 1)
    )
    account.refresh_from_db()
    assert account.access_status == AccessStatus.ACTIVE


@pytest.mark.django_db
def test_invoice_without_subscription_is_ignored(stripe_fake):
    event = _store_and_process(
        event_object("invoice.paid", {"id": "in_oneoff", "object": "invoice", "customer": "c"})
    )
    assert event.status == WebhookStatus.IGNORED
    assert stripe_fake.requests_to("/v1/subscriptions") == []


@pytest.mark.smoke
@pytest.mark.django_db
def test_gateway_outage_retries_with_backoff_then_dead_letters_then_replays(stripe_fake):
    account = AccountFactory(stripe_customer_id="cus_out")
    stripe_fake.add_subscription("sub_out", customer="cus_out", status="past_due")
    stripe_fake.fail("/v1/subscriptions/sub_out", status=500, times=WEBHOOK_MAX_ATTEMPTS)
    row = webhook_event_store(
        event=event_object("invoice.payment_failed", _invoice("sub_out", "cus_out"))
    )
    before = timezone.now()
    assert webhook_event_process(event_id=row.pk) == WebhookStatus.FAILED
    row.refresh_from_db()
    assert row.attempts == 1
    assert "Stripe unavailable" in row.last_error
    assert before + timedelta(seconds=55) < row.next_attempt_at < before + timedelta(seconds=65)
    for expected_attempts in range(2, WEBHOOK_MAX_ATTEMPTS + 1):
        webhook_event_process(event_id=row.pk, trigger="sweeper")
        row.refresh_from_db()
        assert row.attempts == expected_attempts
    assert row.status == WebhookStatus.DEAD
    assert row.next_attempt_at is None
    history = list(WebhookAttempt.objects.filter(event=row).values_list("outcome", flat=True))
    assert history.count("failed") == WEBHOOK_MAX_ATTEMPTS - 1
    assert history.count("dead") == 1
    # Dead stays dead: the queue or sweeper never picks it up again by itself.
    assert webhook_event_process(event_id=row.pk) == WebhookStatus.DEAD
    account.refresh_from_db()
    assert account.access_status == AccessStatus.ACTIVE  # nothing applied while failing

    assert webhook_event_replay(event=row, actor="admin@janitor.test") is True
    row.refresh_from_db()
    assert (row.status, row.attempts) == (WebhookStatus.PENDING, 0)
    assert webhook_event_process(event_id=row.pk, trigger="replay:admin") == "processed"
    account.refresh_from_db()
    assert account.access_status == AccessStatus.GRACE_PERIOD


@pytest.mark.django_db
def test_a_failing_apply_rolls_back_and_is_recorded():
    AccountFactory(stripe_customer_id="cus_weird")
    row = _store_and_process(
        event_object("customer.subscription.updated", sub_obj("sub_weird", "cus_weird", "weird"))
    )
    assert row.status == WebhookStatus.FAILED
    assert "unknown subscription status" in row.last_error
    assert not Subscription.objects.filter(provider_id="sub_weird").exists()


@pytest.mark.django_db
def test_an_unexpected_failure_before_the_lock_is_counted_like_any_other(monkeypatch):
    """What runs before the event's lock (reading the provider, the customer's email, the
    disputed charge) can fail in ways no one planned for: the attempt is still counted and
    retried with backoff, so the event reaches dead-letter instead of being sent again by the
    sweeper forever with no attempt on record."""
    from reconciliation.services.webhooks import processing

    def odd_shape(event):
        raise KeyError("charge")

    monkeypatch.setattr(processing, "_prefetch_dispute_charge", odd_shape)
    AccountFactory(stripe_customer_id="cus_odd")
    row = _store_and_process(
        event_object("customer.subscription.updated", sub_obj("sub_odd", "cus_odd", "active"))
    )

    assert row.status == WebhookStatus.FAILED and row.attempts == 1
    assert row.next_attempt_at is not None and "KeyError" in row.last_error


@pytest.mark.django_db
def test_processing_twice_applies_once():
    account = AccountFactory(stripe_customer_id="cus_twice")
    row = _store_and_process(
        event_object("customer.subscription.updated", sub_obj("sub_twice", "cus_twice", "past_due"))
    )
    assert webhook_event_process(event_id=row.pk, trigger="sweeper") == WebhookStatus.PROCESSED
    assert WebhookAttempt.objects.filter(event=row).count() == 1
    assert AccessAudit.objects.filter(account=account).count() == 1


@pytest.mark.django_db
def test_dispute_event_records_the_dispute(stripe_fake):
    account = AccountFactory(stripe_customer_id="cus_dp")
    # As Stripe sends it: the charge by id, no customer anywhere on the dispute.
    dispute = stripe_fake.add_customer_dispute("dp_hook", customer="cus_dp")
    assert isinstance(dispute["charge"], str) and dispute["metadata"] == {}
    row = _store_and_process(event_object("charge.dispute.created", dispute))
    assert row.status == WebhookStatus.PROCESSED, row.last_error
    recorded = Dispute.objects.get(provider_id="dp_hook")
    assert recorded.account == account
    assert (recorded.customer_id, recorded.charge_id) == ("cus_dp", dispute["charge"])
    assert recorded.status == "needs_response"


@pytest.mark.django_db
def test_customer_deleted_flags_and_never_revokes():
    account = AccountFactory(stripe_customer_id="cus_gone")
    row = _store_and_process(
        event_object("customer.deleted", {"id": "cus_gone", "object": "customer", "deleted": True})
    )
    assert row.status == WebhookStatus.PROCESSED
    account.refresh_from_db()
    assert account.access_status == AccessStatus.ACTIVE
    assert Flag.objects.filter(account=account, kind=FlagKind.PROVIDER_MISMATCH).count() == 1
    unknown = _store_and_process(
        event_object("customer.deleted", {"id": "cus_nobody", "object": "customer"})
    )
    assert unknown.status == WebhookStatus.IGNORED


def _life(customer: str, sub: str, start: int) -> list[tuple[str, dict, int]]:
    return [
        ("customer.subscription.created", sub_obj(sub, customer, "active"), start),
        (
            "customer.subscription.updated",
            sub_obj(sub, customer, "active", cancel_at_period_end=True),
            start + 10,
        ),
        ("customer.subscription.updated", sub_obj(sub, customer, "past_due"), start + 20),
        ("customer.subscription.deleted", sub_obj(sub, customer, "canceled"), start + 30),
    ]


@pytest.mark.django_db
def test_a_subscription_life_in_every_order_ends_in_the_same_state(
    client, django_capture_on_commit_callbacks
):
    start = int(time.time()) - 3600
    finals = set()
    for n, order in enumerate(itertools.permutations(range(4))):
        customer, sub = f"cus_perm{n}", f"sub_perm{n}"
        account = AccountFactory(stripe_customer_id=customer)
        life = _life(customer, sub, start)
        for index in order:
            type, obj, created = life[index]
            body = body_for(type, obj, id=f"evt_perm{n}_{index}", created=created)
            with django_capture_on_commit_callbacks(execute=True):
                assert post_signed(client, body).status_code == 200
        mirror = Subscription.objects.get(provider_id=sub)
        account.refresh_from_db()
        finals.add(
            (
                mirror.status,
                int(mirror.provider_updated_at.timestamp()) - start,
                mirror.cancel_at_period_end,
                mirror.account_id == account.pk,
                account.access_status,
                account.is_active,
            )
        )
    assert finals == {("canceled", 30, False, True, AccessStatus.GRACE_PERIOD, True)}
    assert WebhookEvent.objects.filter(status=WebhookStatus.PROCESSED).count() == 96


@pytest.mark.django_db
def test_replay_command_by_id_and_dead(capsys, django_capture_on_commit_callbacks):
    AccountFactory(stripe_customer_id="cus_cmd")
    dead = webhook_event_store(
        event=event_object(
            "customer.subscription.created", sub_obj("sub_cmd", "cus_cmd"), id="evt_cmd_dead"
        )
    )
    WebhookEvent.objects.filter(pk=dead.pk).update(
        status=WebhookStatus.DEAD, attempts=WEBHOOK_MAX_ATTEMPTS, last_error="boom"
    )
    done = _store_and_process(
        event_object("balance.available", {"object": "balance"}, id="evt_cmd_done")
    )
    call_command("replay_webhooks", "--id", "evt_cmd_done")
    assert "not replayed (ignored)" in capsys.readouterr().out
    # Several ids after one --id, as docs/webhooks.md writes it, or one --id each.
    with pytest.raises(CommandError, match=r"No stored event with id evt_cmd_nope\.$"):
        call_command("replay_webhooks", "--id", "evt_cmd_done", "evt_cmd_nope")
    with django_capture_on_commit_callbacks(execute=True):
        call_command("replay_webhooks", "--dead", "--actor", "ops")
    assert "1 event(s) replayed" in capsys.readouterr().out
    dead.refresh_from_db()
    assert dead.status == WebhookStatus.PROCESSED
    assert WebhookAttempt.objects.get(event=dead).trigger == "replay:ops"
    assert done.status == WebhookStatus.IGNORED


def test_backoff_grows_and_is_capped():
    backoff = webhooks.processing._backoff
    assert backoff(1) == timedelta(seconds=60)
    assert backoff(2) == timedelta(seconds=120)
    assert backoff(20) == timedelta(seconds=webhooks.WEBHOOK_BACKOFF_MAX_SECONDS)
