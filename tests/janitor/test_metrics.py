"""/metrics (issue 18): what a scrape finds after real work, and who may scrape."""

from __future__ import annotations

import re
import time

import pytest
from django.test import Client
from django.urls import reverse

from accounts.services.revocation import revocation_approve, revocation_request
from reconciliation.services.runs import reconciliation_run
from reconciliation.services.webhooks import webhook_event_process, webhook_event_store
from tests.factories import AccountFactory, FlagFactory
from tests.reconciliation.webhook_support import SECRET, body_for, post_signed, sub_obj

pytestmark = pytest.mark.django_db


def _value(text: str, metric: str, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = (
        rf"^{re.escape(metric)}{{{re.escape(wanted)}}} (\S+)$"
        if labels
        else (rf"^{re.escape(metric)} (\S+)$")
    )
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{metric} {labels} not in the scrape"
    return float(match.group(1))


def test_a_scrape_after_webhooks_a_run_and_a_revocation(
    client, stripe_fake, settings, support_user, admin_user, django_capture_on_commit_callbacks
):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    account = AccountFactory(stripe_customer_id="cus_m1")
    with django_capture_on_commit_callbacks(execute=True):
        post_signed(client, body_for("customer.subscription.created", sub_obj("sub_m1", "cus_m1")))
        post_signed(client, b'{"not": "signed"}', header="t=1,v1=bad")  # refused
    dead = webhook_event_store(
        event={
            "id": "evt_dead",
            "type": "customer.subscription.updated",
            "created": int(time.time()),
            "data": {"object": "junk"},
        }
    )
    from reconciliation.models import WebhookEvent
    from reconciliation.services.webhooks import WEBHOOK_MAX_ATTEMPTS

    for _ in range(WEBHOOK_MAX_ATTEMPTS):
        WebhookEvent.objects.filter(pk=dead.pk).update(next_attempt_at=None)
        webhook_event_process(event_id=dead.pk)
    stripe_fake.add_subscription("sub_m1", customer="cus_m1", status="active")
    other = AccountFactory()
    stripe_fake.add_subscription("sub_m2", customer=other.stripe_customer_id, status="canceled")
    run = reconciliation_run(dry_run=False, triggered_by="test")
    FlagFactory(account=account, kind="manual_grant")
    request = revocation_request(account=AccountFactory(), requested_by=support_user, reason="x")
    revocation_approve(revocation_id=request.pk, approver=admin_user)

    response = Client().get(reverse("metrics"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert (
        _value(text, "janitor_webhooks_received_last_hour", type="customer.subscription.created")
        == 1
    )
    assert (
        _value(text, "janitor_webhooks_received_last_hour", type="customer.subscription.updated")
        == 1
    )
    assert _value(text, "janitor_webhook_events", status="dead") == 1
    assert _value(text, "janitor_webhooks_dead") == 1
    assert _value(text, "janitor_webhooks_rejected_total", kind="signature") == 1
    assert _value(text, "janitor_webhook_backlog") == 0
    assert _value(text, "janitor_reconciliation_last_run_status", status=run.status) == 1
    assert _value(text, "janitor_reconciliation_last_run_outcomes", outcome="start_grace") == 1
    assert _value(text, "janitor_reconciliation_last_run_age_seconds") < 600
    assert _value(text, "janitor_open_flags", kind="manual_grant") == 1
    # The run's grace flag for `other` is open too.
    assert _value(text, "janitor_open_flags", kind="missing_subscription") == 1
    assert _value(text, "janitor_revocations", state="completed") == 1
    assert _value(text, "janitor_revocations", state="stalled") == 0
    assert _value(text, "janitor_disputes_due_48h") == 0
    assert _value(text, "janitor_notification_failures", status="dead") == 0
    assert _value(text, "janitor_queue_length") >= 0
    assert "janitor_http_request_duration_seconds_bucket" in text


def test_metrics_are_refused_from_another_address_without_the_token(settings):
    settings.JANITOR_METRICS_TOKEN = "s3cret-metrics-token"
    elsewhere = Client(REMOTE_ADDR="198.51.100.7")
    assert elsewhere.get(reverse("metrics")).status_code == 403
    wrong = elsewhere.get(reverse("metrics"), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    odd = elsewhere.get(reverse("metrics"), headers={"Authorization": "Bearer s3cr\u00e9t"})
    assert odd.status_code == 403
    local_wrong = Client().get(reverse("metrics"), headers={"Authorization": "Bearer nope"})
    assert local_wrong.status_code == 403  # a wrong token is refused even from loopback
    right = elsewhere.get(
        reverse("metrics"), headers={"Authorization": "Bearer s3cret-metrics-token"}
    )
    assert right.status_code == 200
    assert b"janitor_open_flags" in right.content


def test_without_a_token_only_allowed_addresses_scrape(settings):
    settings.JANITOR_METRICS_TOKEN = ""
    settings.JANITOR_METRICS_ALLOWED_IPS = frozenset({"203.0.113.9"})
    assert Client(REMOTE_ADDR="203.0.113.9").get(reverse("metrics")).status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get(reverse("metrics")).status_code == 403
    token = Client(REMOTE_ADDR="127.0.0.1").get(
        reverse("metrics"), headers={"Authorization": "Bearer anything"}
    )
    assert token.status_code == 403  # no token configured: a bearer opens nothing
