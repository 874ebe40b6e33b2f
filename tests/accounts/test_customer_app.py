"""The customer surface: /app/login/, /app/ and /app/logout/."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.services import sessions as session_index
from tests.factories import PASSWORD


@pytest.mark.smoke
def test_customer_signs_in_and_sees_who_is_signed_in(client, customer):
    assert client.get(reverse("customer_home")).url == reverse("customer_login") + "?next=/app/"
    response = client.post(
        reverse("customer_login"),
        {"username": customer.email, "password": PASSWORD, "next": "/app/"},
        follow=True,
    )
    assert response.redirect_chain == [("/app/", 302)]
    assert f"Signed in as <strong>{customer.email}</strong>" in response.content.decode()


def test_customer_logout_is_post_only_and_ends_the_session(client, customer):
    client.post(reverse("customer_login"), {"username": customer.email, "password": PASSWORD})
    assert client.get(reverse("customer_logout")).status_code == 405
    response = client.post(reverse("customer_logout"))
    assert response.status_code == 302 and response.url == reverse("customer_login")
    assert client.get(reverse("customer_home")).status_code == 302
    assert session_index.session_keys_for(user=customer) == []


def test_staff_are_refused_at_the_customer_login(client, support_user):
    response = client.post(
        reverse("customer_login"), {"username": support_user.email, "password": PASSWORD}
    )
    assert response.status_code == 200
    assert "Staff sign in to the dashboard at /login/." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_staff_on_the_customer_page_go_to_the_dashboard(support_client):
    response = support_client.get(reverse("customer_home"))
    assert response.status_code == 302 and response.url == reverse("overview")


def test_customers_never_see_the_dashboard(customer_client):
    assert customer_client.get(reverse("overview")).status_code == 403


def test_a_signed_in_customer_visiting_login_goes_to_the_app(customer_client):
    response = customer_client.get(reverse("customer_login"))
    assert response.status_code == 302 and response.url == reverse("customer_home")


def test_login_rejects_an_offsite_next(client, customer):
    response = client.post(
        reverse("customer_login"),
        {"username": customer.email, "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert response.url == reverse("customer_home")


def test_customer_login_needs_csrf(customer):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        reverse("customer_login"), {"username": customer.email, "password": PASSWORD}
    )
    assert response.status_code == 403


def test_customer_login_is_throttled_like_the_staff_one(settings, client, customer):
    from janitor.ratelimit import LOCKED_MESSAGE

    settings.JANITOR_LOGIN_MAX_FAILURES = 2
    for _ in range(2):
        client.post(reverse("customer_login"), {"username": customer.email, "password": "bad"})
    response = client.post(
        reverse("customer_login"), {"username": customer.email, "password": PASSWORD}
    )
    assert LOCKED_MESSAGE in response.content.decode()
    assert "_auth_user_id" not in client.session
