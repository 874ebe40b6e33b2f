"""API token uses are counted in process and written in batches; lookups are cached for a
bounded time, so a revocation elsewhere takes effect within JANITOR_API_TOKEN_CACHE_SECONDS."""

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiScope, ApiToken
from accounts.services.tokens import (
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
    api_token_uses_flush,
    api_token_uses_pending,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def token(admin_user):
    return api_token_create(name="Product", created_by=admin_user, scopes=[ApiScope.ACCESS_READ])


def _stored(token) -> ApiToken:
    return ApiToken.objects.get(pk=token.pk)


@pytest.mark.smoke
@pytest.mark.django_db
def test_uses_are_counted_in_memory_and_written_in_one_update(token, django_assert_num_queries):
    model, raw = token
    with django_assert_num_queries(1):  # the lookup; the use is not written
        assert api_token_authenticate(raw=raw).pk == model.pk
    with django_assert_num_queries(0):  # cached, counted in memory
        for _ in range(9):
            api_token_authenticate(raw=raw)
    assert _stored(model).use_count == 0 and _stored(model).last_used_at is None
    assert api_token_uses_pending()[model.pk][0] == 10
    with CaptureQueriesContext(connection) as ctx:
        assert api_token_uses_flush() == 10
    updates = [q for q in ctx.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    stored = _stored(model)
    assert stored.use_count == 10 and stored.last_used_at is not None
    assert api_token_uses_pending() == {}
    assert api_token_uses_flush() == 0  # nothing waiting: no write


@pytest.mark.django_db
def test_flush_every_n_uses(token, settings):
    settings.JANITOR_API_TOKEN_FLUSH_USES = 5
    model, raw = token
    for _ in range(4):
        api_token_authenticate(raw=raw)
    assert _stored(model).use_count == 0
    api_token_authenticate(raw=raw)  # the fifth use writes all five
    assert _stored(model).use_count == 5
    for _ in range(3):
        api_token_authenticate(raw=raw)
    assert _stored(model).use_count == 5
    assert api_token_uses_pending()[model.pk][0] == 3


@pytest.mark.django_db
def test_flush_after_the_interval(token, settings):
    settings.JANITOR_API_TOKEN_FLUSH_SECONDS = 0.3
    model, raw = token
    api_token_uses_flush()  # the interval starts now
    api_token_authenticate(raw=raw)
    api_token_authenticate(raw=raw)
    assert _stored(model).use_count == 0
    time.sleep(0.35)
    api_token_authenticate(raw=raw)  # past the interval: this request writes the three
    assert _stored(model).use_count == 3


@pytest.mark.django_db
def test_counts_add_up_and_last_used_never_moves_back(token, admin_user):
    model, raw = token
    other, other_raw = api_token_create(
        name="Other", created_by=admin_user, scopes=[ApiScope.ACCESS_READ]
    )
    later = timezone.now() + timedelta(hours=1)
    # Another process wrote uses, and a later last use, in the meantime.
    ApiToken.objects.filter(pk=model.pk).update(use_count=40, last_used_at=later)
    for _ in range(2):
        api_token_authenticate(raw=raw)
    api_token_authenticate(raw=other_raw)
    assert api_token_uses_flush() == 3
    stored = _stored(model)
    assert stored.use_count == 42 and stored.last_used_at == later
    assert _stored(other).use_count == 1 and _stored(other).last_used_at < later


@pytest.mark.django_db
def test_a_failed_write_keeps_the_counts_for_the_next(token):
    model, raw = token
    for _ in range(3):
        api_token_authenticate(raw=raw)

    def refuse_token_updates(execute, sql, params, many, context):
        if sql.startswith("UPDATE") and "apitoken" in sql:
            raise OperationalError("the database went away")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse_token_updates):
        assert api_token_uses_flush() == 0
    assert _stored(model).use_count == 0
    assert api_token_uses_pending()[model.pk][0] == 3
    api_token_authenticate(raw=raw)
    assert api_token_uses_flush() == 4
    assert _stored(model).use_count == 4


@pytest.mark.smoke
@pytest.mark.django_db
def test_revocation_elsewhere_takes_effect_within_the_cache_bound(token, settings):
    settings.JANITOR_API_TOKEN_CACHE_SECONDS = 0.5
    model, raw = token
    assert api_token_authenticate(raw=raw) is not None
    # Revoked by another process (this one's cache does not hear of it).
    ApiToken.objects.filter(pk=model.pk).update(revoked_at=timezone.now())
    assert api_token_authenticate(raw=raw) is not None  # still cached: within the bound
    time.sleep(0.55)
    assert api_token_authenticate(raw=raw) is None
    assert api_token_authenticate(raw=raw) is None  # a miss is not cached as a hit later


@pytest.mark.django_db
def test_revocation_in_this_process_is_immediate_and_scopes_follow_the_bound(token, settings):
    settings.JANITOR_API_TOKEN_CACHE_SECONDS = 0.5
    model, raw = token
    assert api_token_authenticate(raw=raw).has_scope(ApiScope.ACCESS_READ)
    ApiToken.objects.filter(pk=model.pk).update(scopes=[ApiScope.ACTIVITY_WRITE])
    assert api_token_authenticate(raw=raw).has_scope(ApiScope.ACCESS_READ)
    time.sleep(0.55)
    assert not api_token_authenticate(raw=raw).has_scope(ApiScope.ACCESS_READ)
    api_token_revoke(token=model)
    assert api_token_authenticate(raw=raw) is None


@pytest.mark.django_db
def test_the_default_bound_is_five_seconds_at_most(token):
    """The documented bound: without a setting, a revocation elsewhere is seen within 5 s."""
    from accounts.services import tokens

    assert getattr(django_settings, "JANITOR_API_TOKEN_CACHE_SECONDS", tokens.CACHE_SECONDS) <= 5


@pytest.mark.django_db
def test_the_caller_gets_its_own_copy(token):
    _, raw = token
    first = api_token_authenticate(raw=raw)
    first.name = "changed by a caller"
    assert api_token_authenticate(raw=raw).name == "Product"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_uses_counted_are_written_when_the_process_exits(token):
    """A process that ends normally (gunicorn's graceful stop, max_requests recycling) writes
    what it counted: here a separate Python process uses the token 7 times and exits."""
    model, raw = token
    db = django_settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    script = (
        "import django; django.setup()\n"
        "from accounts.services.tokens import api_token_authenticate\n"
        f"for _ in range(7): assert api_token_authenticate(raw={raw!r})\n"
    )
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "janitor.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert _stored(model).use_count == 7
