"""Delivering access events to product endpoints: real POSTs to a local receiver that verifies
them with the standardwebhooks library; retries, supersede, ordering, replay, concurrency; and
the retention purge of finished ones."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import Schedule

from accounts.models import AccessStatus, Account, RevocationRequest, RevocationStatus
from accounts.services.access_changes import access_changed
from products.models import (
    AccessEvent,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    ProductEndpoint,
    SessionRevocation,
    endpoint_secret_generate,
)
from products.services.delivery import (
    BACKOFF_CAP_SECONDS,
    DELIVERY_MAX_AGE,
    KICK_KEY,
    DeliveryConflict,
    DeliveryError,
    DeliveryGone,
    backoff_delay,
    deliveries_deliver_due,
    deliveries_purge,
    delivery_replay,
    delivery_schedule_ensure,
)
from products.services.outbox import deliveries_create
from tests.factories import AccountFactory, StaffFactory
from tests.products.receiver import Receiver


@pytest.fixture
def receiver():
    found = Receiver(secret=endpoint_secret_generate()).start()
    yield found
    found.stop()


@pytest.fixture
def endpoint(db, receiver):
    return ProductEndpoint.objects.create(name="Shop", url=receiver.url, secret=receiver.secret)


def _change(account, event_type=AccessEvent.GRACE_STARTED) -> Delivery:
    """An access change as the services make it: version bumped, one delivery per endpoint."""
    with transaction.atomic():
        access_changed(account=account, event_type=event_type)
    return Delivery.objects.filter(account=account).order_by("-id").first()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.smoke
def test_an_event_is_delivered_signed_with_the_library(endpoint, receiver):
    delivery = _change(AccountFactory())

    assert deliveries_deliver_due() == 1

    [got] = receiver.received
    assert got.verified, "the receiver's standardwebhooks verify() refused the signature"
    assert got.webhook_id == delivery.webhook_id
    assert got.payload == delivery.payload
    assert got.payload["data"]["version"] == delivery.account_version
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert (delivery.attempts, delivery.last_status_code, delivery.leased_until) == (1, 200, None)
    assert delivery.delivered_at is not None
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert attempt.status_code == 200 and attempt.error == ""
    # Done: a second pass has nothing to send.
    assert deliveries_deliver_due() == 0
    assert len(receiver.received) == 1


def test_an_altered_body_fails_verification_at_the_receiver(endpoint, receiver):
    # The receiver really checks: a signature over other bytes is refused.
    from products.services.delivery import signed_headers

    headers = signed_headers(
        webhook_id="msg_x", secret=receiver.secret, body=b'{"a":1}', at=timezone.now()
    )
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secret).verify(b'{"a":2}', headers)
    assert Webhook(receiver.secret).verify(b'{"a":1}', headers) == {"a": 1}


def test_each_attempt_is_signed_again_with_the_same_id(endpoint, receiver):
    receiver.status = 500
    delivery = _change(AccountFactory())
    deliveries_deliver_due()
    delivery.refresh_from_db()
    # Cross a second boundary: the timestamp is in whole seconds.
    time.sleep(1.05 - (time.time() % 1))

    deliveries_deliver_due(now=delivery.next_attempt_at)

    first, second = receiver.received
    assert first.webhook_id == second.webhook_id == delivery.webhook_id
    assert int(second.timestamp) > int(first.timestamp)
    assert first.signature != second.signature
    assert first.verified and second.verified
    assert first.body == second.body
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 2


def test_a_500_is_retried_with_backoff(endpoint, receiver):
    receiver.status = 500
    delivery = _change(AccountFactory())
    before = timezone.now()

    deliveries_deliver_due()

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILING
    assert delivery.last_status_code == 500
    assert delivery.last_error.startswith("HTTP 500")
    first_wait = delivery.next_attempt_at - before
    assert timedelta(seconds=3.7) <= first_wait <= timedelta(seconds=7)
    # Not due yet: nothing is sent before the backoff passes.
    assert deliveries_deliver_due() == 0
    assert len(receiver.received) == 1

    later = delivery.next_attempt_at
    deliveries_deliver_due(now=later)
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    second_wait = delivery.next_attempt_at - later
    assert timedelta(seconds=7.4) <= second_wait <= timedelta(seconds=12.6)

    receiver.status = 204
    deliveries_deliver_due(now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (3, 204, "")


def test_backoff_doubles_with_jitter_and_is_capped_at_an_hour():
    import random

    rng = random.Random(7)
    for attempts, base in [(1, 5), (2, 10), (3, 20), (6, 160)]:
        wait = backoff_delay(attempts=attempts, rng=rng).total_seconds()
        assert base * 0.75 <= wait <= base * 1.25
    waits = {backoff_delay(attempts=3, rng=rng).total_seconds() for _ in range(20)}
    assert len(waits) > 10, "no jitter"
    assert backoff_delay(attempts=30, rng=rng).total_seconds() <= BACKOFF_CAP_SECONDS
    assert backoff_delay(attempts=500, rng=rng).total_seconds() <= BACKOFF_CAP_SECONDS


def test_a_refused_connection_is_a_failed_attempt(db):
    endpoint = ProductEndpoint.objects.create(
        name="Down", url=f"http://127.0.0.1:{_closed_port()}/events"
    )
    delivery = _change(AccountFactory())
    assert delivery.endpoint == endpoint

    assert deliveries_deliver_due() == 1

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILING
    assert delivery.last_status_code is None
    assert "refused" in delivery.last_error.lower() or "connect" in delivery.last_error.lower()
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert attempt.status_code is None and attempt.error == delivery.last_error


def test_dead_three_days_after_creation(endpoint, receiver):
    receiver.status = 503
    delivery = _change(AccountFactory())
    deadline = delivery.created_at + DELIVERY_MAX_AGE

    deliveries_deliver_due(now=deadline - timedelta(seconds=2))
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILING
    # The last retry falls on the deadline, not after it.
    assert delivery.next_attempt_at == deadline

    deliveries_deliver_due(now=deadline)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DEAD
    assert delivery.attempts == 2
    assert deliveries_deliver_due(now=deadline + timedelta(days=1)) == 0


def test_a_newer_event_supersedes_an_older_failing_one(endpoint, receiver):
    account = AccountFactory()
    receiver.status = 500
    old = _change(account, AccessEvent.GRACE_STARTED)
    deliveries_deliver_due()  # fails: in backoff now
    receiver.status = 200
    new = _change(account, AccessEvent.REVOCATION_PENDING)

    # The old one is not due (backoff) and still does not hold the new one back.
    assert deliveries_deliver_due() == 1

    old.refresh_from_db()
    new.refresh_from_db()
    assert old.status == DeliveryStatus.SUPERSEDED and old.superseded_by_id == new.pk
    assert new.status == DeliveryStatus.DELIVERED
    assert [r.webhook_id for r in receiver.received] == [old.webhook_id, new.webhook_id]
    assert receiver.received[1].payload["data"]["version"] == new.account_version
    # Much later the old one is never sent again.
    assert deliveries_deliver_due(now=timezone.now() + timedelta(hours=2)) == 0


def test_only_the_newest_of_several_pending_events_is_sent(endpoint, receiver):
    account = AccountFactory()
    events = [_change(account) for _ in range(4)]

    assert deliveries_deliver_due() == 1

    assert receiver.ids() == [events[-1].webhook_id]
    statuses = dict(Delivery.objects.filter(account=account).values_list("pk", "status"))
    assert [statuses[e.pk] for e in events] == ["superseded"] * 3 + ["delivered"]
    assert set(
        Delivery.objects.filter(account=account, status="superseded").values_list(
            "superseded_by", flat=True
        )
    ) == {events[-1].pk}


def test_a_version_below_one_already_delivered_is_never_sent(endpoint, receiver):
    account = AccountFactory()
    older = _change(account)
    newer = _change(account)
    # As if the newer one had gone out first (an older one replayed at the database, say).
    Delivery.objects.filter(pk=newer.pk).update(status=DeliveryStatus.DELIVERED)

    assert deliveries_deliver_due() == 0

    older.refresh_from_db()
    assert older.status == DeliveryStatus.SUPERSEDED and older.superseded_by_id == newer.pk
    assert receiver.received == []


def test_sessions_revoke_is_neither_superseded_nor_held_back(endpoint, receiver):
    account = AccountFactory(access_status=AccessStatus.REVOKED_PENDING)
    access = _change(account, AccessEvent.REVOCATION_PENDING)
    # An older access event in flight at another worker right now.
    in_flight = timezone.now() + timedelta(seconds=30)
    Delivery.objects.filter(pk=access.pk).update(leased_until=in_flight, next_attempt_at=in_flight)
    with transaction.atomic():
        [revoke] = deliveries_create(
            account=account,
            event_type=AccessEvent.SESSIONS_REVOKE,
            extra={"revocation": 1, "members": []},
        )
    newer = _change(account, AccessEvent.REVOKED)

    deliveries_deliver_due(now=timezone.now())

    revoke.refresh_from_db()
    newer.refresh_from_db()
    access.refresh_from_db()
    # The revocation went out; the newer access event waits for the one in flight.
    assert revoke.status == DeliveryStatus.DELIVERED and revoke.superseded_by_id is None
    assert receiver.ids() == [revoke.webhook_id]
    assert newer.status == DeliveryStatus.PENDING
    assert access.leased_until == in_flight

    # The in-flight one is answered (failing): the newer one supersedes it and goes out.
    Delivery.objects.filter(pk=access.pk).update(
        leased_until=None, status=DeliveryStatus.FAILING, next_attempt_at=timezone.now()
    )
    deliveries_deliver_due(now=timezone.now() + timedelta(seconds=1))
    access.refresh_from_db()
    newer.refresh_from_db()
    revoke.refresh_from_db()
    assert access.status == DeliveryStatus.SUPERSEDED and access.superseded_by_id == newer.pk
    assert newer.status == DeliveryStatus.DELIVERED
    assert revoke.status == DeliveryStatus.DELIVERED  # a newer access event never touches it
    assert receiver.ids() == [revoke.webhook_id, newer.webhook_id]


def test_a_failing_sessions_revoke_does_not_hold_back_access_events(endpoint, receiver):
    account = AccountFactory(access_status=AccessStatus.REVOKED_PENDING)
    receiver.status = 500
    with transaction.atomic():
        [revoke] = deliveries_create(account=account, event_type=AccessEvent.SESSIONS_REVOKE)
    deliveries_deliver_due()
    receiver.status = 200
    access = _change(account, AccessEvent.REVOKED)

    deliveries_deliver_due()

    revoke.refresh_from_db()
    access.refresh_from_db()
    assert revoke.status == DeliveryStatus.FAILING  # still retrying, never superseded
    assert access.status == DeliveryStatus.DELIVERED


def test_events_for_a_disabled_endpoint_wait(endpoint, receiver):
    delivery = _change(AccountFactory())
    ProductEndpoint.objects.filter(pk=endpoint.pk).update(is_enabled=False)
    assert deliveries_deliver_due() == 0
    ProductEndpoint.objects.filter(pk=endpoint.pk).update(is_enabled=True)
    assert deliveries_deliver_due() == 1
    assert receiver.ids() == [delivery.webhook_id]


def test_replay_sends_again_with_the_same_id(endpoint, receiver, admin_user):
    receiver.status = 500
    delivery = _change(AccountFactory())
    deliveries_deliver_due(now=delivery.created_at + DELIVERY_MAX_AGE)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DEAD
    receiver.status = 200

    replayed = delivery_replay(delivery=delivery, actor=admin_user.email)

    assert replayed.status == DeliveryStatus.PENDING
    assert replayed.replayed_by == admin_user.email
    assert deliveries_deliver_due() == 1
    replayed.refresh_from_db()
    assert replayed.status == DeliveryStatus.DELIVERED
    assert receiver.ids() == [delivery.webhook_id, delivery.webhook_id]
    assert receiver.received[1].verified
    # A replayed delivered one goes out once more too (the receiver dedupes on the id).
    delivery_replay(delivery=replayed, actor=admin_user.email)
    assert deliveries_deliver_due() == 1
    assert receiver.ids().count(delivery.webhook_id) == 3


def test_replay_refusals(endpoint, receiver, admin_user):
    account = AccountFactory()
    old = _change(account)
    new = _change(account)
    deliveries_deliver_due()
    old.refresh_from_db()
    new.refresh_from_db()

    with pytest.raises(DeliveryConflict, match="superseded"):
        delivery_replay(delivery=old, actor=admin_user.email)
    Delivery.objects.filter(pk=old.pk).update(status=DeliveryStatus.DEAD)
    with pytest.raises(DeliveryError, match="newer event"):
        delivery_replay(delivery=old, actor=admin_user.email)
    ProductEndpoint.objects.filter(pk=endpoint.pk).update(is_enabled=False)
    with pytest.raises(DeliveryError, match="disabled"):
        delivery_replay(delivery=new, actor=admin_user.email)
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.status, old.replayed_at) == (DeliveryStatus.DEAD, None)
    assert (new.status, new.replayed_at) == (DeliveryStatus.DELIVERED, None)


def test_replaying_a_delivery_the_purge_took_meanwhile_says_so(endpoint, receiver, admin_user):
    delivery = _change(AccountFactory())
    deliveries_deliver_due()
    Delivery.objects.filter(pk=delivery.pk).delete()  # the retention purge, after the page read
    with pytest.raises(DeliveryGone, match="purged"):
        delivery_replay(delivery=delivery, actor=admin_user.email)


def test_a_committed_change_is_delivered_from_the_queue(
    endpoint, receiver, django_capture_on_commit_callbacks
):
    # The test settings run django-q2 tasks inline: the task runs when the change commits.
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        delivery = _change(AccountFactory())
    assert callbacks, "nothing was queued on commit"
    assert receiver.ids() == [delivery.webhook_id]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


def test_the_sweeper_schedule_is_ensured_once(db):
    delivery_schedule_ensure()
    delivery_schedule_ensure()
    [schedule] = Schedule.objects.filter(name="deliveries: sweeper")
    assert (schedule.func, schedule.minutes) == ("products.tasks.deliveries_deliver_due_task", 1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_deliverers_never_send_one_delivery_twice(settings):
    settings.JANITOR_DELIVERY_BATCH = 20
    # As if a delivery task were already queued: the commits below queue none (the test
    # settings would run it inline), so the three deliverers below find all the work.
    cache.set(KICK_KEY, "1", 300)
    receiver = Receiver(secret=endpoint_secret_generate(), delay=0.002).start()
    try:
        ProductEndpoint.objects.create(name="Shop", url=receiver.url, secret=receiver.secret)
        accounts = [AccountFactory() for _ in range(150)]
        for account in accounts:
            _change(account)
            _change(account)  # two versions each: the older must be superseded, never sent
        made = []
        errors = []

        def work():
            try:
                made.append(deliveries_deliver_due())
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        counts = Counter(receiver.ids())
        assert sum(made) == len(accounts)
        assert len(counts) == len(accounts)
        assert max(counts.values()) == 1, "a delivery was sent twice"
        assert all(r.verified for r in receiver.received)
        by_status = Counter(Delivery.objects.values_list("status", flat=True))
        assert by_status == {"delivered": len(accounts), "superseded": len(accounts)}
        delivered = set(Delivery.objects.filter(status="delivered").values_list("webhook_id"))
        assert {(w,) for w in counts} == delivered
        # Only each account's newest version went out.
        newest = {a.public_id: a.access_version for a in Account.objects.all()}
        got = {
            r.payload["data"]["account"]: r.payload["data"]["version"] for r in receiver.received
        }
        assert got == {a.public_id: newest[a.public_id] for a in accounts}
    finally:
        receiver.stop()


def test_one_transaction_of_many_changes_queues_one_task(
    endpoint, receiver, django_capture_on_commit_callbacks
):
    accounts = [AccountFactory() for _ in range(5)]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            for account in accounts:
                access_changed(account=account, event_type=AccessEvent.GRACE_STARTED)
    assert len(callbacks) == 1
    assert len(receiver.ids()) == 5


def test_a_kick_rolled_back_with_its_savepoint_is_registered_again(
    endpoint, receiver, django_capture_on_commit_callbacks
):
    kept, dropped = AccountFactory(), AccountFactory()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    access_changed(account=dropped, event_type=AccessEvent.GRACE_STARTED)
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass
            access_changed(account=kept, event_type=AccessEvent.GRACE_STARTED)
    assert len(callbacks) == 1
    [got] = receiver.received
    assert got.payload["data"]["account"] == kept.public_id


def test_a_lease_left_by_a_dead_worker_expires_and_the_event_goes_out(endpoint, receiver):
    delivery = _change(AccountFactory())
    expired = timezone.now() - timedelta(seconds=1)
    # Claimed by a worker that died before recording: its lease ran out a second ago.
    Delivery.objects.filter(pk=delivery.pk).update(leased_until=expired, next_attempt_at=expired)

    assert deliveries_deliver_due() == 1

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.leased_until is None
    assert receiver.ids() == [delivery.webhook_id]


def test_an_outcome_is_not_recorded_over_a_lease_the_worker_lost(endpoint, receiver):
    from products.services.delivery import _claim, _record, _send

    delivery = _change(AccountFactory())
    claim = _claim(now=timezone.now(), seen=set(), size=10)
    outcomes = _send(claim.claimed)
    # Meanwhile the lease expired and another worker claimed the delivery again.
    other_lease = claim.lease_until + timedelta(minutes=1)
    Delivery.objects.filter(pk=delivery.pk).update(leased_until=other_lease)

    _record(
        claimed=claim.claimed,
        outcomes=outcomes,
        lease_until=claim.lease_until,
        now=timezone.now(),
    )

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING  # the current holder records it
    assert delivery.leased_until == other_lease and delivery.attempts == 0
    # The POST did happen: it is on the record.
    assert DeliveryAttempt.objects.filter(delivery=delivery, status_code=200).count() == 1


# --- Retention ------------------------------------------------------------------------------

DAY = timedelta(days=1)


def _aged(endpoint, account, status, *, days=31, version=1, **fields) -> Delivery:
    """A delivery as it stands `days` after it was written."""
    return Delivery.objects.create(
        endpoint=endpoint,
        account=account,
        event_type=fields.pop("event_type", AccessEvent.GRACE_STARTED),
        payload={"type": "access.grace_started"},
        account_version=version,
        status=status,
        created_at=timezone.now() - days * DAY,
        **fields,
    )


def _purge():
    return deliveries_purge(older_than=timezone.now() - 30 * DAY, batch_size=2)


def _revocation(account, status) -> RevocationRequest:
    return RevocationRequest.objects.create(
        account=account, requested_by=StaffFactory(), reason="chargeback", status=status
    )


@pytest.mark.smoke
@pytest.mark.django_db
def test_retention_deletes_old_finished_deliveries_and_keeps_open_and_recent_ones():
    endpoint = ProductEndpoint.objects.create(name="Shop", url="http://127.0.0.1:9/hook")
    S = DeliveryStatus
    old_delivered = _aged(endpoint, AccountFactory(), S.DELIVERED)
    for code in (500, 200):
        DeliveryAttempt.objects.create(delivery=old_delivered, status_code=code)
    old_dead = _aged(endpoint, AccountFactory(), S.DEAD)
    DeliveryAttempt.objects.create(delivery=old_dead, error="connection refused")
    # Superseded by a newer one that is kept: the old one goes.
    newer = _aged(endpoint, AccountFactory(), S.DELIVERED, days=29, version=2)
    old_superseded = _aged(endpoint, newer.account, S.SUPERSEDED, version=1, superseded_by=newer)
    # The reverse: a kept one superseded by an old delivered one (the holder of a version
    # already delivered) keeps its row and loses the link.
    holder = _aged(endpoint, AccountFactory(), S.DELIVERED, version=5)
    kept_superseded = _aged(
        endpoint, holder.account, S.SUPERSEDED, days=29, version=4, superseded_by=holder
    )
    gone = [old_delivered, old_dead, old_superseded, holder]

    recent = _aged(endpoint, AccountFactory(), S.DELIVERED, days=29)
    old_pending = _aged(endpoint, AccountFactory(), S.PENDING)
    # Still retried after a replay; the version delivered beside it stays for the claim.
    old_failing = _aged(endpoint, AccountFactory(), S.FAILING, version=3)
    delivered_beside = _aged(endpoint, old_failing.account, S.DELIVERED, version=2)
    leased = _aged(endpoint, AccountFactory(), S.DELIVERED, leased_until=timezone.now() + DAY)
    # A revocation still running reads its access.sessions_revoke event; a finished one does not.
    waiting_account, done_account = AccountFactory(), AccountFactory()
    waited_for = _aged(endpoint, waiting_account, S.DEAD, event_type=AccessEvent.SESSIONS_REVOKE)
    SessionRevocation.objects.create(
        revocation=_revocation(waiting_account, RevocationStatus.APPROVED),
        endpoint=endpoint,
        delivery=waited_for,
    )
    finished_ask = _aged(
        endpoint, done_account, S.DELIVERED, event_type=AccessEvent.SESSIONS_REVOKE
    )
    finished_row = SessionRevocation.objects.create(
        revocation=_revocation(done_account, RevocationStatus.COMPLETED),
        endpoint=endpoint,
        delivery=finished_ask,
        confirmed_at=timezone.now() - 31 * DAY,
    )
    gone.append(finished_ask)
    kept = [
        newer,
        kept_superseded,
        recent,
        old_pending,
        old_failing,
        delivered_beside,
        leased,
        waited_for,
    ]

    assert _purge() == (len(gone), 3)

    assert not Delivery.objects.filter(pk__in=[d.pk for d in gone]).exists()
    assert set(Delivery.objects.values_list("pk", flat=True)) == {d.pk for d in kept}
    assert not DeliveryAttempt.objects.exists()
    kept_superseded.refresh_from_db()
    assert kept_superseded.status == S.SUPERSEDED and kept_superseded.superseded_by is None
    finished_row.refresh_from_db()
    assert finished_row.delivery is None and finished_row.confirmed_at is not None
    assert SessionRevocation.objects.get(delivery=waited_for)
    old_pending.refresh_from_db()
    assert old_pending.status == S.PENDING

    assert _purge() == (0, 0)  # idempotent
    assert Delivery.objects.count() == len(kept)


@pytest.mark.django_db
def test_a_purged_holder_does_not_let_an_old_version_out(endpoint, receiver):
    """Once the open event of an account and endpoint is done, its delivered siblings may go;
    until then they stay, so the claim still knows the version the product holds."""
    account = AccountFactory()
    _aged(endpoint, account, DeliveryStatus.DELIVERED, version=5)
    stale = _aged(endpoint, account, DeliveryStatus.PENDING, days=1, version=4)
    assert _purge() == (0, 0)

    assert deliveries_deliver_due() == 0
    stale.refresh_from_db()
    assert stale.status == DeliveryStatus.SUPERSEDED and receiver.received == []
    assert _purge() == (1, 0)  # the holder, now that nothing of the account is open
    assert Delivery.objects.filter(pk=stale.pk).exists()  # superseded a day ago: kept


@pytest.mark.parametrize(("threads", "timeout"), [(1, 1), (8, 10), (3, 2)])
def test_a_claim_holds_its_deliveries_longer_than_sending_them_all_can_take(
    endpoint, settings, threads, timeout
):
    """Each POST is bounded by the timeout, `threads` at once: a claim of n deliveries may take
    ceil(n / threads) timeouts to send. A lease shorter than that ran out mid-batch against a
    slow endpoint: another worker claimed rows still in flight (an older version then reached
    the product after a newer one) and the first worker's outcomes were dropped."""
    from products.services.delivery import _claim

    settings.JANITOR_DELIVERY_THREADS = threads
    settings.JANITOR_DELIVERY_TIMEOUT_SECONDS = timeout
    for _ in range(36):
        _change(AccountFactory())
    now = timezone.now()

    claim = _claim(now=now, seen=set(), size=100)

    assert len(claim.claimed) == 36
    worst = -(-36 // threads) * timeout
    assert (claim.lease_until - now).total_seconds() > worst


@pytest.mark.parametrize(
    ("status", "sent"),
    [
        (AccessStatus.REVOKED_PENDING, True),
        (AccessStatus.REVOKED, True),
        (AccessStatus.ACTIVE, False),
        (AccessStatus.GRACE_PERIOD, False),
    ],
)
def test_a_sessions_revoke_goes_out_only_while_the_account_is_blocked_or_revoked(
    endpoint, receiver, status, sent
):
    """A session revocation can wait days (failing, or its endpoint disabled). If the account
    has its access back by then (the revocation abandoned, access restored), sending it would
    end the sessions of people who may sign in: it is closed unsent instead."""
    account = AccountFactory(access_status=AccessStatus.REVOKED_PENDING)
    with transaction.atomic():
        [revoke] = deliveries_create(
            account=account,
            event_type=AccessEvent.SESSIONS_REVOKE,
            extra={"revocation": 1, "members": []},
        )
    extra = {"grace_ends_at": timezone.now() + timedelta(days=3)}
    Account.objects.filter(pk=account.pk).update(
        access_status=status,
        is_active=status != AccessStatus.REVOKED,
        **(extra if status == AccessStatus.GRACE_PERIOD else {}),
    )

    deliveries_deliver_due()

    revoke.refresh_from_db()
    if sent:
        assert revoke.status == DeliveryStatus.DELIVERED
        assert receiver.ids() == [revoke.webhook_id]
    else:
        assert revoke.status == DeliveryStatus.SUPERSEDED
        assert "access was given back" in revoke.last_error
        assert receiver.received == []


def test_rows_a_call_already_tried_do_not_hide_the_due_ones_behind_them(endpoint):
    """A claim of 2 whose first two due rows were tried by this call already still finds the
    third: they are left out by the query, not after its limit."""
    from products.services.delivery import _claim

    tried = [_change(AccountFactory()) for _ in range(2)]
    waiting = _change(AccountFactory())

    claim = _claim(now=timezone.now(), seen={d.pk for d in tried}, size=2)

    assert [d.id for d in claim.claimed] == [waiting.pk]
