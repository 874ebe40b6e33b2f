"""Migration 0009/0010 (team accounts) on a database holding the previous schema with data:
every customer becomes an account with one member, with the same id and public id, and no
audit row changes (issue 20). Runs on PostgreSQL (whose trigger refuses any UPDATE of the
audit) and, in the smoke run, on SQLite."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = [pytest.mark.smoke, pytest.mark.django_db(transaction=True)]

BEFORE = [
    ("accounts", "0008_search_trigram"),
    ("reconciliation", "0003_dispute_charge_link_and_event_api_version"),
]


def _latest(executor):
    return executor.loader.graph.leaf_nodes()


def _audit_rows(cursor):
    cursor.execute(
        "SELECT id, account_id, at, actor, actor_user_id, approver_id, from_status, to_status,"
        " reason, reference, source FROM accounts_accessaudit ORDER BY id"
    )
    return cursor.fetchall()


def test_customers_become_accounts_with_one_member_and_the_audit_is_untouched():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        executor.loader.build_graph()
        old = executor.loader.project_state(BEFORE).apps
        User = old.get_model("accounts", "User")
        AccessAudit = old.get_model("accounts", "AccessAudit")
        ActivityLog = old.get_model("accounts", "ActivityLog")
        SessionRecord = old.get_model("accounts", "SessionRecord")
        Flag = old.get_model("reconciliation", "Flag")
        Subscription = old.get_model("reconciliation", "Subscription")
        now = timezone.now()

        staff = User.objects.create(email="admin@janitor.test", is_staff=True, public_id="s-1")
        active = User.objects.create(
            email="ann@example.com", name="Ann", public_id="user-ann", stripe_customer_id="cus_A"
        )
        grace = User.objects.create(
            email="bob@example.com",
            public_id="user-bob",
            access_status="grace_period",
            grace_ends_at=now + timedelta(days=5),
        )
        revoked = User.objects.create(
            email="cy@example.com", public_id="user-cy", access_status="revoked", is_active=False
        )
        for account, to_status in ((grace, "grace_period"), (revoked, "revoked")):
            AccessAudit.objects.create(
                account=account,
                actor=staff.email,
                actor_user=staff,
                from_status="active",
                to_status=to_status,
                reason="test",
            )
        ActivityLog.objects.create(account=active, kind="login", path="/app/")
        SessionRecord.objects.create(user=active, session_key="k" * 32)
        Flag.objects.create(account=grace, kind="payment_failed", reason="test")
        Subscription.objects.create(
            provider_id="sub_A",
            account=active,
            customer_id="cus_A",
            status="active",
            provider_updated_at=now,
        )
        with connection.cursor() as cursor:
            audit_before = _audit_rows(cursor)

        executor = MigrationExecutor(connection)
        executor.migrate(_latest(executor))
        new = executor.loader.project_state(_latest(executor)).apps
        Account = new.get_model("accounts", "Account")
        Member = new.get_model("accounts", "User")

        with connection.cursor() as cursor:
            assert _audit_rows(cursor) == audit_before
        assert set(Account.objects.values_list("pk", flat=True)) == {
            active.pk,
            grace.pk,
            revoked.pk,
        }
        for user, status in ((active, "active"), (grace, "grace_period"), (revoked, "revoked")):
            account = Account.objects.get(pk=user.pk)
            member = Member.objects.get(pk=user.pk)
            assert account.public_id == user.public_id
            assert account.email == user.email
            assert account.access_status == status
            assert account.is_active == (status != "revoked")
            assert member.account_id == account.pk
            assert member.is_active  # the member is enabled; the account carries the revocation
        assert Account.objects.get(pk=active.pk).stripe_customer_id == "cus_A"
        assert Account.objects.get(pk=grace.pk).grace_ends_at is not None
        assert Member.objects.get(pk=staff.pk).account_id is None
        # Every row that named the user as an account names the account with the same id.
        assert new.get_model("reconciliation", "Flag").objects.get().account_id == grace.pk
        assert new.get_model("reconciliation", "Subscription").objects.get().account_id == active.pk
        activity = new.get_model("accounts", "ActivityLog").objects.get()
        assert activity.member_id == active.pk
        assert new.get_model("accounts", "SessionRecord").objects.get().user_id == active.pk
        # A new account does not reuse a copied id.
        fresh = Account.objects.create(email="new@example.com", public_id="acct-new")
        assert fresh.pk > max(active.pk, grace.pk, revoked.pk, staff.pk)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(_latest(executor))
