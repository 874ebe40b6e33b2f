"""The dashboard shell: staff only, an overview with counts, an empty state, the account page."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import (
    AccountFactory,
    FlagFactory,
    SubscriptionFactory,
    UserFactory,
    WebhookEventFactory,
)

pytestmark = pytest.mark.django_db


def _dashboard_urls(account):
    return [reverse("overview"), reverse("account_detail", args=[account.public_id])]


@pytest.mark.smoke
def test_customer_cannot_open_any_dashboard_page(customer_client, customer):
    for url in _dashboard_urls(customer):
        assert customer_client.get(url).status_code == 403, url


def test_anonymous_is_sent_to_login(client, customer):
    for url in _dashboard_urls(customer):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_customer_cannot_sign_in_to_the_dashboard(client, customer):
    from tests.factories import PASSWORD

    response = client.post(reverse("login"), {"username": customer.email, "password": PASSWORD})
    assert response.status_code == 200
    assert "This sign-in is for Janitor staff" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.smoke
def test_overview_empty_state(support_client):
    page = support_client.get(reverse("overview")).content.decode()
    assert "No accounts yet" in page and "Nothing to review" in page and "No run yet" in page


def test_overview_counts(support_client, django_assert_max_num_queries):
    UserFactory.create_batch(3)
    AccountFactory(access_status="revoked", is_active=False)
    FlagFactory.create_batch(2, kind="manual_grant")
    WebhookEventFactory(status="dead")
    # One fixed query more than before issue 15: the disputes due within 7 days; one more
    # since issue 19: failing and dead deliveries to products.
    with django_assert_max_num_queries(12):
        response = support_client.get(reverse("overview"))
    overview = response.context["overview"]
    assert dict((v, n) for v, _label, n in overview.status_counts)["active"] == 5
    assert overview.customers_total == 6  # 3 + 1 revoked + 2 flagged accounts
    assert overview.open_flags == [("manual_grant", "Manual grant", 2)]
    assert overview.webhook_dead == 1 and overview.webhook_backlog == 0


def test_account_page_shows_subscriptions_and_flags(support_client, django_assert_max_num_queries):
    account = AccountFactory()
    SubscriptionFactory(account=account, provider_id="sub_shown")
    FlagFactory(account=account, kind="payment_failed")
    # 14 before team accounts, plus the members: count, page, last activity (and on the
    # embedded default the session index is a table).
    with django_assert_max_num_queries(18):
        page = support_client.get(reverse("account_detail", args=[account.public_id]))
    body = page.content.decode()
    assert page.status_code == 200 and "sub_shown" in body and "Payment failed" in body


def test_healthz(client):
    assert client.get("/healthz").json() == {"ok": True}


def test_staff_login_is_throttled_after_repeated_failures(client, support_user, settings):
    from tests.factories import PASSWORD

    settings.JANITOR_LOGIN_MAX_FAILURES = 3
    url = reverse("login")
    for _ in range(3):
        page = client.post(url, {"username": support_user.email, "password": "wrong"})
        assert "Please enter a correct" in page.content.decode()
    page = client.post(url, {"username": support_user.email, "password": PASSWORD})
    assert "Too many failed sign-ins" in page.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_account_page_shows_open_flags_first_and_not_every_flag_ever(support_client):
    """The nightly audit opens and resolves flags for years: the page shows the open ones and
    the newest resolved ones, up to FLAGS_SHOWN, and says how many there are."""
    from janitor.selectors.accounts import FLAGS_SHOWN
    from reconciliation.models import Flag, FlagStatus

    account = AccountFactory()
    old = [
        FlagFactory(
            account=account,
            kind="payment_failed",
            status=FlagStatus.RESOLVED,
            resolved_at=timezone.now(),
            resolution="Paid again",
        )
        for _ in range(FLAGS_SHOWN + 5)
    ]
    Flag.objects.filter(pk__in=[f.pk for f in old]).update(
        opened_at=timezone.now() - timedelta(days=400)
    )
    open_flag = FlagFactory(account=account, kind="manual_grant")
    Flag.objects.filter(pk=open_flag.pk).update(opened_at=timezone.now() - timedelta(days=900))

    body = support_client.get(reverse("account_detail", args=[account.public_id])).content.decode()

    assert body.count('class="account-flag"') == FLAGS_SHOWN
    assert f'data-flag="{open_flag.pk}"' in body  # open first, however old
    assert f"Showing {FLAGS_SHOWN} of {FLAGS_SHOWN + 6} flags" in body
