"""The Stripe gateway, driving the real SDK over HTTP against the local StripeFake."""

from __future__ import annotations

import json
import time

import pytest

from reconciliation import gateway
from reconciliation.gateway import GatewayError, WebhookPayloadInvalid, WebhookSignatureInvalid
from sandbox.signing import event_payload, stripe_signature_header
from sandbox.stripe_fake import MAX_FILE_BYTES, StripeFake

SECRET = "whsec_current"
OLD_SECRET = "whsec_previous"
PDF = b"%PDF-1.7\n% evidence\n"


# --- Subscriptions --------------------------------------------------------------------------


def test_subscription_pages_walks_all_pages_including_canceled(stripe_fake: StripeFake) -> None:
    customer = stripe_fake.add_customer(email="a@example.test")
    added = [
        stripe_fake.add_subscription(
            customer=customer["id"], status="canceled" if i % 10 == 0 else "active"
        )["id"]
        for i in range(250)
    ]

    pages = list(gateway.subscription_pages())

    assert [len(page) for page in pages] == [100, 100, 50]
    listed = [sub["id"] for page in pages for sub in page]
    assert sorted(listed) == sorted(added)
    assert sum(sub["status"] == "canceled" for page in pages for sub in page) == 25
    sent = stripe_fake.requests_to("/v1/subscriptions")
    assert [r.query.get("status") for r in sent] == ["all"] * 3
    assert [r.query.get("starting_after") for r in sent] == [None, listed[99], listed[199]]
    assert sent[0].headers["Authorization"] == "Bearer sk_test_fake"


def test_subscription_pages_sends_created_gte(stripe_fake: StripeFake) -> None:
    customer = stripe_fake.add_customer()["id"]
    stripe_fake.add_subscription(customer=customer, created=1_700_000_000)
    recent = stripe_fake.add_subscription(customer=customer, created=1_700_000_500)

    pages = list(gateway.subscription_pages(created_gte=1_700_000_100, status="active"))

    assert [[sub["id"] for sub in page] for page in pages] == [[recent["id"]]]
    assert stripe_fake.requests[0].query["created[gte]"] == "1700000100"


def test_subscription_pages_returns_plain_python(stripe_fake: StripeFake) -> None:
    stripe_fake.add_subscription(customer=stripe_fake.add_customer()["id"], amount=4200)

    (page,) = list(gateway.subscription_pages())

    item = page[0]["items"]["data"][0]
    assert type(page[0]) is dict and type(item) is dict
    assert item["price"]["unit_amount"] == 4200
    assert json.loads(json.dumps(page)) == page


def test_failure_on_second_page_raises_after_first_page(stripe_fake: StripeFake) -> None:
    customer = stripe_fake.add_customer()["id"]
    for _ in range(250):
        stripe_fake.add_subscription(customer=customer)
    stripe_fake.fail("/v1/subscriptions", status=500, after=1)

    pages = gateway.subscription_pages()
    first = next(pages)
    with pytest.raises(GatewayError) as failure:
        next(pages)

    assert len(first) == 100
    assert failure.value.retryable is True
    assert failure.value.status == 500
    assert [r.status for r in stripe_fake.requests] == [200, 500]


def test_rate_limit_is_retryable(stripe_fake: StripeFake) -> None:
    stripe_fake.fail("/v1/subscriptions", status=429)

    with pytest.raises(GatewayError) as failure:
        list(gateway.subscription_pages())

    assert (failure.value.retryable, failure.value.status) == (True, 429)


def test_missing_subscription_is_not_retryable(stripe_fake: StripeFake) -> None:
    with pytest.raises(GatewayError) as failure:
        gateway.subscription_retrieve(provider_id="sub_missing")

    assert failure.value.retryable is False
    assert failure.value.status == 404
    assert failure.value.code == "resource_missing"


def test_rejected_api_key_is_not_retryable(stripe_fake: StripeFake) -> None:
    stripe_fake.api_key = "sk_test_other"

    with pytest.raises(GatewayError) as failure:
        gateway.customer_retrieve(customer_id="cus_any")

    assert (failure.value.retryable, failure.value.status) == (False, 401)


def test_timeout_is_retryable(stripe_fake: StripeFake, settings) -> None:
    settings.STRIPE_TIMEOUT_SECONDS = 0.3
    stripe_fake.delay("/v1/customers", seconds=2)

    started = time.monotonic()
    with pytest.raises(GatewayError) as failure:
        gateway.customer_retrieve(customer_id="cus_slow")

    assert time.monotonic() - started < 1.5
    assert (failure.value.retryable, failure.value.status) == (True, None)


def test_network_retries_come_from_settings(stripe_fake: StripeFake, settings) -> None:
    settings.STRIPE_MAX_NETWORK_RETRIES = 1
    customer = stripe_fake.add_customer()
    subscription = stripe_fake.add_subscription(customer=customer["id"])
    stripe_fake.fail("/v1/subscriptions", status=503)

    retrieved = gateway.subscription_retrieve(provider_id=subscription["id"])

    assert retrieved["id"] == subscription["id"]
    assert [r.status for r in stripe_fake.requests] == [503, 200]


def test_subscription_retrieve_passes_legacy_shape_through(stripe_fake: StripeFake) -> None:
    customer = stripe_fake.add_customer()["id"]
    legacy = stripe_fake.add_subscription(
        customer=customer, legacy_shape=True, current_period_end=1_800_000_000
    )

    retrieved = gateway.subscription_retrieve(provider_id=legacy["id"])

    assert retrieved["plan"]["amount"] == 1500
    assert retrieved["current_period_end"] == 1_800_000_000
    assert "current_period_end" not in retrieved["items"]["data"][0]


def test_customer_retrieve(stripe_fake: StripeFake) -> None:
    stripe_fake.add_customer("cus_ada", email="ada@example.test", metadata={"app_user": "7"})

    customer = gateway.customer_retrieve(customer_id="cus_ada")

    assert (customer["email"], customer["metadata"]) == ("ada@example.test", {"app_user": "7"})


def test_bulk_subscriptions_list_and_resolve(stripe_fake: StripeFake) -> None:
    stripe_fake.add_subscriptions_bulk(1_000, status_cycle=("active", "canceled"))
    stripe_fake.set_subscription_status("sub_bench_0000002", "past_due")

    pages = list(gateway.subscription_pages(status="active"))

    assert [len(page) for page in pages] == [100, 100, 100, 100, 99]
    assert pages[0][0]["id"] == "sub_bench_0000998"  # newest first
    assert gateway.subscription_retrieve(provider_id="sub_bench_0000002")["status"] == "past_due"
    customer = gateway.customer_retrieve(customer_id="cus_bench_0000002")
    assert customer["email"] == "cus_bench_0000002@example.test"


# --- Webhook signatures ---------------------------------------------------------------------


def _signed(payload: bytes, secret: str = SECRET, **kwargs) -> str:
    return stripe_signature_header(payload, secret, **kwargs)


def test_verify_accepts_valid_signature() -> None:
    payload = event_payload("customer.subscription.updated", {"id": "sub_1"}, id="evt_1")

    event = gateway.webhook_event_verify(
        payload=payload, sig_header=_signed(payload), secrets=[SECRET]
    )

    assert (event["id"], event["data"]["object"]["id"]) == ("evt_1", "sub_1")


def test_verify_accepts_when_second_secret_matches() -> None:
    payload = event_payload("invoice.paid", {"id": "in_1"})

    event = gateway.webhook_event_verify(
        payload=payload, sig_header=_signed(payload, OLD_SECRET), secrets=[SECRET, OLD_SECRET]
    )

    assert event["type"] == "invoice.paid"


def test_verify_accepts_any_of_several_v1_signatures() -> None:
    payload = event_payload("invoice.paid", {"id": "in_1"})
    header = _signed(payload, OLD_SECRET, extra_signatures=["00" * 32])

    event = gateway.webhook_event_verify(payload=payload, sig_header=header, secrets=[OLD_SECRET])

    assert event["data"]["object"]["id"] == "in_1"


@pytest.mark.parametrize(
    ("body", "secret", "age", "reason"),
    [
        (b'{"id": "evt_2"}', SECRET, 0, "no signature matched"),  # altered body
        (None, "whsec_wrong", 0, "no signature matched"),
        (None, SECRET, 301, "timestamp outside tolerance"),
        (None, SECRET, -360, "timestamp in the future"),
        (None, OLD_SECRET, -3600, "timestamp in the future"),
    ],
    ids=["altered-body", "wrong-secret", "stale", "future", "future-old-secret"],
)
def test_verify_rejects(body: bytes | None, secret: str, age: int, reason: str) -> None:
    payload = event_payload("invoice.paid", {"id": "in_1"}, id="evt_1")
    header = _signed(payload, secret, timestamp=int(time.time()) - age)

    with pytest.raises(WebhookSignatureInvalid) as rejected:
        gateway.webhook_event_verify(
            payload=body or payload, sig_header=header, secrets=[SECRET, OLD_SECRET]
        )

    assert rejected.value.reason == reason


@pytest.mark.parametrize(("ahead", "accepted"), [(0, True), (360, False)])
def test_verify_reads_the_timestamp_as_the_sdk_does(ahead: int, accepted: bool) -> None:
    """`t=<ts>=junk` passes the SDK (it splits each item at two `=`): the future check must
    read the same <ts>, not fail on the rest (found in review: it raised ValueError, a 500)."""
    payload = event_payload("invoice.paid", {"id": "in_1"})
    signed = _signed(payload, SECRET, timestamp=int(time.time()) + ahead)
    timestamp, signature = signed.split(",", 1)
    header = f"{timestamp}=junk,{signature}"

    if accepted:
        event = gateway.webhook_event_verify(payload=payload, sig_header=header, secrets=[SECRET])
        assert event["data"]["object"]["id"] == "in_1"
    else:
        with pytest.raises(WebhookSignatureInvalid) as rejected:
            gateway.webhook_event_verify(payload=payload, sig_header=header, secrets=[SECRET])
        assert rejected.value.reason == "timestamp in the future"


def test_verify_allows_a_clock_a_little_ahead() -> None:
    payload = event_payload("invoice.paid", {"id": "in_1"})
    header = _signed(payload, SECRET, timestamp=int(time.time()) + 290)

    event = gateway.webhook_event_verify(payload=payload, sig_header=header, secrets=[SECRET])

    assert event["data"]["object"]["id"] == "in_1"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Stripe-Signature header"),
        ("", "missing Stripe-Signature header"),
        ("v1=abc", "malformed header"),
        (f"t={int(time.time())},v0=abc", "no v1 signature in header"),
    ],
)
def test_verify_rejects_bad_headers(header: str | None, reason: str) -> None:
    with pytest.raises(WebhookSignatureInvalid) as rejected:
        gateway.webhook_event_verify(payload=b"{}", sig_header=header, secrets=[SECRET])

    assert rejected.value.reason == reason


def test_verify_rejects_when_no_secret_is_configured() -> None:
    payload = event_payload("invoice.paid", {"id": "in_1"})

    with pytest.raises(WebhookSignatureInvalid) as rejected:
        gateway.webhook_event_verify(payload=payload, sig_header=_signed(payload), secrets=[""])

    assert rejected.value.reason == "no webhook secret configured"


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", json.dumps({"id": "x"}).encode()])
def test_verify_rejects_signed_non_event(payload: bytes) -> None:
    with pytest.raises(WebhookPayloadInvalid):
        gateway.webhook_event_verify(payload=payload, sig_header=_signed(payload), secrets=[SECRET])


# --- Events ---------------------------------------------------------------------------------


def test_event_pages_newest_first_since_created(stripe_fake: StripeFake) -> None:
    base = 1_700_000_000
    for offset in range(150):
        stripe_fake.add_event("invoice.paid", {"id": f"in_{offset}"}, created=base + offset)

    pages = list(gateway.event_pages(created_gte=base + 20))

    assert [len(page) for page in pages] == [100, 30]
    created = [event["created"] for page in pages for event in page]
    assert created == list(range(base + 149, base + 19, -1))
    assert stripe_fake.requests[0].query["created[gte]"] == str(base + 20)


def test_event_pages_filters_types(stripe_fake: StripeFake) -> None:
    stripe_fake.add_event("invoice.paid", {"id": "in_1"})
    wanted = stripe_fake.add_event("customer.subscription.deleted", {"id": "sub_1"})
    stripe_fake.add_event("charge.refunded", {"id": "ch_1"})

    pages = list(gateway.event_pages(types=["customer.subscription.deleted", "customer.deleted"]))

    assert [[event["id"] for event in page] for page in pages] == [[wanted["id"]]]
    assert stripe_fake.requests[0].query["types[1]"] == "customer.deleted"


def test_event_retrieve(stripe_fake: StripeFake) -> None:
    event = stripe_fake.add_event("customer.deleted", {"id": "cus_1", "object": "customer"})

    retrieved = gateway.event_retrieve(event_id=event["id"])

    assert retrieved == event


# --- Disputes and files ---------------------------------------------------------------------


def test_dispute_evidence_staged_without_submitting(stripe_fake: StripeFake) -> None:
    dispute = stripe_fake.add_dispute("dp_1")
    evidence = {"access_activity_log": "2025-01-02 10:00 UTC 203.0.113.9", "customer_name": "Ada"}

    updated = gateway.dispute_evidence_update(dispute_id="dp_1", evidence=evidence, submit=False)

    (sent,) = stripe_fake.requests_to("/v1/disputes/dp_1", method="POST")
    assert sent.form["submit"] == "false"
    assert sent.form["evidence[access_activity_log]"] == evidence["access_activity_log"]
    assert sent.form["evidence[customer_name]"] == "Ada"
    assert updated["evidence"]["customer_name"] == "Ada"
    assert updated["evidence_details"]["submission_count"] == 0
    assert stripe_fake.disputes["dp_1"]["status"] == dispute["status"] == "needs_response"


def test_dispute_evidence_submitted_once(stripe_fake: StripeFake) -> None:
    stripe_fake.add_dispute("dp_1")

    submitted = gateway.dispute_evidence_update(
        dispute_id="dp_1", evidence={"uncategorized_text": "see log"}, submit=True
    )
    with pytest.raises(GatewayError) as again:
        gateway.dispute_evidence_update(dispute_id="dp_1", evidence={}, submit=True)

    assert submitted["status"] == "under_review"
    assert submitted["evidence_details"]["submission_count"] == 1
    assert (again.value.status, again.value.retryable) == (400, False)


def test_dispute_evidence_refused_past_due(stripe_fake: StripeFake) -> None:
    stripe_fake.add_dispute("dp_late", due_by=int(time.time()) - 60)

    with pytest.raises(GatewayError) as refused:
        gateway.dispute_evidence_update(
            dispute_id="dp_late", evidence={"customer_name": "Ada"}, submit=False
        )

    assert refused.value.status == 400
    assert gateway.dispute_retrieve(dispute_id="dp_late")["evidence"]["customer_name"] is None


def test_file_upload_returns_id(stripe_fake: StripeFake) -> None:
    file_id = gateway.file_upload(content=PDF, filename="access-log")

    (sent,) = stripe_fake.requests_to("/v1/files")
    assert file_id.startswith("file_")
    assert sent.form["purpose"] == "dispute_evidence"
    assert sent.form["file"] == "access-log.pdf"
    assert stripe_fake.file_contents[file_id] == PDF
    assert stripe_fake.files[file_id]["type"] == "pdf"


def test_uploaded_file_can_back_evidence(stripe_fake: StripeFake) -> None:
    stripe_fake.add_dispute("dp_1")
    file_id = gateway.file_upload(content=PDF, filename="log.pdf")

    updated = gateway.dispute_evidence_update(
        dispute_id="dp_1", evidence={"service_documentation": file_id}, submit=False
    )

    assert updated["evidence"]["service_documentation"] == file_id


def test_file_upload_over_limit_is_refused(stripe_fake: StripeFake) -> None:
    with pytest.raises(GatewayError) as refused:
        gateway.file_upload(content=PDF + b"0" * MAX_FILE_BYTES, filename="big.pdf")

    assert (refused.value.status, refused.value.retryable) == (400, False)
    assert stripe_fake.files == {}


def test_file_upload_refuses_unsupported_type() -> None:
    with pytest.raises(ValueError):
        gateway.file_upload(content=b"GIF89a", filename="x.gif", mime_type="image/gif")
