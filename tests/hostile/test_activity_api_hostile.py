"""Hostile batches to POST /api/v1/activity: no 5xx, refusals say why, refused stores none."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone
from hypothesis import event as hypothesis_event
from hypothesis import given, note
from hypothesis import strategies as st

from accounts.models import ActivityKind, ActivityLog
from accounts.services.tokens import api_token_create, api_token_revoke
from tests.factories import AccountFactory
from tests.hostile.conftest import assert_answered, counted, rolled_back

URL = "/api/v1/activity"
COUNTERS = {"activity": ActivityLog.objects.count}


@pytest.fixture
def tokens(admin_user):
    """(live raw token, revoked raw token)."""
    _, live = api_token_create(name="Hostile product", created_by=admin_user)
    revoked_token, revoked = api_token_create(name="Retired product", created_by=admin_user)
    api_token_revoke(token=revoked_token)
    return live, revoked


@pytest.fixture
def account(db):
    return AccountFactory(email="hostile-activity@example.com")


# --- Strategies ---------------------------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "\ud800", "用户@例子.公司", "\u202e", "a" * 600]),
    st.builds(lambda n: "p" * n, st.integers(129, 5_000)),
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        hostile_text,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(hostile_text, children, max_size=3)
    ),
    max_leaves=8,
)


def _iso(moment) -> str:
    return moment.isoformat()


times = st.one_of(
    # Valid: within the past year, with a timezone.
    st.integers(min_value=0, max_value=365 * 86_400).map(
        lambda s: _iso(timezone.now() - timedelta(seconds=s))
    ),
    st.datetimes(timezones=st.timezones()).map(_iso),  # any year, any zone, future included
    st.datetimes().map(_iso),  # naive
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2026-02-30T00:00:00Z",
            "2026-11-20T25:00:00Z",
            "2026-11-20",
            "yesterday",
            "",
        ]
    ),
    json_values,
)
ips = st.one_of(st.none(), st.ip_addresses().map(str), hostile_text, json_values)


# Any text PostgreSQL can store (NUL is tested as a hostile value, and refused by name).
storable_text = st.text(alphabet=st.characters(exclude_characters="\x00"), max_size=600)
ACTIVITY_FIELDS = ("id", "account", "occurred_at", "kind", "path", "ip", "user_agent")


@st.composite
def activity_events(draw, public_id: str, index: int) -> Any:
    """A valid event with up to two fields garbled or left out (often none), or any JSON."""
    moment = timezone.now() - timedelta(seconds=draw(st.integers(0, 365 * 86_400)))
    event: dict[str, Any] = {
        "id": f"{index}-{draw(storable_text)}"[:128],  # unique within the batch
        "account": public_id,
        "occurred_at": moment.isoformat(),
        "kind": draw(st.sampled_from(ActivityKind.values)),
        "path": draw(st.one_of(st.just("/v2/export"), storable_text)),
        "ip": draw(st.one_of(st.none(), st.ip_addresses().map(str))),
        "user_agent": draw(st.one_of(st.just("sdk/1.0"), storable_text)),
    }
    hostile = {
        "id": st.one_of(hostile_text, json_values),
        "account": st.one_of(hostile_text, json_values),
        "occurred_at": times,
        "kind": st.one_of(hostile_text, json_values),
        "path": st.one_of(hostile_text, json_values),
        "ip": ips,
        "user_agent": st.one_of(hostile_text, json_values),
    }
    for key in draw(st.sets(st.sampled_from(ACTIVITY_FIELDS), max_size=2)):
        if draw(st.booleans()):
            del event[key]
        else:
            event[key] = draw(hostile[key])
    return draw(json_values) if draw(st.integers(0, 9)) == 9 else event


@st.composite
def batches(draw, public_id: str) -> bytes:
    way = draw(st.integers(0, 9))
    if way <= 6:
        size = draw(st.integers(1, 5))
        payload: Any = {"events": [draw(activity_events(public_id, n)) for n in range(size)]}
    elif way == 7:
        # More than the batch limit (1,000 by default): a 413, checked before any item.
        count = draw(st.integers(1, 300)) + django_settings.JANITOR_ACTIVITY_MAX_BATCH
        payload = {"events": [{"id": str(n)} for n in range(count)]}
    elif way == 8:
        payload = draw(st.one_of(json_values, st.fixed_dictionaries({"events": json_values})))
    else:
        return draw(
            st.one_of(
                st.binary(max_size=512),
                st.builds(lambda n: b"\xff" * n, st.integers(1, 512)),
                st.just(b""),
                st.builds(lambda n: b"[" * n, st.integers(1, 5_000)),  # unbalanced
            )
        )
    ascii_only = draw(st.booleans())
    return json.dumps(payload, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


# WSGI hands headers over as latin-1 text: a real request cannot carry other characters.
header_text = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=255), max_size=40),
    st.sampled_from(["", " ", "\x00", "\xff" * 300]),
)


@st.composite
def authorizations(draw, live: str, revoked: str) -> str | None:
    """Mostly the live token (so the batch itself is tested), else a bad or missing one."""
    if draw(st.integers(0, 9)) < 6:
        return f"Bearer {live}"
    return draw(
        st.one_of(
            st.just(f"bearer  {live} "),
            st.just(f"Bearer {revoked}"),
            st.just(f"Token {live}"),
            st.just(f"Bearer {live[:-1]}"),
            st.builds(lambda s: f"Bearer jan_{s}", header_text),
            st.builds(lambda s: f"Bearer {s}", header_text),
            header_text,
            st.none(),
        )
    )


def _post(client, body: bytes, authorization: str | None, content_type="application/json"):
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.generic("POST", URL, data=body, content_type=content_type, headers=headers)


# --- Regressions: inputs that once gave a 500 here (found by this suite, now fixed) -----


STRING_FIELDS = ("id", "account", "path", "user_agent")


# --- Properties ---------------------------------------------------------------------------


@pytest.mark.django_db
@given(data=st.data())
def test_hostile_batches_never_give_a_server_error_and_rejected_ones_store_nothing(
    raw_client, tokens, account, data
):
    live, revoked = tokens
    body = data.draw(batches(account.public_id), label="body")
    authorization = data.draw(authorizations(live, revoked), label="authorization")
    with rolled_back():
        before = {name: count() for name, count in COUNTERS.items()}
        savepoint = transaction.savepoint()
        response = _post(raw_client, body, authorization)
        after = counted(COUNTERS, savepoint)
    note(f"{response.status_code} {response.content[:300]!r}")
    hypothesis_event(f"status {response.status_code}")
    assert_answered(response, context=repr(body[:200]))
    if response.status_code == 200:
        stored = response.json()["stored"]
        assert after["activity"] == before["activity"] + stored
    else:
        assert after == before
        assert "error" in response.json()  # every refusal is JSON with a reason
    if authorization is None or live not in authorization.split():
        assert response.status_code == 401
    if authorization == f"Bearer {revoked}":
        assert response.status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [1_000, 10_000])
def test_json_nested_thousands_deep_is_refused(raw_client, tokens, depth):
    live, _ = tokens
    body = b'{"events":' + b"[" * depth + b"]" * depth + b"}"
    response = _post(raw_client, body, f"Bearer {live}")
    assert_answered(response, context=f"nested {depth} deep")
    assert response.status_code == 400
    assert not ActivityLog.objects.exists()


def _one_event(owner, **fields) -> bytes:
    event = {
        "id": "evt-hostile-1",
        "account": owner.public_id,
        "occurred_at": timezone.now().isoformat(),
        "kind": "api",
        "path": "/v2/export",
        "user_agent": "sdk/1.0",
    }
    event.update(fields)
    return json.dumps({"events": [event]}).encode()


@pytest.mark.django_db
@pytest.mark.parametrize("field", STRING_FIELDS)
def test_nul_in_a_string_field_is_a_per_item_400(raw_client, tokens, account, field):
    """PostgreSQL text cannot hold NUL: the item is refused by name, not the request failed."""
    live, _ = tokens
    value = account.public_id + "\x00" if field == "account" else "x\x00y"
    before = ActivityLog.objects.count()
    response = _post(raw_client, _one_event(account, **{field: value}), f"Bearer {live}")
    assert response.status_code == 400
    assert field in response.json()["errors"][0]["errors"]
    assert ActivityLog.objects.count() == before


@pytest.mark.django_db
@pytest.mark.parametrize("field", STRING_FIELDS)
def test_lone_surrogate_in_a_string_field_is_refused(raw_client, tokens, account, field):
    live, _ = tokens
    value = account.public_id + "\ud800" if field == "account" else "x\ud800y"
    response = _post(raw_client, _one_event(account, **{field: value}), f"Bearer {live}")
    assert_answered(response, context=f"lone surrogate in {field}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["index"] == 0
    assert not ActivityLog.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [[], ["api"], {}, {"api": 1}])
def test_kind_that_is_an_array_or_object_is_refused(raw_client, tokens, account, kind):
    live, _ = tokens
    response = _post(raw_client, _one_event(account, kind=kind), f"Bearer {live}")
    assert_answered(response, context=f"kind={kind!r}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["index"] == 0
    assert not ActivityLog.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "0001-01-01T10:00:00+14:00"])
def test_time_outside_the_storable_range_is_refused(raw_client, tokens, account, moment):
    live, _ = tokens
    response = _post(raw_client, _one_event(account, occurred_at=moment), f"Bearer {live}")
    assert_answered(response, context=f"occurred_at={moment}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["index"] == 0
    assert not ActivityLog.objects.exists()


@pytest.mark.smoke
@pytest.mark.django_db
def test_a_batch_over_the_limit_is_413_with_a_reason_and_stores_nothing(
    raw_client, tokens, account, settings
):
    live, _ = tokens
    settings.JANITOR_ACTIVITY_MAX_BATCH = 1000
    events = [
        {
            "id": f"evt-{n}",
            "account": account.public_id,
            "occurred_at": timezone.now().isoformat(),
            "kind": "api",
        }
        for n in range(1001)
    ]
    before = ActivityLog.objects.count()
    response = _post(raw_client, json.dumps({"events": events}).encode(), f"Bearer {live}")
    assert response.status_code == 413
    assert "1000" in response.json()["error"]
    assert ActivityLog.objects.count() == before
