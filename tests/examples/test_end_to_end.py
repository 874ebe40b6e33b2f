"""Janitor beside a product, end to end: the example product (examples/product/app.py) runs as
its own process against Janitor's live server, with the fake Stripe behind the audit.

Accounts come in through the accounts API (the product pushes them), activity through the
activity API; a cancellation at the fake Stripe makes the audit start grace, and the product
hears access.grace_started; a revocation requested and approved by two Admins asks the product
to end its sessions, the product does and confirms, and Janitor completes it. Then, with the
product down, deliveries are retried and recorded, the revocation waits, fails retryable past
its deadline, and completes once the product is back and the revocation is retried. Nothing is
lost, and each account's versions reach the product in increasing order.

The queue runs inline in tests (Q_CLUSTER sync): a commit's delivery task and a confirmation's
continuation run at once; the test also calls what the worker's schedules call
(deliveries_deliver_due, revocations_waiting_check) and moves retries' next_attempt_at to now
where the worker would simply wait for it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import (
    AccessStatus,
    Account,
    ActivityLog,
    ApiScope,
    RevocationRequest,
    RevocationStatus,
)
from accounts.services.revocation import (
    revocation_approve,
    revocation_request,
    revocation_retry,
    revocations_waiting_check,
)
from accounts.services.tokens import api_token_create
from products.models import (
    OPEN_DELIVERY_STATUSES,
    AccessEvent,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    ProductEndpoint,
    SessionRevocation,
)
from products.services import delivery
from reconciliation.models import Outcome, RunStatus
from reconciliation.services.runs import reconciliation_run
from tests.examples.product_support import ProductProcess, wait_for

pytestmark = [pytest.mark.end_to_end, pytest.mark.postgres]

ENDPOINT = "example-product"
PASSWORD = "correct-horse-1"
CONFIRM_SECONDS = 900


@pytest.fixture
def product_beside(settings, live_server, tmp_path, admin_user):
    """The example product on its own port, registered in Janitor as an endpoint that holds
    sessions, with a token for all three scopes (it confirms revocations with it too)."""
    settings.JANITOR_PUBLIC_URL = live_server.url  # where confirm_url points
    settings.JANITOR_REVOCATION_CONFIRM_SECONDS = CONFIRM_SECONDS
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0  # a handful of accounts: no brake
    token, raw = api_token_create(
        name="Example product",
        created_by=admin_user,
        scopes=[ApiScope.ACCOUNTS_WRITE, ApiScope.ACTIVITY_WRITE, ApiScope.ACCESS_READ],
    )
    process = ProductProcess(
        db_path=tmp_path / "product.sqlite3", janitor_url=live_server.url, janitor_token=raw
    )
    endpoint = ProductEndpoint.objects.create(
        name=ENDPOINT,
        url=process.events_url,
        holds_sessions=True,
        token=token,
        created_by=admin_user,
    )
    process.secret = endpoint.secret
    process.start()
    yield process, endpoint, token
    process.stop()


def _make_due(endpoint: ProductEndpoint) -> None:
    """Time passes: every retry waiting out its backoff is due now."""
    Delivery.objects.filter(endpoint=endpoint, status__in=OPEN_DELIVERY_STATUSES).update(
        next_attempt_at=timezone.now()
    )


def _until_revocation(
    revocation_id: int, status: str, endpoint: ProductEndpoint, seconds: float = 45
) -> RevocationRequest:
    """Run the deliverer as the worker would until the revocation reaches `status`."""
    deadline = time.monotonic() + seconds
    while True:
        _make_due(endpoint)
        delivery.deliveries_deliver_due()
        revocation = RevocationRequest.objects.get(pk=revocation_id)
        if revocation.status == status:
            return revocation
        if time.monotonic() > deadline:
            raise AssertionError(
                f"revocation {revocation_id} is {revocation.status}, not {status}: "
                f"{revocation.last_error or revocation.steps}"
            )
        time.sleep(0.1)


def _drain(endpoint: ProductEndpoint, seconds: float = 30) -> None:
    """Deliver until nothing is open for the endpoint."""
    deadline = time.monotonic() + seconds
    while Delivery.objects.filter(endpoint=endpoint, status__in=OPEN_DELIVERY_STATUSES).exists():
        if time.monotonic() > deadline:
            still = list(
                Delivery.objects.filter(
                    endpoint=endpoint, status__in=OPEN_DELIVERY_STATUSES
                ).values("event_type", "status", "last_error")
            )
            raise AssertionError(f"deliveries still open: {still}")
        _make_due(endpoint)
        delivery.deliveries_deliver_due()
        time.sleep(0.05)


def _held(product: ProductProcess, account: str) -> dict[str, Any]:
    return product.query(
        "SELECT status, grants_access, access_version FROM accounts WHERE public_id = ?", account
    )[0]


def _received(product: ProductProcess, account: str, event_type: str) -> list[dict[str, Any]]:
    return product.query(
        "SELECT * FROM webhook_events WHERE account = ? AND type = ? ORDER BY seq",
        account,
        event_type,
    )


def test_a_product_beside_janitor_from_sign_up_to_revocation_and_back_from_an_outage(
    product_beside, stripe_fake, settings, admin_user, second_admin
):
    product, endpoint, token = product_beside
    one = product.cli(
        *("create-user", "--email", "ada@one.test", "--password", PASSWORD),
        *("--account", "acct-one", "--account-email", "billing@one.test"),
        *("--stripe-customer", "cus_one"),
    )
    bob = product.cli(
        *("create-user", "--email", "bob@one.test", "--password", PASSWORD),
        *("--account", "acct-one"),
    )
    two = product.cli(
        *("create-user", "--email", "cy@two.test", "--password", PASSWORD),
        *("--account", "acct-two", "--stripe-customer", "cus_two"),
    )

    # 1. Accounts in through the accounts API: the product pushes them as they are made.
    wait_for(
        lambda: (
            Account.objects.filter(public_id="acct-one", members__email="bob@one.test").exists()
            and Account.objects.filter(public_id="acct-two", members__email="cy@two.test").exists()
        ),
        seconds=30,
        what="the product's accounts and members to reach Janitor",
    )
    account_one = Account.objects.get(public_id="acct-one")
    account_two = Account.objects.get(public_id="acct-two")
    assert (account_one.email, account_one.stripe_customer_id) == ("billing@one.test", "cus_one")
    assert set(account_one.members.values_list("public_id", flat=True)) == {
        one["member"],
        bob["member"],
    }
    assert account_one.access_status == AccessStatus.ACTIVE

    # 2. Activity through the API: sign-ins and a page view, filed under each member.
    _, ada_session = product.sign_in("ada@one.test", PASSWORD)
    _, bob_session = product.sign_in("bob@one.test", PASSWORD)
    _, cy_session = product.sign_in("cy@two.test", PASSWORD)
    assert ada_session and bob_session and cy_session
    assert product.home(ada_session).status == 200
    reported = ActivityLog.objects.filter(source=str(token.pk))
    wait_for(lambda: reported.count() >= 4, seconds=30, what="activity to reach Janitor")
    assert set(reported.values_list("member__public_id", "kind")) == {
        (one["member"], "login"),
        (one["member"], "request"),
        (bob["member"], "login"),
        (two["member"], "login"),
    }

    # 3. A cancellation at the fake Stripe; the audit starts grace.
    stripe_fake.add_customer("cus_one", email="billing@one.test")
    subscription = stripe_fake.add_subscription(customer="cus_one", status="active")
    stripe_fake.add_customer("cus_two", email="cy@two.test")
    stripe_fake.add_subscription(customer="cus_two", status="active")
    first = reconciliation_run(dry_run=False, triggered_by="test")
    assert first is not None and first.status == RunStatus.APPLIED, first and first.errors
    assert first.counts.get(Outcome.START_GRACE, 0) == 0
    stripe_fake.set_subscription_status(subscription["id"], "canceled")
    audit = reconciliation_run(dry_run=False, triggered_by="test")
    assert audit is not None and audit.status == RunStatus.APPLIED, audit and audit.errors
    assert audit.counts[Outcome.START_GRACE] == 1
    account_one.refresh_from_db()
    assert account_one.access_status == AccessStatus.GRACE_PERIOD

    # 4. The product receives access.grace_started (the worker delivers it).
    delivery.deliveries_deliver_due()
    grace = wait_for(
        lambda: _received(product, "acct-one", AccessEvent.GRACE_STARTED),
        what="access.grace_started at the product",
    )
    assert grace[0]["outcome"] == "applied"
    assert _held(product, "acct-one") == {
        "status": "grace_period",
        "grants_access": 1,
        "access_version": account_one.access_version,
    }
    home = product.home(ada_session)
    assert home.status == 200 and "did not go through" in home.text  # grace keeps access

    # 5. A revocation requested and approved by two Admins.
    revocation = revocation_request(
        account=account_one, requested_by=admin_user, reason="Chargeback lost", reference="CB-1"
    )
    revocation_approve(revocation_id=revocation.pk, approver=second_admin, comment="Confirmed")

    # 6. The product ends its sessions and confirms; Janitor marks the revocation completed.
    revocation = _until_revocation(revocation.pk, RevocationStatus.COMPLETED, endpoint)
    account_one.refresh_from_db()
    assert account_one.access_status == AccessStatus.REVOKED and not account_one.is_active
    asked = SessionRevocation.objects.get(revocation=revocation, endpoint=endpoint)
    assert asked.confirmed_at is not None
    assert asked.sessions_ended == 2  # Ada's and Bob's, ended by the product
    # The product notes Janitor's answer to its confirmation once it has it: Janitor may have
    # recorded the confirmation (and completed the revocation) a moment before.
    confirmation = wait_for(
        lambda: [
            row
            for row in product.query(
                "SELECT * FROM confirmations WHERE revocation = ?", revocation.pk
            )
            if row["confirmed_at"]
        ],
        what="the product to note that Janitor took its confirmation",
    )
    assert len(confirmation) == 1
    assert product.home(ada_session).status != 200
    assert product.home(bob_session).status != 200
    assert product.sign_in("ada@one.test", PASSWORD)[0].status == 403
    assert product.home(cy_session).status == 200  # another account: untouched
    _drain(endpoint)
    assert _held(product, "acct-one") == {
        "status": "revoked",
        "grants_access": 0,
        "access_version": account_one.access_version,
    }

    # 7. The product goes down: deliveries are retried (each attempt recorded) and the
    #    revocation waits for it.
    product.stop()
    second = revocation_request(account=account_two, requested_by=admin_user, reason="Fraud")
    revocation_approve(revocation_id=second.pk, approver=second_admin)
    second.refresh_from_db()
    assert second.status == RevocationStatus.APPROVED  # waiting, not failed, not done
    waiting = SessionRevocation.objects.get(revocation=second, endpoint=endpoint)
    assert waiting.confirmed_at is None
    for _ in range(3):
        _make_due(endpoint)
        delivery.deliveries_deliver_due()
    ask = Delivery.objects.get(
        endpoint=endpoint, revocation=second, event_type=AccessEvent.SESSIONS_REVOKE
    )
    assert ask.status == DeliveryStatus.FAILING and ask.attempts >= 3
    failed_attempts = DeliveryAttempt.objects.filter(delivery=ask)
    assert failed_attempts.count() == ask.attempts
    assert all(a.status_code is None and a.error for a in failed_attempts)
    staff = Client()
    staff.force_login(admin_user)
    page = staff.get(reverse("revocation_list"))
    assert f"Waiting for {ENDPOINT}" in page.content.decode()
    second.refresh_from_db()
    assert second.status == RevocationStatus.APPROVED

    # 8. Past the deadline it fails, retryable (the periodic check decides).
    settings.JANITOR_REVOCATION_CONFIRM_SECONDS = 0
    revocations_waiting_check()
    second.refresh_from_db()
    assert second.status == RevocationStatus.FAILED
    assert ENDPOINT in second.last_error
    account_two.refresh_from_db()
    assert account_two.access_status == AccessStatus.REVOKED_PENDING
    settings.JANITOR_REVOCATION_CONFIRM_SECONDS = CONFIRM_SECONDS

    # 9. The product returns, an Admin retries, and the revocation completes.
    product.start()
    revocation_retry(revocation_id=second.pk, actor=second_admin)
    second = _until_revocation(second.pk, RevocationStatus.COMPLETED, endpoint)
    account_two.refresh_from_db()
    assert account_two.access_status == AccessStatus.REVOKED
    waiting.refresh_from_db()
    assert waiting.confirmed_at is not None and waiting.sessions_ended == 1  # Cy's session
    assert product.home(cy_session).status != 200
    assert product.sign_in("cy@two.test", PASSWORD)[0].status == 403
    _drain(endpoint)

    # Nothing lost: every event is delivered or superseded by a newer one that was, and the
    # product holds each account's latest version and status.
    deliveries = list(Delivery.objects.filter(endpoint=endpoint).order_by("id"))
    assert {d.status for d in deliveries} <= {DeliveryStatus.DELIVERED, DeliveryStatus.SUPERSEDED}
    received = {row["webhook_id"]: row for row in product.query("SELECT * FROM webhook_events")}
    for sent in deliveries:
        if sent.status == DeliveryStatus.DELIVERED:
            assert sent.webhook_id in received, sent.payload
        else:
            newer = Delivery.objects.get(pk=sent.superseded_by_id)
            assert newer.account_version >= sent.account_version
    assert all(
        d.status == DeliveryStatus.DELIVERED
        for d in deliveries
        if d.event_type == AccessEvent.SESSIONS_REVOKE
    )
    for account in (account_one, account_two):
        account.refresh_from_db()
        held = _held(product, account.public_id)
        assert held["access_version"] == account.access_version
        assert held["status"] == account.access_status
        # In order: each account's versions reached the product never decreasing, and no
        # event arrived older than one already applied.
        rows = product.query(
            "SELECT type, version, outcome FROM webhook_events WHERE account = ? ORDER BY seq",
            account.public_id,
        )
        versions = [row["version"] for row in rows]
        assert versions == sorted(versions), rows
        assert not [row for row in rows if row["outcome"] in ("stale", "duplicate")], rows
        applied = [r["version"] for r in rows if r["outcome"] == "applied"]
        assert applied == sorted(set(applied)), rows
    assert [r["type"] for r in _received_all(product, "acct-one")][:1] == [
        AccessEvent.GRACE_STARTED
    ]


def _received_all(product: ProductProcess, account: str) -> list[dict[str, Any]]:
    return product.query(
        "SELECT type, version FROM webhook_events WHERE account = ? ORDER BY seq", account
    )
