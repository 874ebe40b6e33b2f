"""Notices (issue 18): each event tells the right role exactly once, through a real Apprise call
to a local HTTP receiver or Django's mail outbox; failures are retried, then shown."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.models import RevocationRequest, RevocationStatus
from accounts.services.revocation import (
    revocation_approve,
    revocation_reject,
    revocation_request,
)
from janitor.models import Notice, NoticeKind, NoticeMute, NoticeStatus
from janitor.services import notify
from janitor.services.notifications import notice_send, notices_retry_due
from janitor.tasks import notifications_check_task, support_digest_task
from reconciliation.models import Dispute, RunStatus, WebhookEvent
from reconciliation.services.disputes import dispute_apply
from reconciliation.services.runs import reconciliation_run
from reconciliation.services.webhooks import webhook_event_process, webhook_event_store
from tests.factories import AccountFactory, ActivityFactory, FlagFactory
from tests.reconciliation.webhook_support import SECRET, body_for, post_signed, sub_obj

pytestmark = pytest.mark.django_db


class Receiver:
    """A local HTTP endpoint for Apprise's json:// notifications; can be told to fail."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.posts.append({"path": self.path, "json": json.loads(body or b"{}")})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/{path}"

    def texts(self, path: str) -> list[str]:
        return [
            f"{p['json'].get('title', '')}\n{p['json'].get('message', '')}"
            for p in self.posts
            if p["path"] == f"/{path}"
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    rx = Receiver()
    settings.JANITOR_NOTIFY = {
        "support": [rx.url("support")],
        "finance": [rx.url("finance")],
        "admins": [rx.url("admins")],
    }
    yield rx
    rx.close()


@pytest.fixture
def sent(django_capture_on_commit_callbacks):
    """Run the queue's send tasks the way a worker would after the writer commits."""

    def run(action, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return action(*args, **kwargs)

    return run


def _dispute_obj(dispute_id="dp_n1", customer="cus_n1", due_in=7 * 86400):
    now = int(time.time())
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": 500000,
        "currency": "usd",
        "charge": {"id": "ch_n1", "object": "charge", "customer": customer},
        "reason": "subscription_canceled",
        "status": "needs_response",
        "created": now,
        "metadata": {},
        "evidence_details": {"due_by": now + due_in, "submission_count": 0},
    }


# --- Finance --------------------------------------------------------------------------------


def test_a_new_dispute_tells_finance_once_with_usage(receiver, sent, settings, client, stripe_fake):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]
    account = AccountFactory(stripe_customer_id="cus_n1", email="acme@example.com")
    ActivityFactory.create_batch(3, account=account)
    stripe_fake.add_customer("cus_n1", email="acme@example.com")
    stripe_fake.add_charge("ch_n1", customer="cus_n1")
    # As Stripe sends it: the charge as an id, no customer on the dispute.
    obj = {**_dispute_obj(), "charge": "ch_n1"}
    body = body_for("charge.dispute.created", obj, id="evt_dispute_1")

    sent(post_signed, client, body)
    sent(post_signed, client, body)  # Stripe delivers it again

    [text] = receiver.texts("finance")
    assert "5,000.00 USD" in text and "acme@example.com" in text
    assert "subscription_canceled" in text
    assert "Usage in the last 30 days: 3 requests" in text
    assert "Evidence due:" in text
    assert "/disputes/dp_n1/" in text
    assert receiver.texts("admins") == [] and receiver.texts("support") == []
    notice = Notice.objects.get(kind=NoticeKind.DISPUTE_NEW)
    assert notice.status == NoticeStatus.SENT and notice.target_label.startswith("json://")


def test_a_dispute_due_within_48_hours_without_evidence_is_announced_once(receiver, sent):
    dispute_apply(obj=_dispute_obj("dp_due", due_in=20 * 3600))
    dispute_apply(obj=_dispute_obj("dp_later", due_in=5 * 86400))
    staged = dispute_apply(obj=_dispute_obj("dp_staged", due_in=10 * 3600))
    Dispute.objects.filter(pk=staged.pk).update(staged_at=timezone.now())
    Notice.objects.all().delete()  # the "new dispute" notices are another test's business

    sent(notifications_check_task)
    sent(notifications_check_task)

    [text] = receiver.texts("finance")
    assert "dp_due" in text and "no evidence staged" in text


def test_evidence_submitted_tells_finance(receiver, sent, finance_user, stripe_fake):
    from reconciliation.services.evidence import dispute_evidence_stage, dispute_evidence_submit

    account = AccountFactory(stripe_customer_id="cus_ev")
    stripe_fake.add_dispute("dp_ev", charge="ch_ev")
    dispute = dispute_apply(obj={**stripe_fake.disputes["dp_ev"], "metadata": {}})
    Dispute.objects.filter(pk=dispute.pk).update(account=account)
    dispute.refresh_from_db()
    dispute_evidence_stage(dispute=dispute, actor=finance_user)
    sent(dispute_evidence_submit, dispute=dispute, actor=finance_user)
    texts = [t for t in receiver.texts("finance") if "Evidence submitted" in t]
    assert len(texts) == 1 and finance_user.email in texts[0]


# --- Admins ---------------------------------------------------------------------------------


def test_a_revocation_request_tells_the_other_admins_by_email(
    sent, support_user, admin_user, second_admin
):
    account = AccountFactory()
    sent(revocation_request, account=account, requested_by=admin_user, reason="Chargeback")
    recipients = [m.to for m in mail.outbox]
    assert recipients == [[second_admin.email]]
    assert account.email in mail.outbox[0].subject


def test_a_halted_run_tells_admins_with_its_reason(receiver, sent, stripe_fake, settings):
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 0.0
    account = AccountFactory()
    stripe_fake.add_subscription("sub_x", customer=account.stripe_customer_id, status="canceled")
    run = sent(reconciliation_run, dry_run=False, triggered_by="test")
    assert run.status == RunStatus.HALTED
    [text] = receiver.texts("admins")
    assert f"#{run.pk}" in text and "Safety brake" in text and "start_grace 1" in text


def test_a_refused_stripe_key_tells_admins(receiver, sent, stripe_fake, settings):
    stripe_fake.fail("/v1/subscriptions", status=401, times=10)  # a revoked key
    AccountFactory()
    run = sent(reconciliation_run, dry_run=False, triggered_by="test")
    assert run.status in {RunStatus.HALTED, RunStatus.FAILED}
    texts = [t for t in receiver.texts("admins") if "STRIPE_API_KEY" in t]
    assert len(texts) == 1 and "401" in texts[0]


def test_failed_and_stalled_revocations_tell_admins(
    receiver, sent, support_user, admin_user, monkeypatch, settings
):
    from accounts.services import revocation as revocation_service

    def down(*, account):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(revocation_service, "sessions_revoke_account", down)
    request = revocation_request(account=AccountFactory(), requested_by=support_user, reason="x")
    sent(revocation_approve, revocation_id=request.pk, approver=admin_user)
    assert [t for t in receiver.texts("admins") if "failed" in t and "Redis is down" in t]

    lost = revocation_request(account=AccountFactory(), requested_by=support_user, reason="y")
    RevocationRequest.objects.filter(pk=lost.pk).update(
        status=RevocationStatus.APPROVED,
        decided_by=admin_user,
        decided_at=timezone.now() - timedelta(hours=1),
    )
    sent(notifications_check_task)
    sent(notifications_check_task)
    assert len([t for t in receiver.texts("admins") if "stalled" in t]) == 1


def test_dead_lettered_webhooks_are_batched_into_one_notice(receiver, sent, settings):
    from reconciliation.services import webhooks

    for n in range(2):
        row = webhook_event_store(
            event={
                "id": f"evt_dead{n}",
                "type": "customer.subscription.updated",
                "created": int(time.time()),
                "data": {"object": "not an object"},
            }
        )
        for _ in range(webhooks.WEBHOOK_MAX_ATTEMPTS):
            WebhookEvent.objects.filter(pk=row.pk).update(next_attempt_at=None)
            webhook_event_process(event_id=row.pk)
    assert WebhookEvent.objects.filter(status="dead").count() == 2

    sent(notifications_check_task)
    sent(notifications_check_task)

    [text] = receiver.texts("admins")
    assert "2 webhook event(s) dead-lettered" in text
    assert "evt_dead0" in text and "evt_dead1" in text


# --- Support, requesters, customers ---------------------------------------------------------


def test_the_morning_digest_goes_to_support(receiver, sent, support_user):
    grace = AccountFactory(
        access_status="grace_period",
        grace_ends_at=timezone.now().replace(hour=23, minute=0, second=0, microsecond=0),
    )
    FlagFactory(account=grace, kind="payment_failed", assignee=support_user)
    FlagFactory(kind="manual_grant")
    sent(support_digest_task)
    sent(support_digest_task)  # a redelivered task: the same day's digest once
    [text] = receiver.texts("support")
    assert grace.email in text
    assert "Payment failed: 1" in text and "Manual grant: 1" in text
    assert f"{support_user.email}: 1" in text and "unassigned: 1" in text


def test_the_requester_hears_of_completion_and_rejection(sent, support_user, admin_user):
    done = revocation_request(account=AccountFactory(), requested_by=support_user, reason="Fraud")
    sent(revocation_approve, revocation_id=done.pk, approver=admin_user)
    rejected = revocation_request(account=AccountFactory(), requested_by=support_user, reason="x")
    sent(revocation_reject, revocation_id=rejected.pk, approver=admin_user, comment="Paid up")
    to_requester = [m for m in mail.outbox if m.to == [support_user.email]]
    assert [m.subject.split(": ")[-1] for m in to_requester] == ["completed", "rejected"]
    assert "Paid up" in to_requester[1].body


def test_the_grace_notice_is_queued_recorded_and_links_to_billing(client, sent, settings):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]
    settings.JANITOR_BILLING_URL = "https://billing.example.com/update"
    account = AccountFactory(stripe_customer_id="cus_g1", email="pat@example.com")
    body = body_for("customer.subscription.updated", sub_obj("sub_g1", "cus_g1", "past_due"))
    sent(post_signed, client, body)
    sent(post_signed, client, body)
    account.refresh_from_db()
    assert account.access_status == "grace_period"
    [message] = [m for m in mail.outbox if m.to == ["pat@example.com"]]
    assert "issue with your payment" in message.subject
    assert "https://billing.example.com/update" in message.body
    notice = Notice.objects.get(kind=NoticeKind.GRACE_STARTED)
    assert (notice.status, notice.target_label) == (NoticeStatus.SENT, "pat@example.com")


def test_the_grace_notice_links_to_a_fresh_billing_portal_session(sent, settings, stripe_fake):
    settings.JANITOR_BILLING_PORTAL_RETURN_URL = "https://app.example.com/"
    settings.JANITOR_PUBLIC_URL = "https://janitor.example.com"
    stripe_fake.add_customer("cus_portal", email="portal@example.com")
    account = AccountFactory(stripe_customer_id="cus_portal", email="portal@example.com")
    account.grace_ends_at = timezone.now() + timedelta(days=7)
    sent(notify.grace_started, account=account)
    [message] = mail.outbox
    link = next(w for w in message.body.split() if w.startswith("https://janitor.example.com/"))
    assert not stripe_fake.requests_to("/v1/billing_portal/sessions")  # made when clicked

    from django.test import Client

    path = link.removeprefix("https://janitor.example.com")
    for _ in range(2):  # each click gets its own session: they expire
        response = Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith(f"{stripe_fake.base_url}/p/session/bps_")
    calls = stripe_fake.requests_to("/v1/billing_portal/sessions")
    assert [c.form["customer"] for c in calls] == ["cus_portal", "cus_portal"]
    assert calls[0].form["return_url"] == "https://app.example.com/"
    tampered = Client().get(path.replace("/app/billing/", "/app/billing/x"))
    assert tampered.status_code == 400


# --- Failures, dedup, mutes, the page -------------------------------------------------------


def test_a_failing_receiver_is_retried_then_shown(receiver, sent, settings, admin_client_):
    settings.JANITOR_NOTIFY_MAX_ATTEMPTS = 3
    receiver.fail_next = 10
    account = AccountFactory()
    sent(dispute_apply, obj=_dispute_obj("dp_fail", customer=account.stripe_customer_id))
    notice = Notice.objects.get(kind=NoticeKind.DISPUTE_NEW)
    assert notice.status == NoticeStatus.FAILED and notice.attempts == 1
    assert notice.next_attempt_at > timezone.now()
    assert "Apprise could not deliver" in notice.last_error

    assert notices_retry_due() == 0  # not due yet
    for _ in range(2):
        Notice.objects.filter(pk=notice.pk).update(next_attempt_at=timezone.now())
        notice_send(notice_id=notice.pk)
    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == (NoticeStatus.DEAD, 3)

    overview = admin_client_.get(reverse("overview")).content.decode()
    assert "1 notice failing or given up" in overview
    page = admin_client_.get(reverse("notice_list"), {"status": "dead"}).content.decode()
    assert "dp_fail" in page and "Apprise could not deliver" in page


def test_a_failed_send_succeeds_on_retry(receiver, sent):
    receiver.fail_next = 1
    sent(dispute_apply, obj=_dispute_obj("dp_retry"))
    notice = Notice.objects.get(kind=NoticeKind.DISPUTE_NEW)
    Notice.objects.filter(pk=notice.pk).update(next_attempt_at=timezone.now())
    assert notices_retry_due() == 1  # the sync test cluster sends it at once
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.SENT and notice.attempts == 2
    assert len(receiver.texts("finance")) == 1


def test_staff_mute_a_kind_but_not_approvals(sent, client, support_user, admin_user, second_admin):
    client.force_login(second_admin)
    response = client.post(
        reverse("notice_preferences"),
        {"muted": [NoticeKind.REVOCATION_WAITING, NoticeKind.RUN_HALTED]},
    )
    assert response.status_code == 200
    assert set(NoticeMute.objects.filter(user=second_admin).values_list("kind", flat=True)) == {
        NoticeKind.RUN_HALTED
    }
    sent(revocation_request, account=AccountFactory(), requested_by=support_user, reason="x")
    assert sorted(m.to[0] for m in mail.outbox) == sorted([admin_user.email, second_admin.email])

    from reconciliation.models import ReconciliationRun

    run = ReconciliationRun.objects.create(status=RunStatus.HALTED, halt_reason="test")
    mail.outbox.clear()
    sent(notify.run_halted, run=run)
    assert [m.to for m in mail.outbox] == [[admin_user.email]]
    muted = Notice.objects.get(kind=NoticeKind.RUN_HALTED, recipient=second_admin)
    assert muted.status == NoticeStatus.MUTED


def test_the_notifications_page_is_for_admins(admin_user, support_user):
    from django.test import Client

    admin, support = Client(), Client()
    admin.force_login(admin_user)
    support.force_login(support_user)
    assert admin.get(reverse("notice_list")).status_code == 200
    assert support.get(reverse("notice_list")).status_code == 403
