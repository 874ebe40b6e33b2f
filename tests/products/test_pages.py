"""The product Endpoints pages (Admins) and the Deliveries page (Support, Admins), and the
overview's count of failing deliveries."""

from __future__ import annotations

import html

import pytest
from django.db import transaction
from django.urls import reverse

from accounts.models import ApiScope
from accounts.services.access_changes import access_changed
from accounts.services.tokens import api_token_create, api_token_revoke
from products.models import AccessEvent, Delivery, DeliveryAttempt, ProductEndpoint
from products.services.endpoints import secret_fingerprint
from tests.factories import AccountFactory


@pytest.fixture
def access_token(admin_user):
    token, _raw = api_token_create(
        name="Shop", created_by=admin_user, scopes=[ApiScope.ACCESS_READ]
    )
    return token


def _form(**overrides):
    data = {"name": "Shop", "url": "https://shop.example/janitor/events", "token": ""}
    data.update(overrides)
    return data


def _change(account, event_type=AccessEvent.GRACE_STARTED) -> Delivery:
    with transaction.atomic():
        access_changed(account=account, event_type=event_type)
    return Delivery.objects.filter(account=account).order_by("-id").first()


# --- Endpoints ------------------------------------------------------------------------------


@pytest.mark.smoke
def test_an_admin_adds_an_endpoint_and_sees_its_secret(admin_client_, admin_user):
    empty = admin_client_.get(reverse("product_endpoint_list"))
    assert "No product endpoint yet" in empty.content.decode()

    response = admin_client_.post(reverse("product_endpoint_list"), _form())

    endpoint = ProductEndpoint.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("product_endpoint_detail", args=[endpoint.pk])
    assert (endpoint.name, endpoint.url, endpoint.created_by) == (
        "Shop",
        "https://shop.example/janitor/events",
        admin_user,
    )
    assert endpoint.secret.startswith("whsec_") and endpoint.is_enabled
    [created] = endpoint.changes.all()
    assert (created.kind, created.actor_user) == ("created", admin_user)
    page = admin_client_.get(response["Location"]).content.decode()
    assert endpoint.secret in page
    listing = admin_client_.get(reverse("product_endpoint_list")).content.decode()
    assert f'data-endpoint="{endpoint.pk}"' in listing


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"url": "ftp://shop.example/x"}, "url", "Enter a valid URL"),
        ({"name": ""}, "name", "This field is required"),
        ({"holds_sessions": "on"}, "token", "needs a token"),
    ],
)
def test_a_bad_endpoint_is_refused_and_nothing_stored(admin_client_, overrides, field, message):
    response = admin_client_.post(reverse("product_endpoint_list"), _form(**overrides))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert f'data-field-error="{field}"' in response.content.decode()
    assert not ProductEndpoint.objects.exists()


def test_only_live_access_read_tokens_can_be_chosen(admin_client_, admin_user, access_token):
    activity_only, _ = api_token_create(name="Activity", created_by=admin_user)
    revoked, _ = api_token_create(name="Old", created_by=admin_user, scopes=[ApiScope.ACCESS_READ])
    api_token_revoke(token=revoked)

    for token in (activity_only, revoked):
        response = admin_client_.post(
            reverse("product_endpoint_list"), _form(holds_sessions="on", token=token.pk)
        )
        assert response.status_code == 400
        assert 'data-field-error="token"' in response.content.decode()
    assert not ProductEndpoint.objects.exists()

    ok = admin_client_.post(
        reverse("product_endpoint_list"), _form(holds_sessions="on", token=access_token.pk)
    )
    assert ok.status_code == 302
    endpoint = ProductEndpoint.objects.get()
    assert endpoint.holds_sessions and endpoint.token == access_token


def test_a_token_confirms_for_one_endpoint_only(admin_client_, access_token):
    """Confirming with a token marks every endpoint of that token as done: two products sharing
    one would each confirm for the other, whose sessions may be alive."""
    first = admin_client_.post(
        reverse("product_endpoint_list"), _form(holds_sessions="on", token=access_token.pk)
    )
    assert first.status_code == 302
    second = admin_client_.post(
        reverse("product_endpoint_list"),
        _form(name="Shop 2", holds_sessions="on", token=access_token.pk),
    )
    assert second.status_code == 400
    assert "already confirms for Shop" in html.unescape(second.content.decode())
    assert ProductEndpoint.objects.count() == 1
    # Editing the endpoint that holds it keeps it.
    endpoint = ProductEndpoint.objects.get()
    edit = admin_client_.post(
        reverse("product_endpoint_detail", args=[endpoint.pk]),
        _form(url="https://shop.example/v2", holds_sessions="on", token=access_token.pk),
    )
    assert edit.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.url == "https://shop.example/v2" and endpoint.token == access_token


def test_an_endpoint_saved_by_another_admin_meanwhile_is_a_form_error(
    admin_client_, access_token, monkeypatch
):
    """Two Admins save endpoints with one token at the same moment: both checks pass, the
    unique constraint refuses the second write, and that was a 500 (found in review). The
    second Admin is told why, as the check would have, and nothing is stored."""
    from products.services import endpoints

    real_check = endpoints.endpoint_token_check
    calls: list[int] = []

    def other_admin_saves_first(**kwargs):
        if not calls:  # our check passes, then the other Admin's endpoint commits
            calls.append(1)
            ProductEndpoint.objects.create(
                name="Other shop",
                url="https://other.example/",
                holds_sessions=True,
                token=access_token,
            )
            return None
        return real_check(**kwargs)

    monkeypatch.setattr(endpoints, "endpoint_token_check", other_admin_saves_first)
    response = admin_client_.post(
        reverse("product_endpoint_list"), _form(holds_sessions="on", token=access_token.pk)
    )
    assert response.status_code == 400, response.status_code
    assert "already confirms for Other shop" in html.unescape(response.content.decode())
    assert ProductEndpoint.objects.count() == 1


def test_a_name_taken_between_the_check_and_the_write_is_a_form_error(admin_client_, monkeypatch):
    """The same race on the name: the name is checked inside the transaction, but another
    Admin's endpoint can commit before the insert, and the unique name refuses it."""
    from products.services import endpoints

    ProductEndpoint.objects.create(name="Shop", url="https://other.example/")

    def write_as_if_the_check_had_passed(**kwargs):
        with transaction.atomic():
            return ProductEndpoint.objects.create(name=kwargs["name"], url=kwargs["url"])

    monkeypatch.setattr(endpoints, "_endpoint_create", write_as_if_the_check_had_passed)
    response = admin_client_.post(reverse("product_endpoint_list"), _form())
    assert response.status_code == 400, response.status_code
    assert "already exists" in response.content.decode()
    assert ProductEndpoint.objects.count() == 1


def test_a_duplicate_name_is_refused(admin_client_):
    ProductEndpoint.objects.create(name="Shop", url="https://a.example/")
    response = admin_client_.post(reverse("product_endpoint_list"), _form(name="shop"))
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert ProductEndpoint.objects.count() == 1
    assert not ProductEndpoint.objects.get().changes.exists()


def test_an_admin_edits_disables_and_rotates(admin_client_, access_token):
    endpoint = ProductEndpoint.objects.create(name="Shop", url="https://a.example/")
    old_secret = endpoint.secret
    url = reverse("product_endpoint_detail", args=[endpoint.pk])

    saved = admin_client_.post(
        url, _form(url="https://b.example/events", holds_sessions="on", token=access_token.pk)
    )
    assert saved.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.holds_sessions, endpoint.token) == (
        "https://b.example/events",
        True,
        access_token,
    )

    refused = admin_client_.post(url, _form(token=""))  # holds_sessions unticked: fine
    assert refused.status_code == 302
    endpoint.refresh_from_db()
    assert not endpoint.holds_sessions and endpoint.token is None

    set_enabled = reverse("product_endpoint_set_enabled", args=[endpoint.pk])
    assert admin_client_.post(set_enabled, {"enabled": "maybe"}).status_code == 400
    admin_client_.post(set_enabled, {"enabled": "false"})
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled
    again = admin_client_.post(set_enabled, {"enabled": "false"}, follow=True)
    assert "already disabled" in again.content.decode()
    admin_client_.post(set_enabled, {"enabled": "true"}, HTTP_HX_REQUEST="true")
    endpoint.refresh_from_db()
    assert endpoint.is_enabled

    page = admin_client_.get(url).content.decode()
    assert "hx-confirm=" in page and "Rotate the signing secret" in page
    admin_client_.post(reverse("product_endpoint_rotate_secret", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert endpoint.secret != old_secret and endpoint.secret.startswith("whsec_")

    # Every change is on the record, who and what, never the secret itself.
    changes = list(endpoint.changes.order_by("id").values_list("kind", "actor", "details"))
    assert [kind for kind, _actor, _details in changes] == [
        "changed",
        "changed",
        "disabled",
        "enabled",
        "secret_rotated",
    ]
    assert {actor for _kind, actor, _details in changes} == {"admin@janitor.test"}
    assert changes[0][2]["url"] == ["https://a.example/", "https://b.example/events"]
    assert changes[1][2]["token"] == [access_token.pk, None]
    assert endpoint.secret not in str(changes) and old_secret not in str(changes)
    # Not even its first characters (the key's bits): a fingerprint tells secrets apart.
    assert endpoint.secret.removeprefix("whsec_")[:4] not in str(changes[4][2])
    assert changes[4][2] == {"secret_fingerprint": secret_fingerprint(endpoint.secret)}
    history = admin_client_.get(url).content.decode()
    assert history.count("data-change=") == 5


def test_support_cannot_open_the_endpoints(support_client):
    endpoint = ProductEndpoint.objects.create(name="Shop", url="https://a.example/")
    assert support_client.get(reverse("product_endpoint_list")).status_code == 403
    response = support_client.post(reverse("product_endpoint_rotate_secret", args=[endpoint.pk]))
    assert response.status_code == 403
    assert ProductEndpoint.objects.get().secret == endpoint.secret
    assert not endpoint.changes.exists()


# --- Deliveries -----------------------------------------------------------------------------


@pytest.fixture
def deliveries(db):
    shop = ProductEndpoint.objects.create(name="Shop", url="http://127.0.0.1:9/a")
    crm = ProductEndpoint.objects.create(name="CRM", url="http://127.0.0.1:9/b")
    first, second = AccountFactory(), AccountFactory()
    _change(first, AccessEvent.GRACE_STARTED)
    _change(second, AccessEvent.REVOKED)
    Delivery.objects.filter(account=second, endpoint=crm).update(
        status="failing", attempts=2, last_error="HTTP 500: down"
    )
    return {"shop": shop, "crm": crm, "first": first, "second": second}


def test_the_deliveries_list_filters(support_client, deliveries, django_assert_max_num_queries):
    url = reverse("delivery_list")
    with django_assert_max_num_queries(12):
        page = support_client.get(url)
    assert page.status_code == 200
    assert page.content.decode().count("data-delivery=") == 4

    def shown(**query):
        body = support_client.get(url, query).content.decode()
        return body.count("data-delivery=")

    assert shown(status="failing") == 1
    assert shown(endpoint=deliveries["crm"].pk) == 2
    assert shown(event_type="access.revoked") == 2
    assert shown(account=deliveries["first"].public_id) == 2
    assert shown(account=deliveries["first"].public_id, endpoint=deliveries["shop"].pk) == 1
    assert shown(status="delivered") == 0
    assert "No delivery matches" in support_client.get(url, {"status": "dead"}).content.decode()
    # Unknown filter values are ignored, not an error ("²" passes str.isdigit(), not int()).
    assert shown(status="nope", endpoint="x", event_type="y") == 4
    assert shown(endpoint="²") == shown(endpoint="9" * 40) == 4


def test_the_deliveries_list_paginates_and_answers_htmx_with_the_list(support_client, deliveries):
    for _ in range(30):
        _change(deliveries["first"])
    url = reverse("delivery_list")
    first = support_client.get(url).content.decode()
    assert first.count("data-delivery=") == 50 and "Page 1 of 2" in first
    partial = support_client.get(
        url, {"page": 2}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="deliveries"
    ).content.decode()
    assert partial.count("data-delivery=") == 14
    assert "<html" not in partial and 'id="deliveries"' in partial


def test_the_empty_deliveries_page(support_client):
    body = support_client.get(reverse("delivery_list")).content.decode()
    assert "No delivery yet" in body


def test_a_delivery_shows_payload_and_attempts(support_client, deliveries):
    delivery = Delivery.objects.get(account=deliveries["second"], endpoint=deliveries["crm"])
    DeliveryAttempt.objects.create(delivery=delivery, status_code=500, error="HTTP 500: down")
    page = html.unescape(
        support_client.get(reverse("delivery_detail", args=[delivery.pk])).content.decode()
    )
    assert delivery.webhook_id in page
    assert '"type": "access.revoked"' in page  # the payload, pretty-printed
    assert "HTTP 500: down" in page
    assert "Replay" not in page  # Support reads, Admins replay


def test_an_admin_replays_a_dead_delivery(admin_client_, admin_user, deliveries):
    delivery = Delivery.objects.get(account=deliveries["second"], endpoint=deliveries["crm"])
    Delivery.objects.filter(pk=delivery.pk).update(status="dead")
    page = admin_client_.get(reverse("delivery_detail", args=[delivery.pk])).content.decode()
    assert "hx-confirm=" in page and ">Replay</button>" in page

    response = admin_client_.post(reverse("delivery_replay", args=[delivery.pk]), follow=True)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.replayed_by) == ("pending", admin_user.email)
    [replayed] = deliveries["crm"].changes.all()
    assert replayed.kind == "delivery_replayed" and replayed.actor_user == admin_user
    assert replayed.details == {
        "delivery": delivery.pk,
        "webhook_id": delivery.webhook_id,
        "was": "dead",
    }
    assert "queued again" in response.content.decode()
    again = admin_client_.post(reverse("delivery_replay", args=[delivery.pk]), follow=True)
    assert "nothing to replay" in again.content.decode()


def test_support_cannot_replay(support_client, deliveries):
    delivery = Delivery.objects.filter(endpoint=deliveries["crm"]).first()
    Delivery.objects.filter(pk=delivery.pk).update(status="dead")
    response = support_client.post(reverse("delivery_replay", args=[delivery.pk]))
    assert response.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == "dead" and delivery.replayed_at is None


def test_the_overview_counts_failing_and_dead_deliveries(support_client, deliveries):
    Delivery.objects.filter(account=deliveries["first"], endpoint=deliveries["crm"]).update(
        status="dead"
    )
    response = support_client.get(reverse("overview"))
    counts = response.context["overview"].deliveries
    assert (counts.failing, counts.dead, counts.pending) == (1, 1, 2)
    body = response.content.decode()
    assert 'data-count="deliveries-failing"' in body
    assert f'href="{reverse("delivery_list")}?status=dead">1</a>' in body
