"""Step 2 of the staged revocation with products beside Janitor that hold sessions: each is
asked (an access.sessions_revoke delivery), the request waits for every confirmation (POST
/api/v1/revocations/<id>/confirm), completes on the last one, and fails retryable past the
deadline. The product's side is played by posting to the real confirm URL."""

import json
import secrets
from datetime import UTC, timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import (
    AccessAudit,
    AccessStatus,
    ApiScope,
    RevocationRequest,
    RevocationStatus,
)
from accounts.services.revocation import (
    STEP_AUDIT,
    STEP_PENDING,
    STEP_REVOKED,
    STEP_SESSIONS,
    STEP_SESSIONS_LOCAL,
    revocation_abandon,
    revocation_approve,
    revocation_request,
    revocation_retry,
    revocation_run,
    revocations_waiting_check,
)
from accounts.services.tokens import api_token_create
from janitor.models import Notice, NoticeKind
from products.models import (
    AccessEvent,
    Delivery,
    DeliveryStatus,
    ProductEndpoint,
    SessionRevocation,
)
from products.services.delivery import deliveries_deliver_due
from tests.accounts.browsing import session_exists, sign_in
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db


def _endpoint(name: str, *, holds_sessions: bool = True, is_enabled: bool = True):
    """A product endpoint and the raw token it confirms with."""
    token, raw = api_token_create(name=name, created_by=None, scopes=[ApiScope.ACCESS_READ])
    endpoint = ProductEndpoint.objects.create(
        name=name,
        url=f"http://127.0.0.1:9/{name.lower().replace(' ', '-')}",
        holds_sessions=holds_sessions,
        token=token if holds_sessions else None,
        is_enabled=is_enabled,
    )
    return endpoint, raw


def _confirm(revocation_id: int, raw: str | None, body: object = None) -> tuple[int, dict]:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"} if raw else {}
    response = Client().post(
        reverse("revocation_confirm_api", args=[revocation_id]),
        data=json.dumps(body) if body is not None else "",
        content_type="application/json",
        **headers,
    )
    return response.status_code, response.json()


def _approved(account, support_user, admin_user) -> RevocationRequest:
    """Requested by support, approved by an Admin: the staged run goes inline (sync queue)."""
    revocation = revocation_request(account=account, requested_by=support_user, reason="Fraud")
    return revocation_approve(revocation_id=revocation.pk, approver=admin_user)


def _overdue(revocation: RevocationRequest) -> None:
    """Move the asks back past the deadline (instead of sleeping through it)."""
    SessionRevocation.objects.filter(revocation=revocation).update(
        requested_at=timezone.now()
        - timedelta(seconds=settings.JANITOR_REVOCATION_CONFIRM_SECONDS + 1)
    )


@pytest.fixture
def acme():
    return _endpoint("Acme app")


def test_step_two_asks_the_product_and_waits(acme, support_user, admin_user):
    endpoint, _raw = acme
    account = AccountFactory(members=2)
    clients = [sign_in(member) for member in account.team]
    keys = [c.cookies[settings.SESSION_COOKIE_NAME].value for c in clients]

    revocation = _approved(account, support_user, admin_user)

    account.refresh_from_db()
    assert revocation.status == RevocationStatus.APPROVED  # waiting, not failed
    assert not revocation.is_stalled
    assert sorted(revocation.steps) == [STEP_PENDING, STEP_SESSIONS_LOCAL]
    assert account.access_status == AccessStatus.REVOKED_PENDING
    # Janitor's own sessions are gone already; only the product's confirmation is missing.
    assert not any(session_exists(key) for key in keys)
    assert revocation.steps[STEP_SESSIONS_LOCAL]["sessions_removed"] == 2

    asked = SessionRevocation.objects.get(revocation=revocation)
    assert asked.endpoint == endpoint and asked.confirmed_at is None
    delivery = Delivery.objects.get(event_type=AccessEvent.SESSIONS_REVOKE)
    assert asked.delivery == delivery
    assert delivery.endpoint == endpoint and delivery.revocation_id == revocation.pk
    data = delivery.payload["data"]
    assert delivery.payload["type"] == "access.sessions_revoke"
    assert data["revocation"] == revocation.pk
    assert data["confirm_url"] == (
        f"{settings.JANITOR_PUBLIC_URL}/api/v1/revocations/{revocation.pk}/confirm"
    )
    assert data["members"] == [
        {"public_id": member.public_id, "email": member.email} for member in account.team
    ]
    assert data["status"] == AccessStatus.REVOKED_PENDING
    assert data["deadline"].endswith("Z")
    assert data["deadline"] == asked.deadline.astimezone(UTC).isoformat().replace("+00:00", "Z")

    # A redelivered task, and the periodic check, ask nobody twice and keep it waiting.
    revocation_run(revocation_id=revocation.pk)
    assert revocations_waiting_check() == 1
    assert SessionRevocation.objects.filter(revocation=revocation).count() == 1
    assert Delivery.objects.filter(event_type=AccessEvent.SESSIONS_REVOKE).count() == 1
    revocation.refresh_from_db()
    assert revocation.status == RevocationStatus.APPROVED
    assert STEP_SESSIONS not in revocation.steps


@pytest.mark.smoke
def test_the_confirmation_completes_the_revocation(acme, support_user, admin_user):
    endpoint, raw = acme
    account = AccountFactory()
    revocation = _approved(account, support_user, admin_user)

    status, body = _confirm(revocation.pk, raw, {"sessions_ended": 3})

    assert status == 200
    assert body == {"revocation": revocation.pk, "confirmed": True, "waiting_for": []}
    revocation.refresh_from_db()
    account.refresh_from_db()
    assert revocation.status == RevocationStatus.COMPLETED
    assert account.access_status == AccessStatus.REVOKED and account.is_active is False
    assert sorted(revocation.steps) == [
        STEP_PENDING,
        STEP_SESSIONS_LOCAL,
        STEP_SESSIONS,
        STEP_REVOKED,
        STEP_AUDIT,
    ]
    asked = SessionRevocation.objects.get(revocation=revocation)
    assert asked.confirmed_at is not None and asked.sessions_ended == 3
    products = revocation.steps[STEP_SESSIONS]["products"]
    assert products == [
        {
            "product": "Acme app",
            "asked_at": asked.requested_at.isoformat(),
            "confirmed_at": asked.confirmed_at.isoformat(),
            "sessions_ended": 3,
            "delivery": asked.delivery.webhook_id,
        }
    ]
    assert revocation.attempts == 1  # the continuation is not a new attempt
    audit = AccessAudit.objects.get(account=account, to_status=AccessStatus.REVOKED)
    assert audit.details["product_sessions"] == products
    assert audit.details["steps"][STEP_SESSIONS]["product_sessions_ended"] == 3


def test_a_second_confirmation_is_accepted_and_changes_nothing(acme, support_user, admin_user):
    _endpoint_, raw = acme
    revocation = _approved(AccountFactory(), support_user, admin_user)
    assert _confirm(revocation.pk, raw, {"sessions_ended": 2})[0] == 200
    first = SessionRevocation.objects.get(revocation=revocation)
    completed = RevocationRequest.objects.get(pk=revocation.pk)

    status, body = _confirm(revocation.pk, raw, {"sessions_ended": 9})

    assert status == 200
    assert body == {"revocation": revocation.pk, "confirmed": True, "waiting_for": []}
    again = SessionRevocation.objects.get(revocation=revocation)
    assert (again.confirmed_at, again.sessions_ended) == (first.confirmed_at, 2)
    after = RevocationRequest.objects.get(pk=revocation.pk)
    assert (after.steps, after.completed_at) == (completed.steps, completed.completed_at)
    assert AccessAudit.objects.filter(to_status=AccessStatus.REVOKED).count() == 1


def test_it_waits_for_every_product(acme, support_user, admin_user):
    _acme, acme_raw = acme
    _books, books_raw = _endpoint("Books")
    _endpoint("Docs site", holds_sessions=False)  # told of changes, holds no sessions
    _endpoint("Old app", is_enabled=False)
    revocation = _approved(AccountFactory(), support_user, admin_user)
    assert sorted(
        SessionRevocation.objects.filter(revocation=revocation).values_list(
            "endpoint__name", flat=True
        )
    ) == ["Acme app", "Books"]

    status, body = _confirm(revocation.pk, acme_raw)
    assert (status, body["waiting_for"]) == (200, ["Books"])
    assert RevocationRequest.objects.get(pk=revocation.pk).status == RevocationStatus.APPROVED

    status, body = _confirm(revocation.pk, books_raw, {"sessions_ended": 0})
    assert (status, body["waiting_for"]) == (200, [])
    revocation.refresh_from_db()
    assert revocation.status == RevocationStatus.COMPLETED
    assert [p["product"] for p in revocation.steps[STEP_SESSIONS]["products"]] == [
        "Acme app",
        "Books",
    ]


@pytest.mark.smoke
def test_past_the_deadline_it_fails_retryable_then_a_retry_waits_again(
    acme, support_user, admin_user, second_admin
):
    endpoint, raw = acme
    account = AccountFactory()
    revocation = _approved(account, support_user, admin_user)
    first_delivery = SessionRevocation.objects.get(revocation=revocation).delivery
    _overdue(revocation)

    assert revocations_waiting_check() == 1

    revocation.refresh_from_db()
    account.refresh_from_db()
    seconds = settings.JANITOR_REVOCATION_CONFIRM_SECONDS
    assert revocation.status == RevocationStatus.FAILED
    assert revocation.last_error == f"waiting for Acme app: no confirmation in {seconds} s"
    assert account.access_status == AccessStatus.REVOKED_PENDING  # still refused at login
    notices = Notice.objects.filter(kind=NoticeKind.REVOCATION_STUCK)
    assert notices.exists()  # one per Admin
    assert all("waiting for Acme app: no confirmation" in n.body for n in notices)
    assert revocations_waiting_check() == 0  # failed: no longer re-checked

    # Retry re-asks: the event still being delivered goes out again now, with a new deadline.
    Delivery.objects.filter(pk=first_delivery.pk).update(
        status=DeliveryStatus.FAILING, next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    before_retry = timezone.now()
    retried = revocation_retry(revocation_id=revocation.pk, actor=second_admin)
    assert retried.status == RevocationStatus.APPROVED
    assert retried.history[-1]["asked_again"] == ["Acme app"]
    asked = SessionRevocation.objects.get(revocation=revocation)
    assert asked.requested_at >= before_retry and asked.delivery_id == first_delivery.pk
    resent = Delivery.objects.get(pk=first_delivery.pk)
    assert resent.next_attempt_at <= timezone.now()
    # It carries the new deadline, not the first one (already past).
    assert resent.payload["data"]["deadline"] == (
        (asked.deadline).astimezone(UTC).isoformat().replace("+00:00", "Z")
    )
    assert Delivery.objects.filter(event_type=AccessEvent.SESSIONS_REVOKE).count() == 1

    status, body = _confirm(revocation.pk, raw)
    assert (status, body["waiting_for"]) == (200, [])
    revocation.refresh_from_db()
    assert revocation.status == RevocationStatus.COMPLETED
    assert revocation.attempts == 2
    audit = AccessAudit.objects.get(account=account, to_status=AccessStatus.REVOKED)
    assert [r["by"] for r in audit.details["retries"]] == [second_admin.email]
    assert audit.details["product_sessions"][0]["product"] == endpoint.name


def test_a_retry_sends_a_new_event_when_the_old_one_is_dead(acme, support_user, admin_user):
    revocation = _approved(AccountFactory(), support_user, admin_user)
    old = SessionRevocation.objects.get(revocation=revocation).delivery
    Delivery.objects.filter(pk=old.pk).update(status=DeliveryStatus.DEAD)
    _overdue(revocation)
    revocations_waiting_check()

    revocation_retry(revocation_id=revocation.pk, actor=admin_user)

    asked = SessionRevocation.objects.get(revocation=revocation)
    assert asked.delivery_id != old.pk
    assert asked.delivery.status == DeliveryStatus.PENDING
    assert asked.delivery.event_type == AccessEvent.SESSIONS_REVOKE
    assert asked.delivery.payload["data"]["revocation"] == revocation.pk
    assert Delivery.objects.get(pk=old.pk).status == DeliveryStatus.DEAD
    assert RevocationRequest.objects.get(pk=revocation.pk).status == RevocationStatus.APPROVED


def test_a_late_confirmation_after_the_failure_lets_the_retry_pass(acme, support_user, admin_user):
    _endpoint_, raw = acme
    revocation = _approved(AccountFactory(), support_user, admin_user)
    _overdue(revocation)
    revocations_waiting_check()
    assert RevocationRequest.objects.get(pk=revocation.pk).status == RevocationStatus.FAILED

    status, body = _confirm(revocation.pk, raw, {"sessions_ended": 1})

    assert (status, body["waiting_for"]) == (200, [])
    assert RevocationRequest.objects.get(pk=revocation.pk).status == RevocationStatus.FAILED
    assert SessionRevocation.objects.get(revocation=revocation).confirmed_at is not None
    retried = revocation_retry(revocation_id=revocation.pk, actor=admin_user)
    assert retried.status == RevocationStatus.COMPLETED
    assert "asked_again" not in retried.history[-1]
    assert retried.steps[STEP_SESSIONS]["products"][0]["sessions_ended"] == 1


def test_a_token_of_a_product_not_asked_gets_404_and_nothing_changes(
    acme, support_user, admin_user
):
    _other, other_raw = _endpoint("Books", is_enabled=False)
    _token, stray_raw = api_token_create(
        name="reporting", created_by=None, scopes=[ApiScope.ACCESS_READ]
    )
    revocation = _approved(AccountFactory(), support_user, admin_user)

    for raw in (other_raw, stray_raw):
        status, body = _confirm(revocation.pk, raw)
        assert status == 404
        assert "did not ask this token's product" in body["error"]
    assert not SessionRevocation.objects.filter(confirmed_at__isnull=False).exists()
    assert RevocationRequest.objects.get(pk=revocation.pk).status == RevocationStatus.APPROVED


def test_an_unknown_revocation_is_404(acme):
    _endpoint_, raw = acme
    status, body = _confirm(987654, raw)
    assert status == 404
    assert body["error"] == "Revocation 987654 did not ask this token's product to end sessions."


@given(revocation_id=st.one_of(st.integers(min_value=0, max_value=2**70), st.just(10**40)))
@hypothesis_settings(max_examples=30)
def test_made_up_revocation_ids_are_404_and_change_nothing(revocation_id):
    with transaction.atomic():
        _endpoint_, raw = _endpoint(f"Fuzzed {secrets.token_hex(4)}")
        response = Client().post(
            f"/api/v1/revocations/{revocation_id}/confirm",
            data="{}",
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )
        assert response.status_code == 404, (revocation_id, response.content)
        assert "did not ask this token's product" in response.json()["error"]
        assert not SessionRevocation.objects.exists()
        transaction.set_rollback(True)


def test_refusals_say_why_and_store_nothing(acme, support_user, admin_user):
    _endpoint_, raw = acme
    revocation = _approved(AccountFactory(), support_user, admin_user)
    _token, activity_raw = api_token_create(name="activity only", created_by=None)

    assert _confirm(revocation.pk, None)[0] == 401
    assert _confirm(revocation.pk, "jan_made-up")[0] == 401
    status, body = _confirm(revocation.pk, activity_raw)
    assert (status, body["error"]) == (403, "This token lacks the access:read scope.")
    status, body = _confirm(revocation.pk, raw, {"sessions_ended": "three"})
    assert status == 400 and "sessions_ended" in body["errors"]
    status, body = _confirm(revocation.pk, raw, {"sessions_ended": -1})
    assert status == 400 and "sessions_ended" in body["errors"]
    status, body = _confirm(revocation.pk, raw, ["not", "an", "object"])
    assert status == 400 and "body" in body["errors"]
    assert not SessionRevocation.objects.filter(confirmed_at__isnull=False).exists()
    assert RevocationRequest.objects.get(pk=revocation.pk).status == RevocationStatus.APPROVED


def test_a_revocation_no_longer_waiting_answers_409(acme, support_user, admin_user):
    _endpoint_, raw = acme
    account = AccountFactory()
    revocation = _approved(account, support_user, admin_user)
    _overdue(revocation)
    revocations_waiting_check()
    revocation_abandon(revocation_id=revocation.pk, actor=admin_user, reason="Product gone")

    status, body = _confirm(revocation.pk, raw)

    assert status == 409
    assert body["error"] == (
        f"Revocation {revocation.pk} is abandoned, access restored: it no longer waits for a "
        "confirmation."
    )
    assert SessionRevocation.objects.get(revocation=revocation).confirmed_at is None


def test_an_abandoned_revocations_session_event_is_never_sent_to_the_product(
    acme, support_user, admin_user
):
    """The product was down: the revocation failed and was abandoned, the account is active
    again. When the product comes back within the three-day retry window, the waiting
    access.sessions_revoke must not end the sessions of people who may now sign in."""
    account = AccountFactory(members=1)
    revocation = _approved(account, support_user, admin_user)
    _overdue(revocation)
    revocations_waiting_check()
    revocation_abandon(revocation_id=revocation.pk, actor=admin_user, reason="Product gone")
    delivery = Delivery.objects.get(event_type=AccessEvent.SESSIONS_REVOKE)
    assert delivery.status in {DeliveryStatus.PENDING, DeliveryStatus.FAILING}
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())

    deliveries_deliver_due()

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUPERSEDED and delivery.attempts == 0
    assert "access was given back" in delivery.last_error


def test_a_waiting_revocation_is_kept_alive_not_stalled(acme, support_user, admin_user):
    revocation = _approved(AccountFactory(), support_user, admin_user)
    long_ago = timezone.now() - timedelta(hours=1)
    steps = {name: {**info, "at": long_ago.isoformat()} for name, info in revocation.steps.items()}
    RevocationRequest.objects.filter(pk=revocation.pk).update(
        decided_at=long_ago, reported_at=long_ago, steps=steps
    )
    assert RevocationRequest.objects.get(pk=revocation.pk).is_stalled

    revocations_waiting_check()

    assert not RevocationRequest.objects.get(pk=revocation.pk).is_stalled


@pytest.mark.smoke
def test_without_a_product_that_holds_sessions_step_two_is_unchanged(support_user, admin_user):
    _endpoint("Docs site", holds_sessions=False)
    _endpoint("Old app", is_enabled=False)
    account = AccountFactory()
    client = sign_in(account.member)

    revocation = _approved(account, support_user, admin_user)

    assert revocation.status == RevocationStatus.COMPLETED
    assert sorted(revocation.steps) == [STEP_PENDING, STEP_SESSIONS, STEP_REVOKED, STEP_AUDIT]
    assert revocation.sessions_removed == 1
    assert "products" not in revocation.steps[STEP_SESSIONS]
    assert not SessionRevocation.objects.exists()
    assert not Delivery.objects.filter(event_type=AccessEvent.SESSIONS_REVOKE).exists()
    assert client.get(reverse("customer_home")).status_code == 302
    assert revocations_waiting_check() == 0


def test_the_page_shows_waiting_confirmed_and_who_did_not_confirm(
    acme, admin_client_, support_user, admin_user
):
    _acme, acme_raw = acme
    _endpoint("Books")
    revocation = _approved(AccountFactory(), support_user, admin_user)
    row = f'data-testid="open-request-{revocation.pk}"'

    page = admin_client_.get(reverse("revocation_list")).content.decode()
    assert row in page
    assert "Waiting for Acme app (asked at " in page
    assert "Waiting for Books (asked at " in page
    assert ", deadline " in page
    assert "data-polling" in page
    panel = admin_client_.get(
        reverse("account_access_actions", args=[revocation.account.public_id])
    ).content.decode()
    assert "Waiting for Acme app (asked at " in panel and "data-polling" in panel

    _confirm(revocation.pk, acme_raw, {"sessions_ended": 2})
    page = admin_client_.get(reverse("revocation_list")).content.decode()
    assert "Confirmed by Acme app at " in page and "(2 sessions ended)" in page
    assert "Waiting for Books (asked at " in page

    _overdue(revocation)
    revocations_waiting_check()
    page = admin_client_.get(reverse("revocation_list")).content.decode()
    assert "Books did not confirm (asked at " in page
    assert "waiting for Books: no confirmation in" in page
    assert "Confirmed by Acme app at " in page
    assert f'data-testid="retry-{revocation.pk}"' in page


def test_the_shell_revocation_says_it_waits_for_the_product(acme, admin_user, capsys):
    _endpoint_, raw = acme
    account = AccountFactory()

    call_command(
        "revoke_access", account.public_id, "--reason", "Takeover", "--actor", admin_user.email
    )

    out = capsys.readouterr().out
    assert f"step {STEP_SESSIONS_LOCAL}" in out
    assert "waiting for Acme app" in out
    assert "waits for the products that hold sessions to confirm" in out
    revocation = RevocationRequest.objects.get(account=account)
    assert revocation.status == RevocationStatus.APPROVED
    assert _confirm(revocation.pk, raw)[0] == 200
    assert RevocationRequest.objects.get(pk=revocation.pk).status == RevocationStatus.COMPLETED


def test_a_product_disabled_while_waited_for_is_no_longer_awaited(acme, support_user, admin_user):
    endpoint, _raw = acme
    revocation = _approved(AccountFactory(), support_user, admin_user)
    assert revocation.status == RevocationStatus.APPROVED

    ProductEndpoint.objects.filter(pk=endpoint.pk).update(is_enabled=False)
    revocations_waiting_check()

    revocation.refresh_from_db()
    assert revocation.status == RevocationStatus.COMPLETED
    assert revocation.steps[STEP_SESSIONS]["products"] == []
    assert revocation.steps[STEP_SESSIONS]["products_not_waited_for"] == ["Acme app"]


def test_the_lists_refresh_keeps_the_history_page_being_read(acme, support_user, admin_user):
    """While a revocation runs the page refreshes every 2 s: an Admin reading page 2 of the
    history stays on page 2."""
    closed = AccountFactory()
    RevocationRequest.objects.bulk_create(
        RevocationRequest(
            account=closed,
            requested_by=support_user,
            reason=f"old {n}",
            status=RevocationStatus.REJECTED,
            decided_by=admin_user,
            decided_at=timezone.now(),
        )
        for n in range(60)
    )
    _approved(AccountFactory(), support_user, admin_user)  # running: the page polls

    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("revocation_list"), {"page": 2}).content.decode()

    assert f'hx-get="{reverse("revocation_list")}?page=2"' in page
