"""The per-user session index: filled on every login, tidied on logout and expiry."""

from importlib import import_module

import pytest
from django.conf import settings
from django.db.models import F
from django.test import Client
from django.urls import reverse

from accounts.models import SessionRecord, User
from accounts.services import sessions as session_index
from tests.factories import PASSWORD, StaffFactory


def _store():
    return import_module(settings.SESSION_ENGINE).SessionStore


def _customer_login(user) -> tuple[Client, str]:
    client = Client()
    response = client.post(
        reverse("customer_login"), {"username": user.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    return client, client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.mark.smoke
def test_customer_and_staff_logins_are_indexed_and_logout_forgets(customer, admin_user):
    client, key = _customer_login(customer)
    assert session_index.session_keys_for(user=customer) == [key]

    staff = Client()
    response = staff.post(reverse("login"), {"username": admin_user.email, "password": PASSWORD})
    assert response.status_code == 302
    staff_key = staff.cookies[settings.SESSION_COOKIE_NAME].value
    assert session_index.session_keys_for(user=admin_user) == [staff_key]

    client.post(reverse("customer_logout"))
    assert session_index.session_keys_for(user=customer) == []
    assert not _store()().exists(key)


@pytest.mark.smoke
def test_revoke_all_deletes_every_session_and_counts_them(customer):
    keys = [_customer_login(customer)[1] for _ in range(3)]
    assert session_index.sessions_revoke_all(user=customer) == 3
    assert not any(_store()().exists(key) for key in keys)
    assert session_index.session_keys_for(user=customer) == []
    assert session_index.sessions_revoke_all(user=customer) == 0  # idempotent
    # Each ended session left a tombstone naming its owner.
    assert {session_index.session_revoked_owner(session_key=k) for k in keys} == {customer.pk}


def test_revoke_all_counts_only_sessions_still_in_the_store(customer):
    (_, alive), (_, expired) = _customer_login(customer), _customer_login(customer)
    _store()(session_key=expired).delete()  # expired or removed behind the index's back
    assert session_index.sessions_revoke_all(user=customer) == 1
    assert not _store()().exists(alive)


def test_expired_sessions_are_pruned_at_the_next_login(customer):
    _, gone = _customer_login(customer)
    _store()(session_key=gone).delete()
    _, fresh = _customer_login(customer)
    assert session_index.session_keys_for(user=customer) == [fresh]


def test_session_version_bump_ends_a_session_the_index_missed(customer):
    client, key = _customer_login(customer)
    session_index.session_index_forget(session_key=key, user_id=customer.pk)
    assert session_index.sessions_revoke_all(user=customer) == 0
    assert client.get(reverse("customer_home")).status_code == 200

    User.objects.filter(pk=customer.pk).update(session_version=F("session_version") + 1)
    response = client.get(reverse("customer_home"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("customer_login"))


def test_unknown_keys_have_no_owner(db):
    assert session_index.session_revoked_owner(session_key="nope") is None
    assert session_index.session_revoked_owner(session_key="") is None


def test_force_login_is_indexed_too(client, db):
    staff = StaffFactory(role="Support")
    client.force_login(staff)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert session_index.session_keys_for(user=staff) == [key]


def test_database_index_uses_session_records(settings, customer):
    settings.REDIS_URL = ""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    _, key = _customer_login(customer)
    assert list(SessionRecord.objects.values_list("session_key", flat=True)) == [key]
    assert session_index.sessions_revoke_all(user=customer) == 1
    assert list(SessionRecord.objects.values_list("session_key", flat=True)) == [
        session_index.TOMBSTONE + key
    ]


@pytest.mark.redis
def test_redis_client_follows_the_setting_at_call_time(settings):
    live_url = settings.REDIS_URL
    live = session_index._redis()
    settings.REDIS_URL = "redis://127.0.0.1:6390/0"
    dead = session_index._redis()
    assert dead is not live
    assert dead.connection_pool.connection_kwargs["port"] == 6390
    settings.REDIS_URL = live_url
    assert session_index._redis() is live
