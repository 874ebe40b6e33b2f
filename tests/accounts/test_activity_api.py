"""The activity ingest API: bearer tokens, batches, per-item errors, dedupe, size limits."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import ActivityLog
from accounts.services.tokens import api_token_create, api_token_revoke
from tests.factories import UserFactory

URL = "/api/v1/activity"


@pytest.fixture
def token(admin_user):
    return api_token_create(name="Product backend", created_by=admin_user)


def _post(client, raw, body, **extra):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    headers = {"Authorization": f"Bearer {raw}"} if raw else {}
    return client.post(URL, data=data, content_type="application/json", headers=headers, **extra)


def _event(user, n, **overrides):
    event = {
        "id": f"evt-{n}",
        "account": user.public_id,
        "occurred_at": (timezone.now() - timedelta(minutes=n)).isoformat(),
        "kind": "api",
        "path": "/v2/export",
        "ip": "203.0.113.20",
        "user_agent": "product-sdk/3.1",
    }
    event.update(overrides)
    return event


@pytest.mark.smoke
@pytest.mark.django_db
def test_good_batch_is_stored(client, token):
    model, raw = token
    first, second = UserFactory(), UserFactory()
    events = [_event(first, n) for n in range(3)] + [_event(second, 10, kind="login", ip=None)]
    response = _post(client, raw, {"events": events})
    assert response.status_code == 200, response.content
    assert response.json() == {"received": 4, "stored": 4, "duplicates": 0}
    rows = ActivityLog.objects.filter(source=str(model.pk))
    assert rows.filter(member=first, kind="api").count() == 3
    login = rows.get(member=second)
    assert (login.kind, login.ip_address, login.client_event_id) == ("login", None, "evt-10")


@pytest.mark.smoke
@pytest.mark.django_db
def test_retried_batch_does_not_duplicate(client, token):
    _, raw = token
    account = UserFactory()
    body = {"events": [_event(account, n) for n in range(5)]}
    assert _post(client, raw, body).json()["stored"] == 5
    again = _post(client, raw, body)
    assert again.status_code == 200
    assert again.json() == {"received": 5, "stored": 0, "duplicates": 5}
    # A partly new retry stores only the new one.
    body["events"].append(_event(account, 99))
    assert _post(client, raw, body).json() == {"received": 6, "stored": 1, "duplicates": 5}
    assert ActivityLog.objects.filter(member=account).count() == 6


@pytest.mark.django_db
def test_same_event_id_from_another_token_is_another_event(client, token, admin_user):
    _, raw = token
    _, other_raw = api_token_create(name="Other product", created_by=admin_user)
    account = UserFactory()
    body = {"events": [_event(account, 1)]}
    _post(client, raw, body)
    _post(client, other_raw, body)
    assert ActivityLog.objects.filter(member=account).count() == 2


@pytest.mark.smoke
@pytest.mark.django_db
def test_junk_items_are_rejected_per_item_and_nothing_is_stored(client, token):
    _, raw = token
    account = UserFactory()
    events = [
        _event(account, 0),
        _event(account, 1, occurred_at="yesterday"),
        _event(account, 2, kind="click"),
        "not an object",
        _event(account, 4, account="user-nope-nope-nope"),
        _event(account, 5, ip="999.1.1.1", id=""),
        _event(account, 6, occurred_at="2026-01-01T10:00:00"),  # no timezone
        _event(account, 7, occurred_at=(timezone.now() + timedelta(days=2)).isoformat()),
        _event(account, 0),  # same id twice in one batch
    ]
    response = _post(client, raw, {"events": events})
    assert response.status_code == 400
    body = response.json()
    assert "nothing was stored" in body["error"]
    by_index = {item["index"]: item["errors"] for item in body["errors"]}
    assert set(by_index) == {1, 2, 3, 4, 5, 6, 7, 8}
    assert "occurred_at" in by_index[1] and "kind" in by_index[2]
    assert "event" in by_index[3]
    assert by_index[4]["account"].startswith("no such account: a member's public id")
    assert set(by_index[5]) == {"ip", "id"}
    assert "timezone" in by_index[6]["occurred_at"] and "future" in by_index[7]["occurred_at"]
    assert "repeated" in by_index[8]["id"]
    assert not ActivityLog.objects.exists()  # all or none: the valid first item is not stored


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"events": "many"}', b'{"events": []}', b"[1, 2]", b"\xff\xfe"],
)
@pytest.mark.django_db
def test_malformed_body_is_400(client, token, body):
    _, raw = token
    response = _post(client, raw, body)
    assert response.status_code == 400
    assert response.json()["error"]


@pytest.mark.smoke
@pytest.mark.django_db
def test_bad_missing_or_revoked_token_is_401(client, token):
    model, raw = token
    account = UserFactory()
    body = {"events": [_event(account, 1)]}
    assert _post(client, None, body).status_code == 401
    assert _post(client, "jan_not-a-real-token", body).status_code == 401
    response = client.post(
        URL, data=json.dumps(body), content_type="application/json",
        headers={"Authorization": f"Basic {raw}"},
    )  # fmt: skip
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    api_token_revoke(token=model)
    assert _post(client, raw, body).status_code == 401
    assert not ActivityLog.objects.exists()


@pytest.mark.smoke
@pytest.mark.django_db
def test_more_than_the_batch_limit_is_413(client, token, settings):
    _, raw = token
    account = UserFactory()
    events = [_event(account, n, path="", user_agent="") for n in range(1001)]
    response = _post(client, raw, {"events": events})
    assert response.status_code == 413
    assert not ActivityLog.objects.exists()
    # Exactly the limit is fine.
    assert _post(client, raw, {"events": events[:1000]}).json()["stored"] == 1000


@pytest.mark.django_db
def test_too_many_bytes_is_413_before_parsing(client, token, settings):
    settings.JANITOR_ACTIVITY_MAX_BATCH = 10  # 10 * 2 KiB allowed
    _, raw = token
    account = UserFactory()
    events = [_event(account, n, user_agent="x" * 5000) for n in range(5)]
    response = _post(client, raw, {"events": events})
    assert response.status_code == 413
    assert not ActivityLog.objects.exists()


@pytest.mark.django_db
def test_get_is_not_allowed_and_csrf_is_not_required(token):
    from django.test import Client

    _, raw = token
    strict = Client(enforce_csrf_checks=True)
    assert strict.get(URL, headers={"Authorization": f"Bearer {raw}"}).status_code == 405
    account = UserFactory()
    response = _post(strict, raw, {"events": [_event(account, 1)]})
    assert response.status_code == 200


@pytest.mark.django_db
def test_long_fields_are_cut_not_refused(client, token):
    _, raw = token
    account = UserFactory()
    response = _post(client, raw, {"events": [_event(account, 1, path="/p" * 400)]})
    assert response.status_code == 200
    assert len(ActivityLog.objects.get(member=account).path) == 500
