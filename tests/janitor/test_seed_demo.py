"""seed_demo: realistic demo data, and running it twice leaves the same counts."""

import pytest
from django.core.management import call_command

from accounts.models import AccessAudit, Account, ActivityLog, User
from janitor.demo import DEMO_PASSWORD, DEMO_STAFF
from reconciliation.models import Dispute, Flag, Subscription, SubscriptionStatus, WebhookEvent

pytestmark = pytest.mark.django_db

MODELS = [Account, User, Subscription, ActivityLog, Dispute, Flag, WebhookEvent, AccessAudit]


def _counts():
    return {model.__name__: model.objects.count() for model in MODELS}


@pytest.mark.smoke
def test_seed_demo_is_idempotent_and_covers_every_status(capsys):
    call_command("seed_demo")
    first = _counts()
    call_command("seed_demo")
    assert _counts() == first
    # 2,000 people who pay for themselves, ACME Corp (50 members) and Globex (11).
    assert Account.objects.count() == 2002
    assert User.objects.filter(account__isnull=False).count() == 2000 + 50 + 11
    acme = Account.objects.get(public_id="acct-acme-corp")
    assert (acme.name, acme.members.count()) == ("ACME Corp", 50)
    assert (
        acme.subscriptions.get().amount == 500_000
        and acme.disputes.filter(status="needs_response").exists()
    )
    statuses = set(Subscription.objects.values_list("status", flat=True))
    assert statuses == set(SubscriptionStatus.values)
    assert Account.objects.filter(subscriptions__isnull=True).exists()  # manual grant
    assert Account.objects.filter(is_active=False, subscriptions__status="active").exists()
    assert first["Dispute"] >= 4 and first["ActivityLog"] > 10_000
    out = capsys.readouterr().out
    assert DEMO_PASSWORD in out
    assert "Two-factor sign-in is off" in out  # the test settings' policy
    for email, _name, role in DEMO_STAFF:
        assert email in out
        staff = User.objects.get(email=email)
        assert staff.check_password(DEMO_PASSWORD) and staff.staff_role == role


def test_ensure_schedules_is_idempotent(capsys):
    from django_q.models import Schedule

    call_command("ensure_schedules")
    first = sorted(Schedule.objects.values_list("name", "schedule_type", "cron", "minutes"))
    call_command("ensure_schedules")
    assert sorted(Schedule.objects.values_list("name", "schedule_type", "cron", "minutes")) == first
    assert len(first) == 9
    assert ("revocations: waiting for products", "I", None, 1) in first
    assert ("webhooks: sweeper", "I", None, 1) in first
    assert ("deliveries: sweeper", "I", None, 1) in first
    assert ("notices: retry", "I", None, 1) in first
    assert ("notices: support digest", "C", "0 7 * * *", None) in first
    assert ("privacy: retention purge", "C", "45 3 * * *", None) in first
    out = capsys.readouterr().out
    assert "30 2 * * *" in out and "privacy: retention purge" in out


@pytest.mark.django_db
def test_the_demo_records_notices_for_its_staff(django_capture_on_commit_callbacks):
    from io import StringIO

    from django.core import mail

    from janitor.models import Notice, NoticeKind, NoticeStatus

    with django_capture_on_commit_callbacks(execute=True):  # the worker sends them
        call_command("seed_demo", stdout=StringIO())
    kinds = set(Notice.objects.values_list("kind", flat=True))
    assert {NoticeKind.DISPUTE_NEW, NoticeKind.SUPPORT_DIGEST} <= kinds
    count = Notice.objects.count()
    call_command("seed_demo", stdout=StringIO())
    assert Notice.objects.count() == count  # a second seed sends nothing again
    assert not Notice.objects.exclude(status=NoticeStatus.SENT).exists()
    assert any("finance@janitor.local" in m.to for m in mail.outbox)


@pytest.mark.parametrize("policy", ["admins", "all"])
def test_seed_demo_says_how_to_sign_in_with_two_factor(settings, capsys, policy):
    settings.JANITOR_STAFF_2FA = policy
    call_command("seed_demo", "--if-empty")
    out = capsys.readouterr().out
    assert f"JANITOR_STAFF_2FA={policy}" in out and "/two-factor/enrol/" in out


@pytest.mark.django_db
def test_the_demo_has_every_kind_of_flag_two_weeks_of_runs_and_events_to_replay():
    from datetime import timedelta

    from django.utils import timezone

    from reconciliation.models import FlagKind, ReconciliationRun, RunStatus, WebhookStatus

    call_command("seed_demo", verbosity=0)
    now = timezone.now()
    open_flags = Flag.objects.filter(status="open")
    assert set(open_flags.values_list("kind", flat=True)) == set(FlagKind.values)
    ages = sorted(now - opened for opened in open_flags.values_list("opened_at", flat=True))
    assert ages[0] < timedelta(days=1) and timedelta(days=12) < ages[-1] <= timedelta(days=14)
    assigned = open_flags.filter(assignee__isnull=False)
    assert 0 < assigned.count() < open_flags.count()
    assert all(flag.notes.exists() for flag in assigned)

    runs = ReconciliationRun.objects.filter(triggered_by="demo").order_by("started_at")
    assert runs.count() == 14
    assert (runs.last().started_at - runs.first().started_at).days == 13
    (halted,) = [run for run in runs if run.halt_reason]
    assert halted.status == RunStatus.DISCARDED and "(5%)" in halted.halt_reason

    replayable = WebhookEvent.objects.filter(status__in=[WebhookStatus.FAILED, WebhookStatus.DEAD])
    assert set(replayable.values_list("status", flat=True)) == {"failed", "dead"}
    for event in replayable:
        # Real Stripe events, about subscriptions the demo has.
        subscription = event.payload["data"]["object"]["parent"]["subscription_details"]
        assert Subscription.objects.filter(provider_id=subscription["subscription"]).exists()
        assert event.payload["id"] == event.provider_event_id
    # A manual grant has no Stripe customer at all.
    assert Account.objects.filter(stripe_customer_id="", subscriptions__isnull=True).exists()
