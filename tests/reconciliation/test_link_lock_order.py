"""A run's link batch and a webhook for a customer it is linking take their locks in one order
(the waiting mirror rows, then the accounts), so neither is aborted as a deadlock victim."""

import threading
import time

import pytest
from django.db import connection, connections
from django.utils import timezone

from reconciliation.models import Subscription
from reconciliation.services import subscriptions as subscriptions_module
from reconciliation.services.sync import customer_links_write
from tests.factories import AccountFactory, SubscriptionFactory
from tests.reconciliation.webhook_support import sub_obj


@pytest.mark.django_db(transaction=True)
def test_a_link_batch_and_a_webhook_for_its_customer_do_not_deadlock(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    account = AccountFactory(stripe_customer_id="", email="dl@example.com", members=0)
    SubscriptionFactory(provider_id="sub_dl", account=None, customer_id="cus_dl", status="active")
    row_locked = threading.Event()
    real_link = subscriptions_module.account_link

    def slow_link(**kwargs):
        row_locked.set()  # subscription_apply holds the mirror row's lock now
        time.sleep(0.3)  # the link batch starts meanwhile
        return real_link(**kwargs)

    monkeypatch.setattr(subscriptions_module, "account_link", slow_link)
    errors: dict[str, Exception] = {}

    def webhook() -> None:
        try:
            subscriptions_module.subscription_apply(
                obj=sub_obj("sub_dl", "cus_dl", metadata={"account_id": account.public_id}),
                provider_time=timezone.now(),
                actor="system:webhook",
                source="event:evt_dl",
                customer_email="dl@example.com",
            )
        except Exception as exc:
            errors["webhook"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=webhook)
    thread.start()
    assert row_locked.wait(5)
    try:
        refused = customer_links_write(links=[(account.pk, "cus_dl")])
    except Exception as exc:  # the deadlock victim, before the lock order was one
        errors["links"] = exc
        refused = {}
    thread.join(10)

    assert errors == {}
    assert refused == {}  # linked by the webhook first: the same link counts as written
    account.refresh_from_db()
    assert account.stripe_customer_id == "cus_dl"
    assert Subscription.objects.get(provider_id="sub_dl").account_id == account.pk


class _Deadlock(Exception):
    sqlstate = "40P01"


@pytest.mark.django_db(transaction=True)
def test_a_link_batch_aborted_as_a_deadlock_victim_is_tried_again(monkeypatch):
    """Some other writer may still take the rows in another order: the batch, all or nothing,
    is tried again rather than failing the night."""
    from django.db import OperationalError

    from reconciliation.services.runs import apply

    calls: list[tuple[int, int]] = []

    def once(run, id_range):
        calls.append(id_range)
        if len(calls) == 1:
            raise OperationalError("deadlock detected") from _Deadlock()

    monkeypatch.setattr(apply, "_links_apply_range_once", once)
    apply._links_apply_range(None, (1, 1000))
    assert calls == [(1, 1000), (1, 1000)]

    def other_error(run, id_range):
        raise OperationalError("server closed the connection")

    monkeypatch.setattr(apply, "_links_apply_range_once", other_error)
    with pytest.raises(OperationalError):
        apply._links_apply_range(None, (1, 1000))
