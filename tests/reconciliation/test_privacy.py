"""Retention (the daily purge) and erasure on request: personal data goes, the audit stays."""

from datetime import timedelta

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import (
    AccessAudit,
    AccessChange,
    AccessStatus,
    Account,
    ActivityLog,
    StaffActionAudit,
    StaffActionKind,
)
from accounts.roles import ROLE_ADMIN, ROLE_FINANCE, ROLE_SUPPORT
from accounts.selectors.access_api import FeedPosition, access_feed_horizon
from accounts.services.access_status import access_status_change
from products.models import AccessEvent, Delivery, DeliveryAttempt, DeliveryStatus, ProductEndpoint
from reconciliation.models import Dispute, Subscription, WebhookEvent
from reconciliation.services.privacy import ErasureError, account_erase, retention_purge
from reconciliation.tasks import retention_purge_task
from tests.factories import (
    PASSWORD,
    AccountFactory,
    ActivityFactory,
    DisputeFactory,
    StaffFactory,
    SubscriptionFactory,
    WebhookEventFactory,
)

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

DAY = timedelta(days=1)


# --- Retention ------------------------------------------------------------------------------


@pytest.fixture
def aged(settings):
    """Rows on either side of each retention period (the defaults, IPs shortened to 30 days)."""
    settings.JANITOR_IP_RETENTION_DAYS = 30
    now = timezone.now()
    account = AccountFactory()
    rows = {
        "activity_old": ActivityFactory(account=account, occurred_at=now - 401 * DAY),
        "activity_kept": ActivityFactory(account=account, occurred_at=now - 399 * DAY),
        "activity_recent": ActivityFactory(account=account, occurred_at=now - 29 * DAY),
        "event_old": WebhookEventFactory(status="processed", received_at=now - 91 * DAY),
        "event_old_pending": WebhookEventFactory(status="pending", received_at=now - 91 * DAY),
        "event_recent": WebhookEventFactory(status="processed", received_at=now - 89 * DAY),
    }
    staged = {"fields": {"customer_email_address": account.email}}
    rows["dispute_submitted"] = DisputeFactory(
        account=account,
        evidence_staged=staged,
        staged_at=now - 401 * DAY,
        submitted_at=now - 400 * DAY,
    )
    rows["dispute_open"] = DisputeFactory(
        account=account, evidence_staged=staged, staged_at=now - 401 * DAY
    )
    # The old change first: the feed's order follows the writes (on SQLite, where txid is 0,
    # the id alone), and the purge deletes whole prefixes of it.
    rows["change_old"] = AccessChange.objects.create(
        account=account, version=0, at=now - 31 * DAY, event_type=AccessEvent.GRACE_STARTED
    )
    rows["audit"] = access_status_change(
        account=account,
        to_status=AccessStatus.GRACE_PERIOD,
        actor="system:test",
        reason="payment failed",
        grace_ends_at=now + DAY,
    )
    rows["change_recent"] = AccessChange.objects.exclude(pk=rows["change_old"].pk).get(
        account=account
    )
    endpoint = ProductEndpoint.objects.create(name="Shop", url="http://127.0.0.1:9/hook")
    for name, status, days in (
        ("delivery_old", DeliveryStatus.DELIVERED, 31),
        ("delivery_recent", DeliveryStatus.DELIVERED, 29),
        ("delivery_old_pending", DeliveryStatus.PENDING, 31),
    ):
        rows[name] = Delivery.objects.create(
            endpoint=endpoint,
            account=AccountFactory(),
            event_type=AccessEvent.GRACE_STARTED,
            payload={},
            account_version=1,
            status=status,
            created_at=now - days * DAY,
        )
    DeliveryAttempt.objects.create(delivery=rows["delivery_old"], status_code=200)
    return rows


def test_retention_purges_what_is_older_than_its_period(aged):
    result = retention_purge()

    assert result.activity_deleted == 1
    assert not ActivityLog.objects.filter(pk=aged["activity_old"].pk).exists()
    kept = ActivityLog.objects.get(pk=aged["activity_kept"].pk)
    assert (kept.ip_address, kept.user_agent) == (None, "")  # older than the 30 IP days
    recent = ActivityLog.objects.get(pk=aged["activity_recent"].pk)
    assert recent.ip_address == "203.0.113.7" and recent.user_agent
    assert result.activity_ips_blanked == 1

    assert WebhookEvent.objects.get(pk=aged["event_old"].pk).payload == {"janitor_purged": True}
    for name in ("event_old_pending", "event_recent"):  # unfinished, or not old enough
        event = WebhookEvent.objects.get(pk=aged[name].pk)
        assert event.payload["id"] == event.provider_event_id
    assert result.webhook_payloads_emptied == 1

    assert Dispute.objects.get(pk=aged["dispute_submitted"].pk).evidence_staged == {}
    assert Dispute.objects.get(pk=aged["dispute_open"].pk).evidence_staged != {}
    assert result.staged_evidence_cleared == 1

    assert AccessAudit.objects.get(pk=aged["audit"].pk).reason == "payment failed"

    # The access feed and the outbox: 30 days by default, open deliveries whatever their age.
    assert result.access_changes_deleted == 1
    assert list(AccessChange.objects.all()) == [aged["change_recent"]]
    old = aged["change_old"]
    assert access_feed_horizon() == FeedPosition(old.txid, old.id)
    assert (result.deliveries_deleted, result.delivery_attempts_deleted) == (1, 1)
    assert set(Delivery.objects.values_list("pk", flat=True)) == {
        aged["delivery_recent"].pk,
        aged["delivery_old_pending"].pk,
    }


def test_retention_is_idempotent_and_runs_as_the_scheduled_task(aged):
    assert retention_purge_task()["activity_deleted"] == 1
    assert retention_purge_task() == {
        "activity_deleted": 0,
        "activity_ips_blanked": 0,
        "webhook_payloads_emptied": 0,
        "staged_evidence_cleared": 0,
        "access_changes_deleted": 0,
        "deliveries_deleted": 0,
        "delivery_attempts_deleted": 0,
    }


def test_retention_periods_are_settings(aged, settings):
    settings.JANITOR_ACTIVITY_RETENTION_DAYS = 1000
    settings.JANITOR_WEBHOOK_PAYLOAD_RETENTION_DAYS = 365
    settings.JANITOR_ACCESS_FEED_RETENTION_DAYS = 32
    settings.JANITOR_DELIVERY_RETENTION_DAYS = 32
    result = retention_purge()
    assert result.activity_deleted == 0 and result.webhook_payloads_emptied == 0
    assert ActivityLog.objects.count() == 3
    assert result.access_changes_deleted == 0 and AccessChange.objects.count() == 2
    assert result.deliveries_deleted == 0 and Delivery.objects.count() == 3


# --- Erasure --------------------------------------------------------------------------------


@pytest.fixture
def person(admin_user):
    """A customer with activity, webhook events, a subscription, a dispute and audit rows."""
    account = AccountFactory(email="jane.doe@example.com", name="Jane Doe")
    for _ in range(3):
        ActivityFactory(account=account, path="/app/invoices/jane-doe")
    customer_id = account.stripe_customer_id
    for _ in range(2):
        WebhookEventFactory(
            customer_id=customer_id,
            payload={"data": {"object": {"customer": customer_id, "email": account.email}}},
        )
    SubscriptionFactory(account=account, raw={"customer": {"email": account.email}})
    DisputeFactory(
        account=account,
        raw={"evidence": {"customer_email_address": account.email}},
        evidence_staged={"fields": {"customer_name": "Jane Doe"}},
    )
    access_status_change(
        account=account,
        to_status=AccessStatus.GRACE_PERIOD,
        actor="system:test",
        reason="payment failed",
        grace_ends_at=timezone.now() + DAY,
    )
    bystander = AccountFactory(email="someone.else@example.com")
    ActivityFactory(account=bystander)
    WebhookEventFactory(customer_id=bystander.stripe_customer_id)
    return account, bystander


def _audit_snapshot():
    return list(AccessAudit.objects.order_by("pk").values())


def test_erasure_pseudonymises_personal_data_and_keeps_the_audit(person, admin_user):
    account, bystander = person
    audit_before = _audit_snapshot()
    client = Client()
    client.force_login(account.member)

    entry = account_erase(account=account, actor=admin_user, reason="GDPR request #77 by email")

    account.refresh_from_db()
    member = account.member
    member.refresh_from_db()
    assert account.email == f"erased-{account.public_id}@erased.invalid" and account.is_erased
    assert account.name == "" and member.name == "" and not member.has_usable_password()
    assert member.email == f"erased-{member.public_id}@erased.invalid" and member.is_erased
    assert authenticate(username="jane.doe@example.com", password=PASSWORD) is None
    assert client.get(reverse("customer_home")).status_code == 302  # its session is gone
    for row in ActivityLog.objects.filter(member__account=account):
        assert (row.ip_address, row.user_agent, row.path) == (None, "", "")
    assert (
        ActivityLog.objects.filter(member__account=account).count() == 3
    )  # counts stay for evidence
    for event in WebhookEvent.objects.filter(customer_id=account.stripe_customer_id):
        assert event.payload == {
            "janitor_erased": True,
            "id": event.provider_event_id,
            "type": event.type,
        }
    assert Subscription.objects.get(account=account).raw == {"janitor_erased": True}
    dispute = Dispute.objects.get(account=account)
    assert dispute.raw == {"janitor_erased": True} and dispute.evidence_staged == {}
    stored = str(list(WebhookEvent.objects.values_list("payload", flat=True)))
    assert "jane.doe" not in stored

    assert _audit_snapshot() == audit_before
    assert entry.kind == StaffActionKind.ACCOUNT_ERASED
    assert (entry.account, entry.subject, entry.actor_user, entry.reason) == (
        account,
        None,
        admin_user,
        "GDPR request #77 by email",
    )
    assert entry.details == {
        "members_pseudonymised": 1,
        "activity_rows_pseudonymised": 3,
        "webhook_payloads_replaced": 2,
        "subscriptions_cleared": 1,
        "disputes_cleared": 1,
        "sessions_ended": 1,
    }
    # Nobody else's data moved.
    bystander.refresh_from_db()
    assert bystander.email == "someone.else@example.com"
    assert ActivityLog.objects.get(member__account=bystander).ip_address == "203.0.113.7"
    assert WebhookEvent.objects.get(customer_id=bystander.stripe_customer_id).payload["id"]


def _nothing_erased(account: Account) -> bool:
    account.refresh_from_db()
    return (
        account.email == "jane.doe@example.com"
        and ActivityLog.objects.filter(member__account=account, ip_address__isnull=False).count()
        == 3
        and StaffActionAudit.objects.count() == 0
    )


@pytest.mark.parametrize(
    ("actor_role", "reason", "message"),
    [
        (ROLE_ADMIN, "  ", "Say why"),
        (ROLE_SUPPORT, "GDPR request", "Only an Admin"),
        (ROLE_FINANCE, "GDPR request", "Only an Admin"),
    ],
)
def test_erasure_refusals_store_nothing(person, actor_role, reason, message):
    account, _ = person
    with pytest.raises(ErasureError, match=message):
        account_erase(account=account, actor=StaffFactory(role=actor_role), reason=reason)
    assert _nothing_erased(account)


def test_erased_accounts_are_not_erased_again(person, admin_user):
    account, _ = person
    account_erase(account=account, actor=admin_user, reason="request")
    with pytest.raises(ErasureError, match="erased already"):
        account_erase(account=account, actor=admin_user, reason="again")
    assert StaffActionAudit.objects.count() == 1


def test_the_erasure_audit_is_append_only(person, admin_user):
    from django.db import DatabaseError, connection, transaction

    account, _ = person
    entry = account_erase(account=account, actor=admin_user, reason="request")
    for sql in (
        "UPDATE accounts_staffactionaudit SET reason = 'x'",
        "DELETE FROM accounts_staffactionaudit",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql)
    with pytest.raises(PermissionError), transaction.atomic():
        StaffActionAudit._base_manager.filter(pk=entry.pk).update(reason="x")
    assert StaffActionAudit.objects.get().reason == "request"


# --- The dashboard action and the command ----------------------------------------------------


def _erase_post(client, account, *, reason="GDPR request #77", confirm=None):
    return client.post(
        reverse("account_erase", args=[account.public_id]),
        {"reason": reason, "confirm_email": account.email if confirm is None else confirm},
    )


def test_an_admin_erases_from_the_account_page(person, admin_client_):
    account, _ = person
    page = admin_client_.get(reverse("account_detail", args=[account.public_id]))
    assert b'data-testid="erase-account"' in page.content
    response = _erase_post(admin_client_, account)
    assert response.status_code == 302
    assert response["Location"] == reverse("account_detail", args=[account.public_id])
    account.refresh_from_db()
    assert account.is_erased
    assert StaffActionAudit.objects.filter(account=account).count() == 1
    page = admin_client_.get(reverse("account_detail", args=[account.public_id]))
    assert b"personal data was erased" in page.content


def test_the_dashboard_erasure_needs_the_typed_email(person, admin_client_):
    account, _ = person
    response = _erase_post(admin_client_, account, confirm="someone@example.com")
    assert response.status_code == 302
    assert _nothing_erased(account)


@pytest.mark.parametrize("client_fixture", ["support_client", "finance_client"])
def test_only_admins_see_and_use_the_erasure(person, request, client_fixture):
    account, _ = person
    client = request.getfixturevalue(client_fixture)
    page = client.get(reverse("account_detail", args=[account.public_id]))
    assert b'data-testid="erase-account"' not in page.content
    assert _erase_post(client, account).status_code == 403
    assert _nothing_erased(account)


def test_the_command_says_what_it_would_do_then_erases(person, admin_user, capsys):
    account, _ = person
    call_command("erase_account", account.public_id, "--actor", admin_user.email, "--reason", "r")
    assert "Would erase" in capsys.readouterr().out
    assert _nothing_erased(account)
    with pytest.raises(CommandError, match="Say why"):
        call_command("erase_account", account.public_id, "--actor", admin_user.email, "--yes")
    call_command(
        "erase_account", account.public_id, "--actor", admin_user.email, "--reason", "r", "--yes"
    )
    account.refresh_from_db()
    assert account.is_erased
