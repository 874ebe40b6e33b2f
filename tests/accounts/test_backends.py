"""AccessStatusBackend: the password hasher runs on every sign-in path, whatever the account."""

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.backends import ACCESS_REFUSED_MESSAGE
from accounts.models import AccessStatus, User
from accounts.services.access_status import access_status_change
from tests.factories import PASSWORD, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

GENERIC = "Please enter a correct email and password"


class CountingHasher(MD5PasswordHasher):
    """The test suite's hasher, counting how often a password is hashed (encode or verify)."""

    calls = 0

    def encode(self, password, salt):
        type(self).calls += 1
        return super().encode(password, salt)


@pytest.fixture
def hasher_calls(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]  # resets Django's hasher cache
    CountingHasher.calls = 0

    def calls_during(action):
        before = CountingHasher.calls
        result = action()
        return CountingHasher.calls - before, result

    return calls_during


def _revoke(user, *, fully: bool):
    access_status_change(
        account=user.account,
        to_status=AccessStatus.REVOKED_PENDING,
        actor="admin@janitor.test",
        reason="t",
    )
    if fully:
        access_status_change(
            account=user.account,
            to_status=AccessStatus.REVOKED,
            actor="admin@janitor.test",
            reason="t",
        )


def _accounts():
    active = UserFactory()
    grace = UserFactory()
    access_status_change(
        account=grace.account,
        to_status=AccessStatus.GRACE_PERIOD,
        actor="system:test",
        reason="t",
        grace_ends_at=timezone.now(),
    )
    pending, revoked = UserFactory(), UserFactory()
    _revoke(pending, fully=False)
    _revoke(revoked, fully=True)
    imported = UserFactory()
    imported.set_unusable_password()  # as import_accounts makes them
    imported.save(update_fields=["password"])
    return {
        "active": active,
        "grace": grace,
        "revoked_pending": pending,
        "revoked": revoked,
        "imported": imported,
    }


# (account, password) -> what the customer login says
CASES = [
    ("unknown", "whatever-guess", "generic"),
    ("active", "wrong-guess", "generic"),
    ("active", PASSWORD, "signed_in"),
    ("grace", "wrong-guess", "generic"),
    ("grace", PASSWORD, "signed_in"),
    ("revoked_pending", "wrong-guess", "generic"),
    ("revoked_pending", PASSWORD, "refused"),
    ("revoked", "wrong-guess", "generic"),
    ("revoked", PASSWORD, "refused"),
    ("imported", PASSWORD, "generic"),
]


@pytest.mark.parametrize(("who", "password", "outcome"), CASES)
def test_every_customer_sign_in_path_runs_the_hasher(hasher_calls, who, password, outcome):
    accounts = _accounts()
    email = accounts[who].email if who in accounts else "nobody@example.com"
    client = Client()
    calls, response = hasher_calls(
        lambda: client.post(reverse("customer_login"), {"username": email, "password": password})
    )
    assert calls >= 1
    body = response.content.decode()
    if outcome == "signed_in":
        assert response.status_code == 302 and "_auth_user_id" in client.session
        return
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    if outcome == "refused":
        assert ACCESS_REFUSED_MESSAGE in body and GENERIC not in body
    else:
        assert GENERIC in body and ACCESS_REFUSED_MESSAGE not in body


@pytest.mark.parametrize("password", ["wrong-guess", PASSWORD])
def test_a_revoked_staff_member_learns_of_it_only_with_the_right_password(hasher_calls, password):
    staff = StaffFactory()
    User.objects.filter(pk=staff.pk).update(is_active=False)  # staff are switched off, not revoked
    client = Client()
    calls, response = hasher_calls(
        lambda: client.post(reverse("login"), {"username": staff.email, "password": password})
    )
    body = response.content.decode()
    assert calls >= 1 and response.status_code == 200 and "_auth_user_id" not in client.session
    assert (ACCESS_REFUSED_MESSAGE in body) is (password == PASSWORD)
    assert (GENERIC in body) is (password != PASSWORD)
