"""Hostile deliveries to POST /webhooks/stripe/: no 5xx, refusals say why, unsigned is inert."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from django.db import transaction
from hypothesis import assume, given, note
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from accounts.models import AccessAudit
from reconciliation.models import Flag, WebhookEvent, WebhookStatus
from reconciliation.services.webhooks import HANDLED_TYPES
from sandbox.signing import stripe_signature_header
from tests.hostile.conftest import assert_answered, counted, rolled_back

URL = "/webhooks/stripe/"
SECRET = "whsec_hostile_primary"
OTHER_SECRET = "whsec_hostile_attacker"
STALE_SECONDS = 301  # the verifier's tolerance is 300 s

COUNTERS = {
    "events": WebhookEvent.objects.count,
    "audit": AccessAudit.objects.count,
    "flags": Flag.objects.count,
}


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]


# --- Strategies ---------------------------------------------------------------------------

# Text that also holds what breaks naive code: NUL, surrogates are impossible in valid UTF-8 JSON
# bodies but lone ones can be escaped (\ud800), so json.dumps(ensure_ascii=True) carries them.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40),
    st.sampled_from(["", "\x00", "\ud800", "é@ü.example", "用户@例子.公司", "a" * 5000, "\u202e"]),
    st.builds(lambda n: "x" * n, st.integers(256, 20_000)),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)
emails = st.one_of(
    st.emails(),
    st.builds(lambda local, domain: f"{local}@{domain}", hostile_text, hostile_text),
    hostile_text,
)
event_types = st.one_of(st.sampled_from(sorted(HANDLED_TYPES)), hostile_text)
created_values = st.one_of(
    st.integers(min_value=0, max_value=2_000_000_000),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    json_values,
)


@st.composite
def stripe_objects(draw) -> Any:
    """A data.object Janitor reads (customer, subscription, invoice, dispute), garbled at will."""
    kind = draw(st.sampled_from(["customer", "subscription", "invoice", "dispute", "other"]))
    obj: dict[str, Any] = {"object": kind, "id": draw(hostile_text)}
    if kind == "customer":
        obj["email"] = draw(emails)
        obj["name"] = draw(hostile_text)
    else:
        obj["customer"] = draw(st.one_of(hostile_text, st.fixed_dictionaries({"id": hostile_text})))
    if kind == "subscription":
        obj["status"] = draw(
            st.one_of(st.sampled_from(["active", "canceled", "past_due"]), json_values)
        )
        obj["items"] = draw(json_values)
        obj["current_period_end"] = draw(created_values)
    if kind == "dispute":
        obj["amount"] = draw(json_values)
        obj["charge"] = draw(hostile_text)
        obj["status"] = draw(json_values)
        obj["evidence_details"] = draw(json_values)
    extra = draw(st.dictionaries(hostile_text, json_values, max_size=3))
    obj.update(extra)
    return draw(st.one_of(st.just(obj), json_values))


EVENT_FIELDS = ("id", "object", "type", "created", "data", "livemode")


@st.composite
def event_bodies(draw) -> dict[str, Any] | Any:
    """A Stripe-shaped event with up to three fields missing, of the wrong type or hostile (often
    none: then only the data object and the strings in it are hostile), or any JSON."""
    event: dict[str, Any] = {
        "id": draw(st.builds(lambda s: f"evt_{s}", hostile_text)),
        "object": "event",
        "type": draw(event_types),
        "created": draw(st.integers(min_value=0, max_value=2_000_000_000)),
        "data": {"object": draw(stripe_objects())},
        "livemode": False,
    }
    hostile = {
        "id": json_values,
        "object": json_values,
        "type": json_values,
        "created": created_values,
        "data": json_values,
        "livemode": json_values,
    }
    for key in draw(st.sets(st.sampled_from(EVENT_FIELDS), max_size=3)):
        if draw(st.booleans()):
            del event[key]
        else:
            event[key] = draw(hostile[key])
    return draw(json_values) if draw(st.integers(0, 9)) == 9 else event


def _dumps(value: Any, ascii_only: bool) -> bytes:
    # allow_nan: Python's json writes NaN/Infinity and reads them back; Stripe would not, a
    # forger might.
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


random_bodies = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda n: b"\xff\xfe" * n, st.integers(1, 4096)),  # invalid UTF-8
    st.text(max_size=500).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.builds(_dumps, event_bodies(), st.booleans()),
    st.just(b""),
    st.builds(lambda n: b"{" * n, st.integers(1, 50_000)),  # unbalanced, deep
)

timestamps = st.integers(min_value=-(2**40), max_value=2**40).map(str)
hex_digests = st.text(alphabet="0123456789abcdef", min_size=0, max_size=70)
header_items = st.one_of(
    st.builds(lambda t: f"t={t}", st.one_of(timestamps, hostile_text)),
    st.builds(lambda d: f"v1={d}", hex_digests),
    st.builds(lambda d: f"v0={d}", hex_digests),
    st.builds(lambda k, v: f"{k}={v}", hostile_text, hostile_text),
    hostile_text,
)
garbled_headers = st.one_of(
    st.none(),
    st.just(""),
    hostile_text,
    st.lists(header_items, max_size=6).map(",".join),
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=utf-16",
            "application/json; charset=nonsense",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "multipart/form-data",
            "",
        ]
    ),
    hostile_text,
)
content_encodings = st.one_of(
    st.none(), st.sampled_from(["gzip", "deflate", "br", "identity", "x-garbage"]), hostile_text
)


def _post(client, body: bytes, *, signature, content_type: str, encoding, **meta):
    headers = {}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    # generic(), not post(): post() would re-encode the body for form or multipart types.
    return client.generic(
        "POST", URL, data=body, content_type=content_type, headers=headers, **meta
    )


# --- Properties ---------------------------------------------------------------------------


@pytest.mark.django_db
@given(
    body=random_bodies,
    signature=garbled_headers,
    content_type=content_types,
    encoding=content_encodings,
    content_length=st.one_of(st.none(), hostile_text, st.integers(-10, 0).map(str)),
)
def test_unsigned_deliveries_are_refused_with_a_reason_and_change_nothing(
    raw_client, body, signature, content_type, encoding, content_length
):
    # Django's test client cannot hand the view fewer bytes than a Content-Length larger than
    # the body (a real server would wait, then time out): keep declared lengths <= the body.
    try:
        declared = int(content_length) if content_length is not None else None
    except ValueError:
        declared = None
    assume(declared is None or declared <= len(body))
    meta = {} if content_length is None else {"CONTENT_LENGTH": content_length}
    with rolled_back():
        before = {name: count() for name, count in COUNTERS.items()}
        response = _post(
            raw_client,
            body,
            signature=signature,
            content_type=content_type,
            encoding=encoding,
            **meta,
        )
        after = {name: count() for name, count in COUNTERS.items()}
    note(f"{response.status_code} {response.content[:200]!r}")
    hypothesis_event(f"status {response.status_code}")
    assert_answered(response, context=f"signature={signature!r}")
    # Refused as unverified (or malformed), or as larger than the cap: nothing else.
    assert response.status_code in {400, 413}
    assert after == before


@st.composite
def forged_signatures(draw, body: bytes) -> str:
    """Headers that are well formed but must not verify for `body`, including a real secret's
    signature dated beyond the tolerance either way (stripe-python checks only the past)."""
    now = int(time.time())
    way = draw(st.sampled_from(["other_body", "other_secret", "stale", "future", "extra_bad"]))
    if way == "other_body":
        other = draw(st.binary(max_size=256).filter(lambda b: b != body))
        return stripe_signature_header(other, SECRET, now)
    if way == "other_secret":
        return stripe_signature_header(body, OTHER_SECRET, now)
    if way == "stale":
        age = draw(st.integers(min_value=STALE_SECONDS, max_value=10 * 365 * 86_400))
        return stripe_signature_header(body, SECRET, now - age)
    if way == "future":
        # A minute's margin: the clock moves on between signing and checking.
        ahead = draw(st.integers(min_value=STALE_SECONDS + 60, max_value=10 * 365 * 86_400))
        return stripe_signature_header(body, SECRET, now + ahead)
    # A valid v1 for another body next to bad ones: none of them verifies this body.
    header = stripe_signature_header(b"something else", SECRET, now)
    return header + "," + ",".join(f"v1={d}" for d in draw(st.lists(hex_digests, max_size=3)))


@pytest.mark.django_db
@given(data=st.data(), body=random_bodies, content_type=content_types)
def test_signatures_over_another_body_or_stale_or_wrong_secret_change_nothing(
    raw_client, data, body, content_type
):
    signature = data.draw(forged_signatures(body))
    with rolled_back():
        before = {name: count() for name, count in COUNTERS.items()}
        response = _post(
            raw_client, body, signature=signature, content_type=content_type, encoding=None
        )
        after = {name: count() for name, count in COUNTERS.items()}
    hypothesis_event(f"status {response.status_code}")
    assert_answered(response, context=f"signature={signature!r}")
    assert response.status_code in {400, 413}, response.content[:200]
    assert after == before


@pytest.mark.django_db
@given(body=st.builds(_dumps, event_bodies(), st.booleans()), content_type=content_types)
def test_signed_hostile_events_never_give_a_server_error(raw_client, body, content_type):
    """Validly signed, hostile content: stored (200) or refused with a reason (400), never 5xx.

    A refusal stores nothing; a 200 stores the event at most once.
    """
    note(repr(body[:300]))
    signature = stripe_signature_header(body, SECRET)
    with rolled_back():
        before = {name: count() for name, count in COUNTERS.items()}
        savepoint = transaction.savepoint()
        response = _post(
            raw_client, body, signature=signature, content_type=content_type, encoding=None
        )
        after = counted(COUNTERS, savepoint)
    hypothesis_event(f"status {response.status_code}")
    assert_answered(response, context=repr(body[:200]))
    assert response.status_code in (200, 400), response.content[:200]
    if response.status_code == 400:
        assert after == before
    else:
        stored = 0 if response.json()["duplicate"] else 1
        assert after["events"] == before["events"] + stored


# --- Regressions: inputs that once gave a 500 here (found by this suite, now fixed) -----


def _signed_post(client, event: Any, *, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(event).encode()
    return _post(
        client,
        body,
        signature=stripe_signature_header(body, SECRET),
        content_type="application/json",
        encoding=None,
    )


def _event(**fields) -> dict[str, Any]:
    event = {
        "id": "evt_hostile_pinned",
        "object": "event",
        "type": "customer.subscription.updated",
        "created": int(time.time()),
        "data": {"object": {"object": "subscription", "id": "sub_x", "customer": "cus_x"}},
    }
    event.update(fields)
    return event


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(item) for item in value)
    return False


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


@pytest.mark.django_db
@pytest.mark.parametrize("data", [True, 7, "text", ["a"], 1.5])
def test_signed_event_whose_data_is_not_an_object_is_stored_and_its_processing_fails(client, data):
    """Answered, not refused: the signature proves Stripe sent it, so it is kept (200), and
    processing it fails loudly (retried, then dead-lettered on the Webhooks page)."""
    from reconciliation.services.webhooks import webhook_event_process

    response = _signed_post(client, _event(data=data))
    assert_answered(response, context=f"data={data!r}")
    assert response.status_code == 200
    stored = WebhookEvent.objects.get()
    webhook_event_process(event_id=stored.pk)
    stored.refresh_from_db()
    assert stored.status == WebhookStatus.FAILED and stored.last_error


@pytest.mark.django_db
@pytest.mark.parametrize("created", [10**20, 1e300, -(10**20), float("nan"), float("inf")])
def test_signed_event_with_an_impossible_created_time_is_refused(client, created):
    response = _signed_post(client, _event(created=created))
    assert_answered(response, context=f"created={created!r}")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [1_000, 10_000])
def test_signed_json_nested_thousands_deep_is_refused(client, depth):
    raw = b'{"a":' * depth + b"1" + b"}" * depth
    response = _signed_post(client, None, raw=raw)
    assert_answered(response, context=f"nested {depth} deep")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_signed_event_holding_nan_or_infinity_is_refused_not_retried(client, value):
    event = _event()
    event["data"]["object"]["amount"] = value
    response = _signed_post(client, event)
    assert_answered(response, context=f"amount={value!r}")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["id", "type", "customer"])
def test_signed_event_with_a_lone_surrogate_is_refused(client, field):
    event = _event()
    if field == "customer":
        event["data"]["object"]["customer"] = "cus_\ud800"
    else:
        event[field] = f"{event[field]}\ud800"
    response = _signed_post(client, event)
    assert_answered(response, context=f"lone surrogate in {field}")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["id", "type", "customer"])
def test_signed_event_with_a_nul_character_is_refused(client, field):
    event = _event()
    if field == "customer":
        event["data"]["object"]["customer"] = "cus_\x00"
    else:
        event[field] = f"{event[field]}\x00"
    response = _signed_post(client, event)
    assert_answered(response, context=f"NUL in {field}")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("ahead", [0, 360])
def test_a_timestamp_item_with_a_trailing_value_is_answered(raw_client, ahead):
    """A regression: `t=<ts>=junk` with a valid v1 passed the SDK and then broke the
    future-timestamp check (a 500)."""
    body = json.dumps(_event(id=f"evt_trailing_{ahead}")).encode()
    timestamp, signature = stripe_signature_header(body, SECRET, int(time.time()) + ahead).split(
        ",", 1
    )
    response = _post(
        raw_client,
        body,
        signature=f"{timestamp}=junk,{signature}",
        content_type="application/json",
        encoding=None,
    )
    assert_answered(response, context="t=<ts>=junk")
    assert response.status_code == (200 if ahead == 0 else 400), response.content


# --- The same properties on one fixed example each: fast, for the smoke run -----------------


def _valid_body() -> bytes:
    return json.dumps(_event(id="evt_hostile_smoke")).encode()


@pytest.mark.smoke
@pytest.mark.django_db
@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(lambda body: stripe_signature_header(b"{}", SECRET), id="over-another-body"),
        pytest.param(
            lambda body: stripe_signature_header(body, SECRET, int(time.time()) - STALE_SECONDS),
            id="replayed-301s-old",
        ),
        pytest.param(
            lambda body: stripe_signature_header(body, SECRET, int(time.time()) + 360),
            id="dated-6-minutes-ahead",
        ),
        pytest.param(lambda body: stripe_signature_header(body, OTHER_SECRET), id="wrong-secret"),
        pytest.param(lambda body: "t=abc,v1=zz", id="garbled"),
    ],
)
def test_a_forged_or_replayed_signature_is_refused_with_a_reason(raw_client, signature):
    body = _valid_body()
    before = {name: count() for name, count in COUNTERS.items()}
    response = _post(
        raw_client,
        body,
        signature=signature(body),
        content_type="application/json",
        encoding=None,
    )
    assert response.status_code == 400
    assert response.content.strip()
    assert {name: count() for name, count in COUNTERS.items()} == before


@pytest.mark.smoke
@pytest.mark.django_db
def test_the_same_body_signed_now_is_stored(raw_client):
    """The control for the test above: only the signature made the difference."""
    before = WebhookEvent.objects.count()
    response = _signed_post(raw_client, None, raw=_valid_body())
    assert response.status_code == 200, response.content
    assert WebhookEvent.objects.count() == before + 1
