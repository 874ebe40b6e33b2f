"""The sign-in throttle, through every sign-in URL: the staff, customer and Django admin logins.

Each path locks (address, email) after JANITOR_LOGIN_MAX_FAILURES and an address after
JANITOR_LOGIN_MAX_FAILURES_PER_ADDRESS failures across emails; the address is the client's as
client_ip() resolves it through JANITOR_TRUSTED_PROXIES.
"""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.roles import ROLE_SUPPORT
from janitor.ratelimit import LOCKED_MESSAGE
from tests.factories import PASSWORD, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"
ATTACKER = "203.0.113.9"
REAL_USER = "198.51.100.7"

# name -> (URL, whether the account signing in there is staff, where a success redirects)
SIGN_IN_PATHS = {
    "staff": ("/login/", True, "/"),
    "customer": ("/app/login/", False, "/app/"),
    # Without ?next= the admin login sends a success to LOGIN_REDIRECT_URL, like the others.
    "django-admin": ("/django-admin/login/", True, "/"),
}


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.JANITOR_LOGIN_MAX_FAILURES = 3
    settings.JANITOR_LOGIN_MAX_FAILURES_PER_ADDRESS = 5
    settings.JANITOR_TRUSTED_PROXIES = frozenset()


def _account(is_staff: bool):
    if is_staff:
        return StaffFactory(role=ROLE_SUPPORT)
    return UserFactory()


def _post(url, email, password, *, remote=ATTACKER, forwarded=None):
    client = Client()
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    response = client.post(
        url, {"username": email, "password": password}, REMOTE_ADDR=remote, headers=headers
    )
    return client, response


def _signed_in(client, response, user, success_url) -> bool:
    return (
        response.status_code == 302
        and response["Location"] == success_url
        and client.session.get("_auth_user_id") == str(user.pk)
    )


def _assert_locked(client, response, user):
    assert response.status_code == 200
    assert LOCKED_MESSAGE in response.content.decode()
    assert "_auth_user_id" not in client.session
    user.refresh_from_db()
    assert user.last_login is None  # nothing about a sign-in was stored


@pytest.mark.parametrize("path", SIGN_IN_PATHS, ids=list(SIGN_IN_PATHS))
def test_each_path_locks_an_email_from_one_address_only(path):
    url, is_staff, success_url = SIGN_IN_PATHS[path]
    user = _account(is_staff)
    for _ in range(3):
        client, response = _post(url, user.email, "wrong-guess")
        assert response.status_code == 200 and "_auth_user_id" not in client.session

    client, response = _post(url, user.email, PASSWORD)
    _assert_locked(client, response, user)

    # The same email from another address is not locked.
    client, response = _post(url, user.email, PASSWORD, remote=REAL_USER)
    assert _signed_in(client, response, user, success_url)


@pytest.mark.parametrize("path", SIGN_IN_PATHS, ids=list(SIGN_IN_PATHS))
def test_behind_a_trusted_proxy_the_client_address_is_what_counts(settings, path):
    """Every client arrives from the proxy: locking the attacker must not lock the user."""
    settings.JANITOR_TRUSTED_PROXIES = frozenset({PROXY})
    url, is_staff, success_url = SIGN_IN_PATHS[path]
    user = _account(is_staff)
    for _ in range(3):
        _post(url, user.email, "wrong-guess", remote=PROXY, forwarded=ATTACKER)

    client, response = _post(url, user.email, PASSWORD, remote=PROXY, forwarded=ATTACKER)
    _assert_locked(client, response, user)

    client, response = _post(url, user.email, PASSWORD, remote=PROXY, forwarded=REAL_USER)
    assert _signed_in(client, response, user, success_url)


@pytest.mark.parametrize("path", SIGN_IN_PATHS, ids=list(SIGN_IN_PATHS))
def test_an_untrusted_peer_cannot_pick_its_address_with_x_forwarded_for(path):
    url, is_staff, _success = SIGN_IN_PATHS[path]
    user = _account(is_staff)
    for n in range(3):
        _post(url, user.email, "wrong-guess", forwarded=f"192.0.2.{n + 1}")

    client, response = _post(url, user.email, PASSWORD, forwarded="192.0.2.99")
    _assert_locked(client, response, user)


@pytest.mark.parametrize("path", SIGN_IN_PATHS, ids=list(SIGN_IN_PATHS))
@pytest.mark.parametrize("proxied", [False, True], ids=["direct", "behind-proxy"])
def test_one_address_spraying_many_emails_is_locked(settings, path, proxied):
    url, is_staff, success_url = SIGN_IN_PATHS[path]
    if proxied:
        settings.JANITOR_TRUSTED_PROXIES = frozenset({PROXY})
    via = {"remote": PROXY, "forwarded": ATTACKER} if proxied else {"remote": ATTACKER}
    sprayed = [_account(is_staff) for _ in range(5)]
    for victim in sprayed:  # one guess each: under the per-email limit
        _post(url, victim.email, "Winter2026!", **via)

    user = _account(is_staff)
    client, response = _post(url, user.email, PASSWORD, **via)
    _assert_locked(client, response, user)

    other = {"remote": PROXY, "forwarded": REAL_USER} if proxied else {"remote": REAL_USER}
    client, response = _post(url, user.email, PASSWORD, **other)
    assert _signed_in(client, response, user, success_url)


def test_a_success_forgives_the_email_but_not_the_address():
    """Guessing other emails between one's own sign-ins still adds up to the address limit."""
    url = "/app/login/"
    mine = UserFactory()
    victims = [UserFactory() for _ in range(5)]
    for victim in victims[:4]:
        _post(url, victim.email, "guess")
        assert _signed_in(*_post(url, mine.email, PASSWORD), mine, "/app/")
    _post(url, victims[4].email, "guess")  # the address's fifth failure

    client, response = _post(url, mine.email, PASSWORD)
    assert response.status_code == 200 and LOCKED_MESSAGE in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_admin_site_uses_the_throttled_form():
    from django.contrib import admin

    from janitor.forms import AdminLoginForm

    assert admin.site.login_form is AdminLoginForm
    assert reverse("admin:login") == "/django-admin/login/"
