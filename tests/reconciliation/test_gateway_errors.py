"""Provider errors as Stripe sends them, each answered by the fake over HTTP."""

from __future__ import annotations

import time

import pytest

from reconciliation import gateway
from reconciliation.gateway import GatewayAuthError, GatewayError, GatewayNotFound
from sandbox.stripe_fake import StripeFake

PDF = b"%PDF-1.4\n% retry\n"


@pytest.fixture
def retrying(settings, stripe_fake):
    settings.STRIPE_MAX_NETWORK_RETRIES = 4
    settings.STRIPE_RETRY_BASE_SECONDS = 0.01
    settings.STRIPE_RETRY_MAX_WAIT_SECONDS = 5
    return stripe_fake


@pytest.mark.parametrize("code", ["rate_limit", "lock_timeout"])
def test_a_429_is_retried_on_retrieves(retrying: StripeFake, code) -> None:
    retrying.add_customer("cus_busy")
    retrying.fail("/v1/customers", status=429, times=2, code=code)

    assert gateway.customer_retrieve(customer_id="cus_busy")["id"] == "cus_busy"

    assert [r.status for r in retrying.requests] == [429, 429, 200]


def test_a_429_is_retried_on_listings_mid_way(retrying: StripeFake) -> None:
    retrying.add_subscriptions_bulk(150)
    retrying.fail("/v1/subscriptions", status=429, times=1, after=1)

    pages = list(gateway.subscription_pages())

    assert [len(page) for page in pages] == [100, 50]
    assert [r.status for r in retrying.requests] == [200, 429, 200]
    # The retry asked for the same page again, not the first one.
    assert (
        retrying.requests[2].query["starting_after"] == retrying.requests[1].query["starting_after"]
    )


def test_uploads_and_evidence_updates_are_retried_with_one_idempotency_key(
    retrying: StripeFake,
) -> None:
    dispute = retrying.add_dispute()
    retrying.fail("/v1/files", status=429, times=1)
    retrying.fail(f"/v1/disputes/{dispute['id']}", status=503, times=1)

    file_id = gateway.file_upload(content=PDF, filename="evidence.pdf")
    gateway.dispute_evidence_update(
        dispute_id=dispute["id"], evidence={"uncategorized_file": file_id}, submit=False
    )

    uploads = retrying.requests_to("/v1/files", "POST")
    updates = retrying.requests_to("/v1/disputes", "POST")
    assert [r.status for r in uploads] == [429, 200]
    assert [r.status for r in updates] == [503, 200]
    for tries in (uploads, updates):
        keys = {r.headers.get("Idempotency-Key") for r in tries}
        assert len(keys) == 1 and None not in keys
    assert retrying.disputes[dispute["id"]]["evidence"]["uncategorized_file"] == file_id


def test_stripe_should_retry_false_is_not_retried(retrying: StripeFake) -> None:
    retrying.fail("/v1/customers", status=429, times=1, should_retry=False)

    with pytest.raises(GatewayError) as failure:
        gateway.customer_retrieve(customer_id="cus_any")

    assert (failure.value.retryable, failure.value.status) == (False, 429)
    assert len(retrying.requests) == 1


def test_stripe_should_retry_true_retries_a_409(retrying: StripeFake) -> None:
    retrying.add_customer("cus_locked")
    retrying.fail("/v1/customers", status=409, times=1, should_retry=True)

    assert gateway.customer_retrieve(customer_id="cus_locked")["id"] == "cus_locked"
    assert [r.status for r in retrying.requests] == [409, 200]


def test_backoff_grows_with_jitter_and_the_total_wait_is_bounded(
    retrying: StripeFake, settings, monkeypatch
) -> None:
    settings.STRIPE_MAX_NETWORK_RETRIES = 50
    settings.STRIPE_RETRY_BASE_SECONDS = 0.5
    settings.STRIPE_RETRY_MAX_WAIT_SECONDS = 12
    settings.JANITOR_STRIPE_MAX_RPS = 1_000_000
    # A rate 429's wait is the shared rate's pause (every caller waits it), not a sleep of the
    # call's own: the pauses are what is recorded. (Recording time.sleep instead, with no time
    # passing, let one pause carry into the next try's slot: 12.09 s "slept" once in CI.)
    pauses: list[float] = []
    slept: list[float] = []
    monkeypatch.setattr(
        gateway._RATE, "slow_down", lambda *, pause, sent_at=None: pauses.append(pause)
    )
    monkeypatch.setattr(gateway.time, "sleep", slept.append)
    retrying.fail("/v1/customers", status=429, times=100)

    with pytest.raises(GatewayError) as failure:
        gateway.customer_retrieve(customer_id="cus_any")

    assert failure.value.retryable and failure.value.status == 429
    # Every refused try slowed the rate; all but the last were waited out and tried again.
    assert len(retrying.requests) == len(pauses)
    assert sum(pauses[:-1]) <= 12 < sum(pauses)
    assert slept == []
    # Doubling from 0.5 s, each step between half and all of its nominal value, capped at 5 s.
    steps = [min(0.5 * 2**attempt, 5.0) for attempt in range(len(pauses))]
    for step, delay in zip(steps, pauses, strict=True):
        assert step / 2 <= delay <= step
    # Jittered: each try waits its own share of its step (a fixed share, half or all of every
    # step, would repeat one fraction).
    shares = {round(delay / step, 9) for step, delay in zip(steps, pauses, strict=True)}
    assert len(shares) == len(pauses)


def test_5xx_and_connection_failures_are_retried(retrying: StripeFake, settings) -> None:
    settings.STRIPE_TIMEOUT_SECONDS = 0.3
    retrying.add_customer("cus_flaky")
    retrying.fail("/v1/customers", status=502, times=1)
    retrying.delay("/v1/customers", seconds=1, times=1)

    assert gateway.customer_retrieve(customer_id="cus_flaky")["id"] == "cus_flaky"
    # The held request timed out on our side (its answer came too late), then a 502, then 200.
    assert [r.status for r in retrying.requests][-2:] == [502, 200]
    assert len(retrying.requests) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_fail_at_once_naming_the_key(retrying: StripeFake, status) -> None:
    retrying.fail("/v1/subscriptions", status=status, times=10)

    started = time.monotonic()
    with pytest.raises(GatewayAuthError) as failure:
        list(gateway.subscription_pages())

    assert time.monotonic() - started < 1
    assert len(retrying.requests) == 1
    assert (failure.value.retryable, failure.value.status) == (False, status)
    assert "STRIPE_API_KEY" in str(failure.value)
    if status == 403:
        assert "rak_subscriptions_read" in str(failure.value)


def test_404_is_its_own_error_and_not_retried(retrying: StripeFake) -> None:
    with pytest.raises(GatewayNotFound) as failure:
        gateway.charge_retrieve(charge_id="ch_gone")

    assert (failure.value.status, failure.value.code) == (404, "resource_missing")
    assert len(retrying.requests) == 1


def test_a_slot_handed_out_before_a_pause_waits_for_the_pause(settings) -> None:
    """A reader thread that held a slot when another request was refused (429) sent during
    the pause anyway, filling the server's window again, so the retried request was refused a
    second time (found in review). It takes a new slot after the pause; and a request sent
    before the pause began, refused by the same crowding, does not halve the rate again."""
    import threading
    import time

    settings.JANITOR_STRIPE_MAX_RPS = 2
    rate = gateway._RequestRate()
    rate.acquire()  # the first slot, now; the next one is half a second away
    sent: list[float] = []
    waiting = threading.Thread(target=lambda: sent.append(rate.acquire()))
    waiting.start()
    time.sleep(0.1)
    paused_at = time.monotonic()
    rate.slow_down(pause=1.0, sent_at=paused_at - 0.05)
    waiting.join(timeout=5)
    assert sent and sent[0] >= paused_at + 1.0, sent[0] - paused_at
    share = rate._share
    rate.slow_down(pause=0.1, sent_at=paused_at - 0.01)  # sent before that pause began
    assert rate._share == share
