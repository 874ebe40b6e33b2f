"""The fake against Stripe's own fixtures: every object it serves has Stripe's shape."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from reconciliation.models import SubscriptionStatus
from sandbox import stripe_fake as fake_module
from sandbox.fixtures import fixture_versions, stripe_fixture
from sandbox.stripe_fake import LEGACY_API_VERSION, TEST_API_KEY, StripeFake
from tests.fakes.contract import contract_violations, list_envelope_violations

RESOURCES = (
    "subscription",
    "customer",
    "charge",
    "dispute",
    "invoice",
    "invoice_payment",
    "payment_intent",
    "event",
    "file",
    "billing_portal.session",
)
# The builder in stripe_fake.py behind each resource: the contract fails if one drops a key.
BUILDERS = {
    "subscription": "subscription_object",
    "customer": "customer_object",
    "charge": "charge_object",
    "dispute": "dispute_object",
    "invoice": "invoice_object",
    "invoice_payment": "invoice_payment_object",
    "payment_intent": "payment_intent_object",
    "event": "event_object",
    "file": "file_object",
    "billing_portal.session": "billing_portal_session_object",
}
PDF = b"%PDF-1.4\n% contract\n"


def _call(fake: StripeFake, method: str, path: str, body: bytes | None = None, **headers):
    request = urllib.request.Request(
        fake.base_url + path,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {TEST_API_KEY}", **headers},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _upload(fake: StripeFake) -> dict[str, Any]:
    boundary = "contractboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
            f'dispute_evidence\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="evidence.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode()
        + PDF
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return _call(
        fake,
        "POST",
        "/v1/files",
        body,
        **{"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


def served_objects(fake: StripeFake) -> tuple[dict[str, list[dict]], list[dict]]:
    """Every kind of object the fake serves, fetched over HTTP: (by resource, list answers)."""
    now = int(time.time())
    fake.add_customer("cus_contract", email="contract@example.test")
    fake.add_subscription("sub_contract", customer="cus_contract")
    fake.add_subscriptions_bulk(3)
    paid = fake.add_paid_invoice(
        customer="cus_contract",
        subscription="sub_contract",
        period_start=now - 30 * 86_400,
        period_end=now,
    )
    charge = paid["charge"]
    fake.add_dispute("dp_contract", charge=charge["id"], payment_intent=charge["payment_intent"])
    fake.add_charge("ch_guest", customer=None)
    fake.add_event("customer.subscription.created", fake.subscription("sub_contract"))
    lists = [
        _call(fake, "GET", "/v1/subscriptions?status=all&limit=2"),
        _call(fake, "GET", "/v1/events?limit=5"),
        _call(fake, "GET", f"/v1/invoice_payments?invoice={paid['invoice']['id']}"),
    ]
    dispute = _call(fake, "GET", "/v1/disputes/dp_contract")
    expanded = _call(fake, "GET", "/v1/disputes/dp_contract?expand[0]=charge")
    staged = _call(
        fake,
        "POST",
        "/v1/disputes/dp_contract",
        b"submit=false&evidence[customer_email_address]=a%40example.test",
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    uploaded = _upload(fake)
    served = {
        "subscription": [
            _call(fake, "GET", "/v1/subscriptions/sub_contract"),
            _call(fake, "GET", "/v1/subscriptions/sub_bench_0000001"),
            *lists[0]["data"],
        ],
        "customer": [
            _call(fake, "GET", "/v1/customers/cus_contract"),
            _call(fake, "GET", "/v1/customers/cus_bench_0000001"),
        ],
        "charge": [
            _call(fake, "GET", f"/v1/charges/{charge['id']}"),
            _call(fake, "GET", "/v1/charges/ch_guest"),
            expanded["charge"],
        ],
        "dispute": [dispute, expanded, staged],
        "invoice": [_call(fake, "GET", f"/v1/invoices/{paid['invoice']['id']}")],
        "invoice_payment": lists[2]["data"],
        "payment_intent": [_call(fake, "GET", f"/v1/payment_intents/{charge['payment_intent']}")],
        "event": [
            *lists[1]["data"],
            _call(fake, "GET", f"/v1/events/{lists[1]['data'][0]['id']}"),
        ],
        "file": [uploaded, _call(fake, "GET", f"/v1/files/{uploaded['id']}")],
        "billing_portal.session": [
            _call(
                fake,
                "POST",
                "/v1/billing_portal/sessions",
                b"customer=cus_contract&return_url=https%3A%2F%2Fapp.example.test%2F",
                **{"Content-Type": "application/x-www-form-urlencoded"},
            )
        ],
    }
    return served, lists


@pytest.fixture
def fake():
    with StripeFake() as running:
        yield running


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_object_the_fake_serves_has_stripes_shape(fake, resource):
    served, _ = served_objects(fake)
    assert served[resource], f"the contract fetched no {resource}"
    fixture = stripe_fixture(resource)
    for obj in served[resource]:
        assert obj["object"] == fixture["object"]
        assert contract_violations(obj, fixture) == [], obj["id"]


def test_event_objects_have_the_shape_of_their_own_resource(fake):
    served, _ = served_objects(fake)
    for event in served["event"]:
        inner = event["data"]["object"]
        assert contract_violations(inner, stripe_fixture(inner["object"])) == []


def test_list_answers_have_stripes_envelope(fake):
    _, lists = served_objects(fake)
    for answer in lists:
        assert list_envelope_violations(answer) == []
        assert answer["data"], answer["url"]


def test_the_legacy_subscription_shape_matches_its_own_version_fixture(fake):
    fake.add_subscription("sub_legacy", customer="cus_x", legacy_shape=True)
    served = _call(fake, "GET", "/v1/subscriptions/sub_legacy")
    assert "plan" in served and "current_period_end" in served
    assert contract_violations(served, stripe_fixture("subscription", LEGACY_API_VERSION)) == []
    # ...and it is not today's shape: the current fixture calls those keys invented.
    assert "invented plan" in contract_violations(served, stripe_fixture("subscription"))


@pytest.mark.parametrize("version", fixture_versions())
def test_each_version_fixture_set_holds_only_known_resources(version):
    for resource in ("subscription", "invoice", "charge"):
        older = stripe_fixture(resource, version)
        assert older["object"] == resource


@pytest.mark.parametrize("resource", RESOURCES)
def test_the_contract_fails_when_the_fake_drops_a_key_stripe_sends(fake, monkeypatch, resource):
    builder_name = BUILDERS[resource]
    builder = getattr(fake_module, builder_name)
    dropped = next(k for k in stripe_fixture(resource) if k not in {"id", "object", "created"})

    def without_key(*args, **kwargs):
        obj = builder(*args, **kwargs)
        obj.pop(dropped, None)
        return obj

    monkeypatch.setattr(fake_module, builder_name, without_key)
    served, _ = served_objects(fake)
    problems = [
        p for obj in served[resource] for p in contract_violations(obj, stripe_fixture(resource))
    ]
    assert f"missing {dropped}" in problems


def test_the_contract_fails_when_the_fake_invents_a_field():
    obj = stripe_fixture("dispute")
    obj["customer"] = "cus_invented"
    assert contract_violations(obj, stripe_fixture("dispute")) == ["invented customer"]


def test_the_contract_fails_on_a_wrong_json_type():
    obj = stripe_fixture("charge")
    obj["amount"] = "100"
    assert contract_violations(obj, stripe_fixture("charge")) == [
        "amount is string, Stripe sends number"
    ]


def test_janitors_subscription_statuses_are_stripes():
    """The model's choices (and its check constraint) take every status the fake and Stripe send."""
    assert set(SubscriptionStatus.values) == fake_module.SUBSCRIPTION_STATUSES
