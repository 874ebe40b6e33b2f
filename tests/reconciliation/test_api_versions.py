"""Each stored event keeps its API version; versions without fixtures are warned about."""

from __future__ import annotations

import pytest
from django.urls import reverse

from reconciliation.models import WebhookEvent
from reconciliation.selectors.webhooks import API_VERSIONS_WITH_FIXTURES
from sandbox.fixtures import fixture_versions
from sandbox.stripe_fake import API_VERSION, event_object
from tests.reconciliation.webhook_support import SECRET, post_signed, sub_obj

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]


def test_the_known_versions_are_exactly_those_with_fixtures():
    # The SDK's pinned version has Stripe's fixtures3.json; older ones a set of their own.
    assert API_VERSIONS_WITH_FIXTURES == {API_VERSION, *fixture_versions()}


def _post(client, version: str, event_id: str):
    import json

    body = json.dumps(
        event_object(
            "customer.subscription.created",
            sub_obj(f"sub_{event_id}", "cus_v"),
            id=event_id,
            api_version=version,
        )
    ).encode()
    assert post_signed(client, body).status_code == 200


def test_each_event_keeps_its_version_and_an_unknown_one_is_warned_on_the_webhooks_page(
    client, admin_user, django_assert_max_num_queries
):
    _post(client, API_VERSION, "evt_current")
    _post(client, "2025-02-24.acacia", "evt_acacia")
    client.force_login(admin_user)
    page = client.get(reverse("webhook_list")).content.decode()
    assert 'id="unknown-api-versions"' not in page
    assert WebhookEvent.objects.get(provider_event_id="evt_acacia").api_version == (
        "2025-02-24.acacia"
    )

    _post(client, "2019-12-03", "evt_old")
    _post(client, "2019-12-03", "evt_old2")
    page = client.get(reverse("webhook_list")).content.decode()
    assert 'id="unknown-api-versions"' in page
    assert "<code>2019-12-03</code>: 2 events" in page
    assert "docs/operations.md" in page
    detail = client.get(
        reverse("webhook_detail", args=[WebhookEvent.objects.get(provider_event_id="evt_old").pk])
    ).content.decode()
    assert "<code>2019-12-03</code>" in detail
