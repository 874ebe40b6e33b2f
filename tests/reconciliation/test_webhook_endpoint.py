"""POST /webhooks/stripe/: real signed bodies to the real URL; store once, then 200."""

import json
import time

import pytest
from django.db import connection
from django.urls import reverse

from reconciliation.models import Subscription, WebhookAttempt, WebhookEvent, WebhookStatus
from reconciliation.selectors.webhooks import webhook_rejections
from sandbox.signing import stripe_signature_header
from tests.factories import AccountFactory
from tests.reconciliation.webhook_support import (
    OLD_SECRET,
    SECRET,
    body_for,
    post_signed,
    rejections_reset,
    sub_obj,
)


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET, OLD_SECRET]
    rejections_reset()


def _rejected(kind: str) -> int:
    return webhook_rejections()["by_kind"][kind]


@pytest.mark.smoke
@pytest.mark.django_db
def test_valid_event_is_stored_then_processed(client, django_capture_on_commit_callbacks):
    account = AccountFactory(stripe_customer_id="cus_valid")
    body = body_for(
        "customer.subscription.created", sub_obj("sub_valid", "cus_valid"), id="evt_valid"
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_signed(client, body)
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    assert len(callbacks) == 1  # processing is enqueued after the commit, not in the request
    event = WebhookEvent.objects.get(provider_event_id="evt_valid")
    assert event.status == WebhookStatus.PROCESSED
    assert event.customer_id == "cus_valid"
    assert event.source == "webhook"
    assert event.payload == json.loads(body)
    mirror = Subscription.objects.get(provider_id="sub_valid")
    assert (mirror.status, mirror.account) == ("active", account)


@pytest.mark.smoke
@pytest.mark.django_db
def test_duplicate_deliveries_answer_200_and_change_nothing(
    client, django_capture_on_commit_callbacks
):
    AccountFactory(stripe_customer_id="cus_dup")
    body = body_for("customer.subscription.created", sub_obj("sub_dup", "cus_dup"), id="evt_dup")
    with django_capture_on_commit_callbacks(execute=True) as first:
        assert post_signed(client, body).json()["duplicate"] is False
    assert len(first) == 1
    processed = WebhookEvent.objects.get(provider_event_id="evt_dup")
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True) as again:
            response = post_signed(client, body)
        assert response.status_code == 200
        assert response.json()["duplicate"] is True
        assert again == []  # nothing enqueued for a duplicate
    assert WebhookEvent.objects.count() == 1
    event = WebhookEvent.objects.get()
    assert (event.status, event.attempts, event.received_at) == (
        WebhookStatus.PROCESSED,
        1,
        processed.received_at,
    )
    assert WebhookAttempt.objects.count() == 1


@pytest.mark.django_db
def test_rotated_secret_still_verifies(client):
    body = body_for("customer.subscription.created", sub_obj("sub_rot", "cus_rot"), id="evt_rot")
    assert post_signed(client, body, secret=OLD_SECRET).status_code == 200
    assert WebhookEvent.objects.filter(provider_event_id="evt_rot").exists()


@pytest.mark.smoke
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mutate", "reason", "kind"),
    [
        ("wrong_secret", "no signature matched", "signature"),
        ("altered", "no signature matched", "signature"),
        ("stale", "timestamp outside tolerance", "stale"),
        ("future", "timestamp in the future", "stale"),
        ("missing", "missing Stripe-Signature header", "signature"),
        ("garbage_header", "malformed header", "signature"),
    ],
)
def test_bad_signatures_are_refused_with_a_reason(client, mutate, reason, kind):
    body = body_for("customer.subscription.created", sub_obj("sub_bad", "cus_bad"), id="evt_bad")
    signed_at = int(time.time()) + {"stale": -301, "future": 360}.get(mutate, 0)
    header = stripe_signature_header(
        body, "whsec_someone_else" if mutate == "wrong_secret" else SECRET, signed_at
    )
    if mutate == "altered":
        body = body.replace(b'"active"', b'"canceled"')
    if mutate == "missing":
        response = client.post(reverse("stripe_webhook"), body, content_type="application/json")
    else:
        if mutate == "garbage_header":
            header = "nonsense"
        response = post_signed(client, body, header=header)
    assert response.status_code == 400
    assert response.content.decode() == reason
    assert not WebhookEvent.objects.exists()
    assert _rejected(kind) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"id": "evt_x", "type": ', "body is not JSON"),
        (b'{"object": "event", "type": "invoice.paid"}', "body is not a Stripe event"),
        (b'{"object": "event", "id": "evt_no_type"}', "body is not a Stripe event"),
        (b'["not", "an", "event"]', "body is not a Stripe event"),
    ],
)
def test_signed_but_unusable_bodies_are_refused(client, body, reason):
    response = post_signed(client, body)
    assert response.status_code == 400
    assert response.content.decode() == reason
    assert not WebhookEvent.objects.exists()
    assert _rejected("payload") == 1


@pytest.mark.django_db
def test_event_without_created_time_is_refused(client):
    body = json.dumps({"object": "event", "id": "evt_nc", "type": "invoice.paid"}).encode()
    response = post_signed(client, body)
    assert response.status_code == 400
    assert "created" in response.content.decode()
    assert not WebhookEvent.objects.exists()


@pytest.mark.smoke
@pytest.mark.django_db
def test_oversized_body_is_refused_by_declared_length(client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 2048
    obj = sub_obj("sub_big", "cus_big", metadata={"pad": "x" * 4000})
    body = body_for("customer.subscription.created", obj, id="evt_big")
    response = post_signed(client, body)
    assert response.status_code == 413
    assert not WebhookEvent.objects.exists()
    assert _rejected("too_large") == 1


@pytest.mark.django_db
def test_oversized_body_is_refused_even_when_the_header_lies(rf, settings):
    from reconciliation.views.webhooks import stripe_webhook

    settings.WEBHOOK_MAX_BODY_BYTES = 2048
    body = body_for(
        "customer.subscription.created",
        sub_obj("sub_lie", "cus_lie", metadata={"pad": "y" * 4000}),
        id="evt_lie",
    )
    request = rf.post(
        reverse("stripe_webhook"),
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": stripe_signature_header(body, SECRET)},
    )
    # A client that under-declares is cut at the limit + 1 byte, not trusted.
    request.META["CONTENT_LENGTH"] = "100"
    response = stripe_webhook(request)
    assert response.status_code == 413
    assert not WebhookEvent.objects.exists()


@pytest.mark.smoke
@pytest.mark.django_db
def test_unknown_type_is_stored_and_ignored(client, django_capture_on_commit_callbacks):
    body = body_for("balance.available", {"object": "balance", "available": []}, id="evt_bal")
    with django_capture_on_commit_callbacks(execute=True):
        assert post_signed(client, body).status_code == 200
    event = WebhookEvent.objects.get(provider_event_id="evt_bal")
    assert event.status == WebhookStatus.IGNORED
    assert event.processed_at is not None


@pytest.mark.django_db
def test_get_is_not_allowed(client):
    assert client.get(reverse("stripe_webhook")).status_code == 405


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_database_down_answers_503_so_stripe_retries(client):
    body = body_for("customer.subscription.created", sub_obj("sub_db", "cus_db"), id="evt_db")
    original_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"  # nothing listens there: connecting fails
    try:
        response = post_signed(client, body)
    finally:
        connection.close()
        connection.settings_dict["PORT"] = original_port
    assert response.status_code == 503
    assert response["Retry-After"]
    assert not WebhookEvent.objects.filter(provider_event_id="evt_db").exists()
    # Stripe's retry, once the database is back, is stored normally.
    assert post_signed(client, body).status_code == 200
    assert WebhookEvent.objects.filter(provider_event_id="evt_db").exists()
