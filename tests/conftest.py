"""Shared fixtures: role users and logged-in clients. Factories live in tests/factories.py."""

import pytest
from django.conf import settings

from accounts.roles import ROLE_ADMIN, ROLE_FINANCE, ROLE_SUPPORT
from tests.factories import StaffFactory, UserFactory

pytest_plugins = ["tests.fakes.plugin"]


def pytest_collection_modifyitems(config, items):
    """Skip what the configured backends cannot run, loudly (-ra lists every skip)."""
    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(pytest.mark.skip(reason="needs DATABASE_URL=postgres://..."))
        if "redis" in item.keywords and not settings.REDIS_URL:
            item.add_marker(pytest.mark.skip(reason="needs REDIS_URL"))


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache (Redis db of its own in CI): no throttle or session
    left over from another test or run."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _fresh_api_tokens():
    """No API token cached and no use counted by an earlier test (a leftover count would be
    written to a row another test reuses the id of, or to the real database at exit)."""
    from accounts.services.tokens import api_token_state_reset

    api_token_state_reset()
    yield
    api_token_state_reset()


@pytest.fixture
def customer(db):
    return UserFactory()


@pytest.fixture
def support_user(db):
    return StaffFactory(role=ROLE_SUPPORT, email="support@janitor.test")


@pytest.fixture
def finance_user(db):
    return StaffFactory(role=ROLE_FINANCE, email="finance@janitor.test")


@pytest.fixture
def admin_user(db):
    return StaffFactory(role=ROLE_ADMIN, email="admin@janitor.test")


@pytest.fixture
def second_admin(db):
    return StaffFactory(role=ROLE_ADMIN, email="admin2@janitor.test")


def _client_for(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def support_client(client, support_user):
    return _client_for(client, support_user)


@pytest.fixture
def finance_client(client, finance_user):
    return _client_for(client, finance_user)


@pytest.fixture
def admin_client_(client, admin_user):
    """A client signed in as an Admin-role staff user (not a Django superuser)."""
    return _client_for(client, admin_user)


@pytest.fixture
def customer_client(client, customer):
    return _client_for(client, customer)
