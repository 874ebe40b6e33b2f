"""Enforcement: the backend refuses revoked accounts at login; the middleware ends sessions."""

import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.backends import ACCESS_REFUSED_MESSAGE
from accounts.models import AccessStatus
from accounts.services import sessions as session_index
from accounts.services.access_status import access_status_change
from tests.factories import PASSWORD, UserFactory


def _set_status(user, *statuses):
    for status in statuses:
        access_status_change(
            account=user.account,
            to_status=status,
            actor="admin@janitor.test",
            reason="test",
            grace_ends_at=timezone.now() if status == AccessStatus.GRACE_PERIOD else None,
        )


def _login_response(email, password):
    return Client().post(reverse("customer_login"), {"username": email, "password": password})


@pytest.mark.smoke
@pytest.mark.parametrize(
    "statuses",
    [(AccessStatus.REVOKED_PENDING,), (AccessStatus.REVOKED_PENDING, AccessStatus.REVOKED)],
    ids=["revoked_pending", "revoked"],
)
def test_login_refused_with_the_access_message_only_after_the_right_password(customer, statuses):
    _set_status(customer, *statuses)
    right = _login_response(customer.email, PASSWORD)
    wrong = _login_response(customer.email, "not-the-password")
    unknown = _login_response("nobody@example.com", "not-the-password")
    assert right.status_code == wrong.status_code == unknown.status_code == 200
    assert ACCESS_REFUSED_MESSAGE in right.content.decode()
    # A wrong guess learns nothing: the same generic answer as for an unknown email.
    for response in (wrong, unknown):
        body = response.content.decode()
        assert ACCESS_REFUSED_MESSAGE not in body
        assert "Please enter a correct email and password" in body
    assert settings.SESSION_COOKIE_NAME not in Client().cookies


def test_backend_refuses_and_marks_the_request(customer):
    _set_status(customer, AccessStatus.REVOKED_PENDING)
    request = RequestFactory().post("/app/login/")
    assert authenticate(request, username=customer.email, password=PASSWORD) is None
    assert request.access_refused is True


@pytest.mark.parametrize("status", [AccessStatus.ACTIVE, AccessStatus.GRACE_PERIOD])
def test_active_and_grace_accounts_sign_in(db, status):
    user = UserFactory()
    if status == AccessStatus.GRACE_PERIOD:
        _set_status(user, status)
    assert authenticate(None, username=user.email.upper(), password=PASSWORD) == user
    assert authenticate(None, username=user.email, password="wrong") is None


def test_unknown_email_and_wrong_password_get_the_generic_error(customer):
    for email, password in ((customer.email, "wrong"), ("nobody@example.com", PASSWORD)):
        body = _login_response(email, password).content.decode()
        assert "Please enter a correct" in body
        assert ACCESS_REFUSED_MESSAGE not in body


@pytest.mark.smoke
def test_middleware_ends_the_session_of_a_revoked_user_on_the_next_request(customer):
    client = Client()
    client.force_login(customer)
    session_index.session_index_forget(
        session_key=client.cookies[settings.SESSION_COOKIE_NAME].value, user_id=customer.pk
    )
    # Revoked without the staged service: the session survives in the store.
    _set_status(customer, AccessStatus.REVOKED_PENDING, AccessStatus.REVOKED)
    response = client.get(reverse("customer_home"), follow=True)
    assert response.redirect_chain[0] == (reverse("customer_login"), 302)
    assert ACCESS_REFUSED_MESSAGE in response.content.decode()
    # Ended, not just refused once: the next request is plainly anonymous.
    again = client.get(reverse("customer_home"))
    assert again.status_code == 302 and again.url.startswith(reverse("customer_login") + "?next=")


def test_middleware_keeps_revoked_pending_sessions(customer):
    client = Client()
    client.force_login(customer)
    _set_status(customer, AccessStatus.REVOKED_PENDING)
    assert client.get(reverse("customer_home")).status_code == 200


def test_htmx_requests_are_redirected_with_hx_redirect(customer):
    client = Client()
    client.force_login(customer)
    _set_status(customer, AccessStatus.REVOKED_PENDING, AccessStatus.REVOKED)
    response = client.get(reverse("customer_home"), headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert response["HX-Redirect"] == reverse("customer_login")


@pytest.mark.smoke
def test_a_session_ended_by_revocation_explains_itself_once(customer):
    client = Client()
    client.force_login(customer)
    _set_status(customer, AccessStatus.REVOKED_PENDING)
    session_index.sessions_revoke_all(user=customer)
    _set_status(customer, AccessStatus.REVOKED)

    response = client.get(reverse("customer_home"), follow=True)
    assert response.redirect_chain[0] == (reverse("customer_login"), 302)
    assert ACCESS_REFUSED_MESSAGE in response.content.decode()
    assert client.cookies[settings.SESSION_COOKIE_NAME].value == ""  # stale cookie dropped


def test_an_ended_session_of_a_restored_user_is_just_anonymous(customer):
    client = Client()
    client.force_login(customer)
    _set_status(customer, AccessStatus.REVOKED_PENDING)
    session_index.sessions_revoke_all(user=customer)
    _set_status(customer, AccessStatus.REVOKED, AccessStatus.ACTIVE)
    response = client.get(reverse("customer_home"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("customer_login") + "?next=")


def test_anonymous_requests_pass_untouched(client, db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get(reverse("customer_login"))
    assert response.status_code == 200
