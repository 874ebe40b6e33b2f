"""What every access change leaves behind in its own transaction: the account's version, a row
in the changes feed, and one outbox delivery per enabled product endpoint."""

import json
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import AccessChange, AccessStatus, ApiScope
from accounts.services.access_changes import access_event_type
from accounts.services.access_status import access_status_change
from accounts.services.members import member_set_enabled
from accounts.services.tokens import api_token_create
from products.models import AccessEvent, Delivery, ProductEndpoint
from tests.factories import AccountFactory

S = AccessStatus


@pytest.mark.parametrize(
    ("from_status", "to_status", "actor", "expected"),
    [
        (S.ACTIVE, S.GRACE_PERIOD, "system:audit", AccessEvent.GRACE_STARTED),
        (S.GRACE_PERIOD, S.GRACE_PERIOD, "system:audit", AccessEvent.GRACE_EXTENDED),
        (S.GRACE_PERIOD, S.ACTIVE, "system:webhook", AccessEvent.GRACE_ENDED),
        (S.ACTIVE, S.REVOKED_PENDING, "admin@x.test", AccessEvent.REVOCATION_PENDING),
        (S.GRACE_PERIOD, S.REVOKED_PENDING, "admin@x.test", AccessEvent.REVOCATION_PENDING),
        (S.REVOKED_PENDING, S.REVOKED, "admin@x.test", AccessEvent.REVOKED),
        (S.REVOKED_PENDING, S.ACTIVE, "admin@x.test", AccessEvent.RESTORED),
        (S.REVOKED_PENDING, S.GRACE_PERIOD, "admin@x.test", AccessEvent.RESTORED),
        (S.REVOKED, S.ACTIVE, "admin@x.test", AccessEvent.RESTORED),
        (S.REVOKED, S.ACTIVE, "system:audit", AccessEvent.REACTIVATED),
    ],
)
def test_each_move_has_its_event(from_status, to_status, actor, expected):
    assert access_event_type(from_status=from_status, to_status=to_status, actor=actor) == expected


def _grace(account, days=7):
    return access_status_change(
        account=account,
        to_status=S.GRACE_PERIOD,
        actor="system:audit",
        reason="Subscription cancelled at the provider",
        grace_ends_at=timezone.now() + timedelta(days=days),
    )


@pytest.mark.smoke
@pytest.mark.django_db
def test_a_change_bumps_the_version_and_lands_in_the_feed():
    account = AccountFactory()
    assert account.access_version == 0
    _grace(account)
    _grace(account, days=9)
    account.refresh_from_db()
    assert account.access_version == 2
    assert account.access_changed_at is not None
    changes = list(AccessChange.objects.filter(account=account).order_by("id"))
    assert [(c.version, c.event_type) for c in changes] == [
        (1, AccessEvent.GRACE_STARTED),
        (2, AccessEvent.GRACE_EXTENDED),
    ]
    if connection.vendor == "postgresql":
        # The writing transaction's id, which orders the feed by commit.
        assert all(change.txid > 0 for change in changes)
    else:
        assert all(change.txid == 0 for change in changes)


@pytest.mark.django_db
def test_a_refused_change_leaves_no_version_feed_row_or_delivery():
    ProductEndpoint.objects.create(name="Product", url="http://127.0.0.1:9/events")
    account = AccountFactory()
    with pytest.raises(Exception, match="not an allowed access change"):
        access_status_change(
            account=account, to_status=S.REVOKED, actor="admin@x.test", reason="skip the steps"
        )
    account.refresh_from_db()
    assert account.access_version == 0
    assert not AccessChange.objects.filter(account=account).exists()
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_every_enabled_endpoint_gets_one_delivery_in_the_same_transaction():
    first = ProductEndpoint.objects.create(name="Web app", url="http://127.0.0.1:9/a")
    second = ProductEndpoint.objects.create(name="Mobile API", url="http://127.0.0.1:9/b")
    ProductEndpoint.objects.create(name="Old", url="http://127.0.0.1:9/c", is_enabled=False)
    account = AccountFactory()

    with pytest.raises(RuntimeError), transaction.atomic():
        _grace(account)
        assert Delivery.objects.count() == 2
        raise RuntimeError("the caller's transaction fails after the change")
    assert not Delivery.objects.exists()  # no event for a change that did not commit

    _grace(account)
    deliveries = list(Delivery.objects.order_by("endpoint__name"))
    assert [d.endpoint for d in deliveries] == [second, first]
    for delivery in deliveries:
        assert delivery.event_type == AccessEvent.GRACE_STARTED
        assert delivery.account_version == 1
        assert delivery.status == "pending"
        data = delivery.payload["data"]
        assert delivery.payload["type"] == "access.grace_started"
        assert delivery.payload["timestamp"].endswith("Z")
        assert data["account"] == account.public_id
        assert data["status"] == "grace_period"
        assert data["version"] == 1
        assert data["grace_ends_at"].endswith("Z")
        json.dumps(delivery.payload)  # the body is plain JSON
    assert deliveries[0].webhook_id != deliveries[1].webhook_id


@pytest.mark.django_db
def test_disabling_a_member_moves_the_accounts_version_and_tells_products(admin_user):
    ProductEndpoint.objects.create(name="Web app", url="http://127.0.0.1:9/a")
    account = AccountFactory(members=2)
    member = account.team[1]
    member_set_enabled(member=member, enabled=False, actor=admin_user, reason="Left the team")
    account.refresh_from_db()
    assert account.access_version == 1
    delivery = Delivery.objects.get()
    assert delivery.event_type == AccessEvent.MEMBER_DISABLED
    assert delivery.payload["data"]["member"] == member.public_id
    member_set_enabled(member=member, enabled=True, actor=admin_user, reason="Back")
    assert list(
        AccessChange.objects.filter(account=account).values_list("version", "event_type")
    ) == [(1, AccessEvent.MEMBER_DISABLED), (2, AccessEvent.MEMBER_ENABLED)]


@pytest.mark.django_db
def test_tokens_carry_scopes_and_refuse_unknown_ones(admin_user, client):
    with pytest.raises(ValueError, match="Unknown scope"):
        api_token_create(name="x", created_by=admin_user, scopes=["accounts:delete"])
    with pytest.raises(ValueError, match="at least one scope"):
        api_token_create(name="x", created_by=admin_user, scopes=[])
    token, raw = api_token_create(
        name="Reader", created_by=admin_user, scopes=[ApiScope.ACCESS_READ]
    )
    assert token.scopes == ["access:read"]
    # A token without activity:write cannot report activity.
    response = client.post(
        "/api/v1/activity",
        data=json.dumps({"events": []}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 403
    assert "activity:write" in response.json()["error"]
