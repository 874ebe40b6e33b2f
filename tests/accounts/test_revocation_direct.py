"""Direct mode: step 2 deletes the product's own session keys from the product's Redis (a
separate database number of the real Redis here), by key template or per-user index set, and
exactly the account's members' keys."""

import secrets
from urllib.parse import urlparse

import pytest
import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from accounts.models import AccessStatus, RevocationStatus
from accounts.services.revocation import (
    STEP_SESSIONS,
    revocation_approve,
    revocation_request,
    revocation_retry,
)
from janitor.settings import _product_session_template_checked
from products import session_store
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db

# The product's store: another database of the same server, so Janitor's cache flushes never
# touch it. Keys carry a per-test nonce, and each test deletes only its own.
PRODUCT_DB = 15


@pytest.fixture
def product_store(settings):
    parsed = urlparse(settings.REDIS_URL)
    url = f"redis://{parsed.hostname}:{parsed.port or 6379}/{PRODUCT_DB}"
    nonce = f"test-{secrets.token_hex(6)}"
    client = redis.Redis.from_url(url)
    settings.JANITOR_PRODUCT_SESSION_REDIS_URL = url
    settings.JANITOR_PRODUCT_SESSION_KEY_TEMPLATE = ""
    settings.JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE = ""
    yield client, nonce
    leftover = list(client.scan_iter(match=f"{nonce}:*", count=500))
    if leftover:
        client.unlink(*leftover)


def _keys(client, nonce) -> set[str]:
    return {k.decode() for k in client.scan_iter(match=f"{nonce}:*", count=500)}


def _revoke(account, support_user, admin_user):
    revocation = revocation_request(account=account, requested_by=support_user, reason="Fraud")
    return revocation_approve(revocation_id=revocation.pk, approver=admin_user)


@pytest.mark.redis
@pytest.mark.parametrize("per_member_max", [8, 0], ids=["scan-per-member", "one-scan-per-team"])
def test_a_scanned_key_template_deletes_exactly_the_members_keys(
    product_store, settings, support_user, admin_user, monkeypatch, per_member_max
):
    client, nonce = product_store
    monkeypatch.setattr(session_store, "SCAN_PER_MEMBER_MAX", per_member_max)
    settings.JANITOR_PRODUCT_SESSION_KEY_TEMPLATE = nonce + ":session:{user_public_id}:*"
    account = AccountFactory(members=2)
    first, second = account.team
    # Another customer whose id starts like the first member's, and one whose id is a pattern.
    lookalike = UserFactory(public_id=first.public_id + "x")
    starry = UserFactory(public_id=first.public_id[:3] + "*")
    mine = [f"{nonce}:session:{first.public_id}:{n}" for n in range(3)]
    mine.append(f"{nonce}:session:{second.public_id}:a")
    theirs = [
        f"{nonce}:session:{lookalike.public_id}:1",
        f"{nonce}:session:{starry.public_id}:1",
        f"{nonce}:profile:{first.public_id}:1",
    ]
    for key in mine + theirs:
        client.set(key, "session data")

    revocation = _revoke(account, support_user, admin_user)

    assert revocation.status == RevocationStatus.COMPLETED
    assert _keys(client, nonce) == set(theirs)
    step = revocation.steps[STEP_SESSIONS]
    assert step["product_keys_deleted"] == 4
    assert step["product_keys_per_member"] == {first.public_id: 3, second.public_id: 1}

    # The starry member's pattern is escaped: revoking them deletes their key alone.
    revocation = _revoke(starry.account, support_user, admin_user)
    assert revocation.steps[STEP_SESSIONS]["product_keys_deleted"] == 1
    assert _keys(client, nonce) == set(theirs) - {f"{nonce}:session:{starry.public_id}:1"}


@pytest.mark.redis
def test_an_exact_key_template_deletes_that_key(product_store, settings, support_user, admin_user):
    client, nonce = product_store
    settings.JANITOR_PRODUCT_SESSION_KEY_TEMPLATE = nonce + ":session:{email}"
    account = AccountFactory()
    other = UserFactory()
    client.set(f"{nonce}:session:{account.member.email}", "x")
    client.set(f"{nonce}:session:{other.email}", "x")

    revocation = _revoke(account, support_user, admin_user)

    assert revocation.steps[STEP_SESSIONS]["product_keys_deleted"] == 1
    assert _keys(client, nonce) == {f"{nonce}:session:{other.email}"}


@pytest.mark.redis
def test_an_index_set_deletes_the_keys_it_lists_and_itself(
    product_store, settings, support_user, admin_user
):
    client, nonce = product_store
    settings.JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE = nonce + ":user_sessions:{user_public_id}"
    account = AccountFactory(members=2)
    other = UserFactory()
    listed = {
        account.team[0]: [f"{nonce}:s:{secrets.token_hex(4)}" for _ in range(600)],
        account.team[1]: [f"{nonce}:s:{secrets.token_hex(4)}"],
        other: [f"{nonce}:s:{secrets.token_hex(4)}"],
    }
    for user, keys in listed.items():
        client.mset(dict.fromkeys(keys, "x"))
        client.sadd(f"{nonce}:user_sessions:{user.public_id}", *keys)
    unlisted = f"{nonce}:s:unlisted"
    client.set(unlisted, "x")
    # A listed key that already expired counts for nothing.
    client.sadd(f"{nonce}:user_sessions:{account.team[1].public_id}", f"{nonce}:s:expired")

    revocation = _revoke(account, support_user, admin_user)

    assert revocation.steps[STEP_SESSIONS]["product_keys_deleted"] == 601
    assert _keys(client, nonce) == {
        *listed[other],
        f"{nonce}:user_sessions:{other.public_id}",
        unlisted,
    }


@pytest.mark.redis
def test_an_unreachable_product_store_fails_the_step_retryable(
    product_store, settings, support_user, admin_user
):
    client, nonce = product_store
    good_url = settings.JANITOR_PRODUCT_SESSION_REDIS_URL
    settings.JANITOR_PRODUCT_SESSION_KEY_TEMPLATE = nonce + ":session:{user_public_id}:*"
    settings.JANITOR_PRODUCT_SESSION_REDIS_URL = "redis://127.0.0.1:6390/0"  # nobody listens
    account = AccountFactory()
    client.set(f"{nonce}:session:{account.member.public_id}:1", "x")

    revocation = _revoke(account, support_user, admin_user)

    account.refresh_from_db()
    assert revocation.status == RevocationStatus.FAILED
    assert "product session store redis://127.0.0.1:6390/0" in revocation.last_error
    assert account.access_status == AccessStatus.REVOKED_PENDING
    assert STEP_SESSIONS not in revocation.steps
    assert len(_keys(client, nonce)) == 1

    settings.JANITOR_PRODUCT_SESSION_REDIS_URL = good_url
    retried = revocation_retry(revocation_id=revocation.pk, actor=admin_user)
    assert retried.status == RevocationStatus.COMPLETED
    assert retried.steps[STEP_SESSIONS]["product_keys_deleted"] == 1
    assert _keys(client, nonce) == set()


@pytest.mark.smoke
def test_templates_are_checked_when_settings_load():
    name = "JANITOR_PRODUCT_SESSION_KEY_TEMPLATE"
    assert _product_session_template_checked(name, "s:{user_public_id}:*") == "s:{user_public_id}:*"
    for bad in ("sessions:*", "s:{user}:*", "s:{user_public_id", "s:{account_public_id}"):
        with pytest.raises(ImproperlyConfigured, match=name):
            _product_session_template_checked(name, bad)
    assert settings.JANITOR_REVOCATION_CONFIRM_SECONDS >= 10


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("s:*:x", ["s::x", "s:abc:x"], ["s:abc:y", "t:abc:x"]),
        ("s:?", ["s:a"], ["s:", "s:ab"]),
        ("s:[ab]c", ["s:ac", "s:bc"], ["s:cc"]),
        ("s:[^ab]c", ["s:cc"], ["s:ac"]),
        ("s:[a-c]", ["s:b"], ["s:d"]),
        ("s:\\*", ["s:*"], ["s:a"]),
        ("a.b", ["a.b"], ["axb"]),
    ],
)
def test_the_team_scan_reads_globs_as_redis_does(glob, matches, misses):
    import re

    regex = re.compile(session_store._glob_regex(glob), re.DOTALL)
    assert all(regex.fullmatch(key) for key in matches)
    assert not any(regex.fullmatch(key) for key in misses)
