"""Junk in URLs, filters and API items gets a clear 4xx, never a 500 (found in review)."""

import json

import pytest
from django.urls import reverse

from accounts.models import ActivityLog
from accounts.services.tokens import api_token_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "/queue/?q=%00",
        "/webhooks/?type=%00",
        "/accounts/%00x/",
        "/disputes/%00/",
        "/access-audit/?actor=a%00b",
    ],
)
def test_nul_bytes_in_urls_are_refused_with_a_reason(admin_client_, url):
    response = admin_client_.get(url)
    assert response.status_code == 400
    assert b"NUL characters are not accepted" in response.content


def test_audit_filter_accepts_the_last_day_there_is(admin_client_):
    response = admin_client_.get(reverse("audit_list"), {"date_to": "9999-12-31"})
    assert response.status_code == 200


def test_activity_item_with_nul_is_refused_per_item(client, customer, admin_user):
    _token, raw = api_token_create(name="product", created_by=admin_user)
    event = {
        "id": "e\x001",
        "account": customer.public_id,
        "kind": "request",
        "occurred_at": "2026-11-25T10:00:00Z",
        "path": "/a\x00b",
    }
    response = client.post(
        "/api/v1/activity",
        data=json.dumps({"events": [event]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 400
    errors = response.json()["errors"][0]["errors"]
    assert errors["id"] == errors["path"] == "contains a NUL character"
    assert not ActivityLog.objects.exists()


def test_nul_in_a_form_field_is_refused_but_machine_endpoints_read_their_own_bodies(
    support_client, client
):
    from tests.factories import FlagFactory

    flag = FlagFactory()
    response = support_client.post(reverse("flag_note", args=[flag.pk]), {"body": "a\x00b"})
    assert response.status_code == 400
    assert b"NUL characters are not accepted in form fields" in response.content
    assert not flag.notes.exists()
    # A form-encoded post to the webhook is judged by its signature, not by this guard.
    webhook = client.post(reverse("stripe_webhook"), {"x": "a\x00b"})
    assert webhook.status_code == 400 and b"NUL" not in webhook.content
