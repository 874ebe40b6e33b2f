"""Activity capture: the throttled middleware, client IPs, logins and API tokens."""

import pytest
from django.test import RequestFactory

from accounts.models import ActivityKind, ActivityLog, ApiToken
from accounts.services.activity import (
    _throttle_key,
    activity_record_login,
    activity_record_request,
    client_ip,
)
from accounts.services.tokens import (
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
    api_token_uses_flush,
)
from tests.factories import UserFactory


@pytest.fixture
def throttle(settings):
    settings.JANITOR_ACTIVITY_THROTTLE_SECONDS = 300
    return settings


@pytest.mark.smoke
@pytest.mark.django_db
@pytest.mark.urls("tests.accounts.test_activity_urls")
def test_busy_user_writes_one_row_per_path_per_window(client, throttle):
    user = UserFactory()
    client.force_login(user)
    for _ in range(50):
        assert client.get("/app/projects/").status_code == 200
    for _ in range(30):
        client.get("/app/billing/")
    rows = ActivityLog.objects.filter(member=user)
    assert rows.filter(kind=ActivityKind.REQUEST).count() == 2
    assert set(rows.values_list("path", flat=True)) == {"/app/projects/", "/app/billing/"}


@pytest.mark.django_db
@pytest.mark.urls("tests.accounts.test_activity_urls")
def test_errors_assets_and_anonymous_requests_are_not_recorded(client, throttle):
    client.get("/app/")  # anonymous
    user = UserFactory()
    client.force_login(user)
    client.get("/gone/")
    client.get("/static/janitor/janitor.css")
    client.get("/healthz")
    assert not ActivityLog.objects.exists()


@pytest.mark.django_db
def test_throttle_is_per_user(throttle):
    factory = RequestFactory()
    first, second = UserFactory(), UserFactory()
    for _ in range(10):
        activity_record_request(user=first, request=factory.get("/app/"))
        activity_record_request(user=second, request=factory.get("/app/"))
    assert ActivityLog.objects.filter(member=first).count() == 1
    assert ActivityLog.objects.filter(member=second).count() == 1


@pytest.mark.django_db
def test_zero_window_records_every_request(settings):
    settings.JANITOR_ACTIVITY_THROTTLE_SECONDS = 0
    user = UserFactory()
    for _ in range(4):
        activity_record_request(user=user, request=RequestFactory().get("/app/"))
    assert ActivityLog.objects.filter(member=user).count() == 4


@pytest.mark.smoke
@pytest.mark.django_db
@pytest.mark.urls("tests.accounts.test_activity_urls")
def test_middleware_records_ip_and_user_agent(client, throttle):
    user = UserFactory()
    client.force_login(user)
    for _ in range(3):
        client.get("/app/", HTTP_USER_AGENT="UA/1.0", REMOTE_ADDR="198.51.100.4")
    row = ActivityLog.objects.get(member=user)
    assert (row.kind, row.path, row.ip_address, row.user_agent, row.source) == (
        "request",
        "/app/",
        "198.51.100.4",
        "UA/1.0",
        "app",
    )


@pytest.mark.django_db
@pytest.mark.urls("tests.accounts.test_activity_urls")
def test_staff_requests_are_not_customer_activity(finance_client, finance_user, throttle):
    finance_client.get("/app/")
    assert not ActivityLog.objects.filter(member=finance_user).exists()


@pytest.mark.redis
@pytest.mark.django_db
def test_throttle_holds_in_redis_across_cache_connections(throttle):
    """A second process is simulated with a fresh cache handler on the same Redis."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    user = UserFactory()
    factory = RequestFactory()
    activity_record_request(user=user, request=factory.get("/app/"))
    default = caches["default"]
    assert isinstance(default, RedisCache)
    other = RedisCache(default._servers[0], {"KEY_PREFIX": default.key_prefix})
    # The other "process" sees the window as taken, and a new path as free.
    assert other.add(_throttle_key(user=user, path="/app/"), 1, timeout=60) is False
    assert other.add(_throttle_key(user=user, path="/app/new/"), 1, timeout=60) is True


def test_client_ip_trusts_forwarded_for_only_from_proxies(settings):
    settings.JANITOR_TRUSTED_PROXIES = frozenset({"10.0.0.1", "10.0.0.2"})
    factory = RequestFactory()
    spoofed = factory.get("/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert client_ip(spoofed) == "203.0.113.9"
    proxied = factory.get(
        "/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7, 10.0.0.2"
    )
    # The client prepended 1.2.3.4 itself; the first untrusted hop from the right is real.
    assert client_ip(proxied) == "198.51.100.7"
    garbage = factory.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="not-an-ip")
    assert client_ip(garbage) == "10.0.0.1"
    ipv6 = factory.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="2001:db8::1")
    assert client_ip(ipv6) == "2001:db8::1"


@pytest.mark.smoke
@pytest.mark.django_db
def test_login_is_recorded_as_its_own_kind_and_never_throttled(throttle):
    user = UserFactory()
    request = RequestFactory().post("/login/", REMOTE_ADDR="192.0.2.5", HTTP_USER_AGENT="B/2")
    activity_record_login(user=user, request=request)
    activity_record_login(user=user, request=request)
    logins = ActivityLog.objects.filter(member=user, kind=ActivityKind.LOGIN)
    assert logins.count() == 2
    assert logins.first().ip_address == "192.0.2.5"


@pytest.mark.smoke
@pytest.mark.django_db
def test_api_token_is_stored_hashed_and_revocable(admin_user):
    token, raw = api_token_create(name="Mobile app", created_by=admin_user)
    assert raw.startswith("jan_") and len(raw) > 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert raw not in (stored.token_hash, stored.prefix) and stored.prefix == raw[:12]
    assert api_token_authenticate(raw=raw) == token
    api_token_uses_flush()  # uses are written in batches (tests/accounts/test_api_token_uses.py)
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None
    assert api_token_authenticate(raw=raw + "x") is None
    api_token_revoke(token=token)
    assert api_token_authenticate(raw=raw) is None
