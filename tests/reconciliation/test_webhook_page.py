"""The Webhooks page: Admin replays, Support reads, customers are kept out; bounded queries."""

import pytest
from django.urls import reverse

from reconciliation.models import WebhookAttempt, WebhookEvent, WebhookStatus
from reconciliation.services.webhooks import webhook_rejection_record
from tests.factories import AccountFactory, WebhookEventFactory
from tests.reconciliation.webhook_support import dead_event, rejections_reset


@pytest.fixture
def events(db):
    made = [WebhookEventFactory(status=WebhookStatus.PROCESSED) for _ in range(60)]
    made += [
        WebhookEventFactory(type="invoice.paid", status=WebhookStatus.FAILED) for _ in range(3)
    ]
    dead = dead_event("evt_dead_one", "sub_dead", "cus_dead", last_error="ValueError: boom")
    WebhookAttempt.objects.create(event=dead, outcome="dead", error="ValueError: boom")
    return [*made, dead]


@pytest.mark.smoke
@pytest.mark.django_db
def test_admin_sees_counts_filters_and_pages(admin_client_, events, django_assert_max_num_queries):
    rejections_reset()
    webhook_rejection_record(kind="signature", reason="no signature matched")
    with django_assert_max_num_queries(12):
        response = admin_client_.get(reverse("webhook_list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-count="backlog">3<' in html
    assert 'data-count="dead">1<' in html
    assert 'data-rejected="signature">1<' in html
    assert "Replay all dead-lettered" in html
    assert "Page 1 of 2 (64 events)" in html
    filtered = admin_client_.get(reverse("webhook_list"), {"status": "failed"})
    assert filtered.context["page"].paginator.count == 3
    by_type = admin_client_.get(reverse("webhook_list"), {"type": "invoice.paid", "page": 1})
    assert {e.type for e in by_type.context["page"].object_list} == {"invoice.paid"}


@pytest.mark.django_db
def test_query_count_does_not_grow_with_rows(admin_client_, events, django_assert_max_num_queries):
    WebhookEventFactory.create_batch(200)
    with django_assert_max_num_queries(12):
        assert admin_client_.get(reverse("webhook_list"), {"page": 3}).status_code == 200


@pytest.mark.django_db
def test_htmx_filter_returns_only_the_events_partial(admin_client_, events):
    response = admin_client_.get(
        reverse("webhook_list"),
        {"status": "dead"},
        headers={"HX-Request": "true", "HX-Target": "events"},
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="events">')
    assert "evt_dead_one" in html
    assert "<html" not in html


@pytest.mark.django_db
def test_detail_shows_payload_and_history(support_client, events):
    dead = WebhookEvent.objects.get(provider_event_id="evt_dead_one")
    response = support_client.get(reverse("webhook_detail", args=[dead.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "&quot;sub_dead&quot;" in html and "\n  &quot;data&quot;: {" in html  # pretty-printed
    assert "ValueError: boom" in html
    assert "Replay this event" not in html  # Support reads only


@pytest.mark.smoke
@pytest.mark.django_db
def test_support_cannot_replay(support_client, events):
    dead = WebhookEvent.objects.get(provider_event_id="evt_dead_one")
    page = support_client.get(reverse("webhook_list")).content.decode()
    assert "Replay all dead-lettered" not in page
    assert support_client.post(reverse("webhook_replay", args=[dead.pk])).status_code == 403
    assert support_client.post(reverse("webhook_replay_dead")).status_code == 403
    dead.refresh_from_db()
    assert dead.status == WebhookStatus.DEAD


@pytest.mark.django_db
def test_customer_and_anonymous_are_kept_out(client, customer_client):
    assert customer_client.get(reverse("webhook_list")).status_code == 403
    client.logout()
    response = client.get(reverse("webhook_list"))
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.django_db
def test_admin_replays_one_event_with_htmx(
    admin_client_, events, django_capture_on_commit_callbacks
):
    AccountFactory(stripe_customer_id="cus_dead")
    dead = WebhookEvent.objects.get(provider_event_id="evt_dead_one")
    detail = admin_client_.get(reverse("webhook_detail", args=[dead.pk])).content.decode()
    assert 'hx-confirm="Process evt_dead_one again?"' in detail
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            reverse("webhook_replay", args=[dead.pk]), headers={"HX-Request": "true"}
        )
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("webhook_detail", args=[dead.pk])
    dead.refresh_from_db()
    assert dead.status == WebhookStatus.PROCESSED
    assert WebhookAttempt.objects.filter(event=dead).latest("id").trigger.startswith("replay:")


@pytest.mark.django_db
def test_admin_replays_all_dead(admin_client_, events, django_capture_on_commit_callbacks):
    WebhookEventFactory(type="balance.available", status=WebhookStatus.DEAD)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client_.post(reverse("webhook_replay_dead"))
    assert response.status_code == 302
    assert len(callbacks) == 1
    assert not WebhookEvent.objects.filter(status=WebhookStatus.DEAD).exists()
    # The failed ones wait for their backoff: "replay all dead" leaves them alone.
    assert WebhookEvent.objects.filter(status=WebhookStatus.FAILED).count() == 3
