"""Team accounts (issue 20): one billing account, many members, end to end against the fake.

The audit decides per account and counts seats; a dispute's evidence covers every member; a
revocation ends every member's sessions; a member can be disabled on their own, audited.
"""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from accounts.models import (
    AccessStatus,
    Account,
    ActivityKind,
    ActivityLog,
    StaffActionAudit,
    StaffActionKind,
    User,
)
from accounts.services import sessions as session_index
from accounts.services.members import MemberError, member_set_enabled
from accounts.services.revocation import (
    STEP_SESSIONS,
    access_restore,
    revocation_approve,
    revocation_request,
    revocation_run,
)
from reconciliation.models import Flag, FlagKind, FlagStatus, Outcome, RunOutcome
from reconciliation.selectors.evidence import evidence_for_account
from reconciliation.services.evidence import dispute_evidence_build, evidence_pdf_export
from reconciliation.services.runs import reconciliation_run
from reconciliation.services.subscriptions import seat_quantity
from tests.accounts.browsing import session_exists, sign_in
from tests.factories import PASSWORD, AccountFactory, ActivityFactory, DisputeFactory, UserFactory

pytestmark = pytest.mark.django_db


def _pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


@pytest.fixture
def no_brake(settings):
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0


# --- The audit: per account, never per member; seats ---------------------------------------


def test_fifty_members_on_one_customer_with_a_flat_price_open_no_flag(stripe_fake, no_brake):
    acme = AccountFactory(name="ACME Corp", members=50)
    stripe_fake.add_customer(acme.stripe_customer_id, email=acme.email)
    stripe_fake.add_subscription(
        customer=acme.stripe_customer_id, price_id="price_enterprise", amount=500_000
    )

    run = reconciliation_run(dry_run=False, triggered_by="test")

    assert run.counts.get(Outcome.IN_SYNC) == 1  # one account decided, not fifty members
    assert not Flag.objects.exists()
    assert not RunOutcome.objects.filter(run=run).exists()
    assert User.objects.filter(account=acme, is_active=True).count() == 50


def test_more_enabled_members_than_paid_seats_open_one_seats_exceeded_flag(
    stripe_fake, no_brake, settings
):
    settings.JANITOR_SEAT_PRICES = frozenset({"price_seat"})
    team = AccountFactory(name="Globex", members=51)
    stripe_fake.add_customer(team.stripe_customer_id, email=team.email)
    stripe_fake.add_subscription(
        customer=team.stripe_customer_id, price_id="price_seat", quantity=50
    )

    run = reconciliation_run(dry_run=False, triggered_by="test")

    flag = Flag.objects.get()
    assert (flag.account_id, flag.kind, flag.status) == (team.pk, FlagKind.SEATS_EXCEEDED, "open")
    assert "51 enabled members for 50 paid seats (1 over)" in flag.reason
    assert team.member.email in flag.reason
    outcome = RunOutcome.objects.get(run=run)
    assert outcome.outcome == Outcome.FLAG_SEATS_EXCEEDED and outcome.applied
    assert (outcome.detail["members"], outcome.detail["seats"]) == (51, 50)
    team.refresh_from_db()
    assert team.access_status == AccessStatus.ACTIVE  # seats never change access

    # Support disables a member who left: the next run finds the seats paid for.
    member_set_enabled(
        member=team.team[-1], enabled=False, actor=_admin(), reason="left the company"
    )
    again = reconciliation_run(dry_run=False, triggered_by="test")
    assert not RunOutcome.objects.filter(run=again).exists()


def test_price_metadata_marks_a_price_per_seat_and_a_flat_price_never_counts(settings):
    settings.JANITOR_SEAT_PRICES = frozenset()
    per_seat = {"price": {"id": "price_x", "metadata": {"per_seat": "true"}}, "quantity": 7}
    flat = {"price": {"id": "price_enterprise", "metadata": {}}, "quantity": 1}
    assert seat_quantity([per_seat, flat]) == 7
    assert seat_quantity([flat]) is None
    settings.JANITOR_SEAT_PRICES = frozenset({"price_enterprise"})
    assert seat_quantity([flat]) == 1


def test_a_comp_suppresses_the_seats_flag(stripe_fake, no_brake, settings):
    from reconciliation.services.access_decisions import comp_record

    settings.JANITOR_SEAT_PRICES = frozenset({"price_seat"})
    team = AccountFactory(members=3)
    stripe_fake.add_customer(team.stripe_customer_id, email=team.email)
    stripe_fake.add_subscription(
        customer=team.stripe_customer_id, price_id="price_seat", quantity=2
    )
    comp_record(
        account=team,
        reason="Third seat given by sales",
        expires_at=timezone.now() + timedelta(days=30),
        granted_by=_admin(),
    )
    reconciliation_run(dry_run=False, triggered_by="test")
    assert not Flag.objects.exists()


def test_members_without_a_customer_of_their_own_never_get_manual_grant_flags(
    stripe_fake, no_brake
):
    team = AccountFactory(members=5)
    stripe_fake.add_customer(team.stripe_customer_id, email=team.email)
    stripe_fake.add_subscription(customer=team.stripe_customer_id)
    reconciliation_run(dry_run=False, triggered_by="test")
    assert not Flag.objects.filter(kind=FlagKind.MANUAL_GRANT).exists()


# --- Evidence for the whole account ----------------------------------------------------------


def _team_with_use(members: int = 5, active: int = 3) -> Account:
    team = AccountFactory(name="ACME Corp", members=members)
    now = timezone.now()
    for k, member in enumerate(team.team[:active]):
        ActivityFactory(member=member, kind=ActivityKind.LOGIN, ip_address=f"203.0.113.{k + 1}")
        ActivityFactory(member=member, occurred_at=now - timedelta(minutes=3 + k))
    return team


def test_evidence_counts_every_member_and_the_sessions_live_now(db):
    team = _team_with_use(members=5, active=3)
    sign_in(team.team[0])
    sign_in(team.team[1])

    evidence = evidence_for_account(account=team)

    summary = evidence.summary
    assert (summary.members_total, summary.active_members, summary.sessions_now) == (5, 3, 2)
    assert summary.activity_count == ActivityLog.objects.filter(member__account=team).count()
    assert {m.email for m in evidence.members if m.total} == {m.email for m in team.team[:3]}
    first = next(m for m in evidence.members if m.email == team.team[0].email)
    # Logins: the crafted one and the sign-in; addresses: crafted, factory default, test client.
    assert (first.logins, first.distinct_ips, first.sessions_now) == (2, 3, 1)
    assert evidence.one_line() == (
        "ACME Corp: no subscription at Stripe; 2 sessions active now across 3 members; "
        "last activity 0 minutes ago"
    )


def test_a_disputes_pdf_and_stripe_fields_state_sessions_now_and_members_in_the_window(
    db, finance_user
):
    team = _team_with_use(members=4, active=2)
    sign_in(team.team[3])
    dispute = DisputeFactory(account=team)

    text = _pdf_text(evidence_pdf_export(account=team, actor=finance_user, dispute=dispute))

    assert "1 session active now across 3 members" in " ".join(text.split())
    assert "4 in the account; 3 active in the window" in text
    squeezed = "".join(text.split())  # long emails wrap inside table cells
    for member in team.team:
        assert member.email in squeezed
    fields, _notes = dispute_evidence_build(
        dispute=dispute, evidence=evidence_for_account(account=team)
    )
    assert "by 3 of the account's 4 members" in fields["access_activity_log"]
    assert team.team[1].email in fields["access_activity_log"]
    assert fields["uncategorized_text"].startswith(
        "ACME Corp: no subscription at Stripe; 1 session"
    )


def test_evidence_command_prints_the_one_line_answer_first(db, capsys):
    team = _team_with_use(members=3, active=2)
    call_command("evidence", team.team[2].email)  # a member's email names the account
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("ACME Corp: no subscription at Stripe; 0 sessions active now across")
    assert "across 2 members; last activity" in first


# --- Revocation and enforcement for every member ---------------------------------------------


def test_an_approved_revocation_ends_every_members_sessions_and_nobody_signs_in(
    support_user, admin_user
):
    team = AccountFactory(members=3)
    clients = [sign_in(member) for member in team.team]
    second = sign_in(team.team[0])
    keys = {m.pk: session_index.session_keys_for(user=m) for m in team.team}
    assert sum(len(k) for k in keys.values()) == 4

    revocation = revocation_request(account=team, requested_by=support_user, reason="Fraud")
    revocation_approve(revocation_id=revocation.pk, approver=admin_user)
    revocation = revocation_run(revocation_id=revocation.pk)

    assert revocation.status == "completed"
    assert revocation.sessions_removed == 4
    per_member = revocation.steps[STEP_SESSIONS]["per_member"]
    assert per_member == {team.team[0].email: 2, team.team[1].email: 1, team.team[2].email: 1}
    audit = team.access_audit.order_by("-id").first()
    assert audit.to_status == AccessStatus.REVOKED
    assert audit.details["sessions_ended_per_member"] == per_member
    for member_keys in keys.values():
        assert not any(session_exists(key) for key in member_keys)
    for client in [*clients, second]:
        assert client.get(reverse("customer_home")).status_code == 302
    for member in team.team:
        response = Client().post(
            reverse("customer_login"), {"username": member.email, "password": PASSWORD}
        )
        assert response.status_code == 200  # the form again, with the refusal
        assert "_auth_user_id" not in Client().session

    # Restoring the account restores its members (their own switch still applies).
    access_restore(account=team, actor=admin_user, reason="Chargeback withdrawn")
    for member in team.team:
        sign_in(member)


@pytest.mark.redis
def test_revocation_ends_every_members_redis_sessions_in_one_script(
    settings, support_user, admin_user
):
    assert settings.REDIS_URL
    team = AccountFactory(members=4)
    for member in team.team:
        sign_in(member)
        sign_in(member)
    counts = session_index.sessions_revoke_account(account=team)
    assert counts == {member.pk: 2 for member in team.team}
    assert session_index.sessions_revoke_account(account=team) == {m.pk: 0 for m in team.team}
    assert session_index.sessions_live_counts(member_ids=[m.pk for m in team.team]) == {
        m.pk: 0 for m in team.team
    }


def _admin():
    from accounts.roles import ROLE_ADMIN
    from tests.factories import StaffFactory

    return StaffFactory(role=ROLE_ADMIN)


def test_a_disabled_member_is_signed_out_and_refused_while_the_account_keeps_access(admin_user):
    team = AccountFactory(members=2)
    leaver, stayer = team.team
    leaver_client, stayer_client = sign_in(leaver), sign_in(stayer)

    audit = member_set_enabled(member=leaver, enabled=False, actor=admin_user, reason="Left")

    assert audit.kind == StaffActionKind.MEMBER_DISABLED
    assert (audit.subject_id, audit.account_id, audit.actor) == (
        leaver.pk,
        team.pk,
        admin_user.email,
    )
    assert audit.details["sessions_ended"] == 1
    assert leaver_client.get(reverse("customer_home")).status_code == 302
    assert stayer_client.get(reverse("customer_home")).status_code == 200
    team.refresh_from_db()
    assert team.access_status == AccessStatus.ACTIVE and not team.access_audit.exists()
    refused = Client().post(
        reverse("customer_login"), {"username": leaver.email, "password": PASSWORD}
    )
    assert refused.status_code == 200
    with pytest.raises(MemberError, match="already disabled"):
        member_set_enabled(member=leaver, enabled=False, actor=admin_user, reason="again")

    member_set_enabled(member=leaver, enabled=True, actor=admin_user, reason="Came back")
    sign_in(leaver)
    kinds = list(StaffActionAudit.objects.filter(account=team).values_list("kind", flat=True))
    assert kinds == [StaffActionKind.MEMBER_DISABLED, StaffActionKind.MEMBER_ENABLED]


def test_member_actions_need_the_permission_and_a_reason(client, finance_user, support_user):
    team = AccountFactory(members=2)
    member = team.team[1]
    url = reverse("member_set_enabled", args=[team.public_id, member.public_id, "disable"])
    client.force_login(finance_user)
    assert client.post(url, {"reason": "x"}).status_code == 403
    client.force_login(support_user)
    response = client.post(url, {"reason": "  "}, follow=True)
    assert "not changed" in response.content.decode()
    member.refresh_from_db()
    assert member.is_active
    response = client.post(url, {"reason": "Left the team"}, follow=True)
    assert "disabled: 0 session(s) ended" in response.content.decode()
    member.refresh_from_db()
    assert not member.is_active
    other = AccountFactory()
    wrong = reverse("member_set_enabled", args=[other.public_id, member.public_id, "enable"])
    assert client.post(wrong, {"reason": "x"}).status_code == 404


# --- The dashboard: members on the account page, queue rows, search ----------------------------


def test_account_page_lists_members_with_last_activity_and_sessions(support_client):
    team = _team_with_use(members=3, active=1)
    sign_in(team.team[0])
    page = support_client.get(reverse("account_detail", args=[team.public_id])).content.decode()
    assert "3 in the account" in page
    for member in team.team:
        assert member.email in page
    assert 'data-testid="member-disable"' in page


def test_queue_rows_show_members_and_sessions(support_client):
    team = AccountFactory(members=3)
    member_set_enabled(member=team.team[2], enabled=False, actor=_admin(), reason="left")
    sign_in(team.team[0])
    Flag.objects.create(account=team, kind=FlagKind.MISSING_SUBSCRIPTION, reason="test")
    page = support_client.get(reverse("review_queue")).content.decode()
    assert "2 of 3 members enabled · 1 session now" in page


def test_a_members_email_finds_its_account(support_client):
    team = AccountFactory(name="Initech", members=3)
    member = team.team[2]
    response = support_client.get(reverse("account_list"), {"q": member.email})
    assert response.status_code == 302
    assert response["Location"] == reverse("account_detail", args=[team.public_id])
    other = AccountFactory(members=2)
    fragment = "example.com"  # every member's: a list of accounts, members' accounts included
    page = support_client.get(reverse("account_list"), {"q": fragment}).content.decode()
    assert team.public_id in page and other.public_id in page
    queue = support_client.get(reverse("review_queue"), {"q": member.email[:8]})
    assert queue.status_code == 200


# --- Import: rows grouped into accounts --------------------------------------------------------


def test_import_groups_rows_by_account_id(tmp_path, capsys):
    path = tmp_path / "team.csv"
    path.write_text(
        "public_id,email,name,is_active,stripe_customer_id,account_id,account_name\n"
        "u-1,ann@acme.example,Ann,true,cus_ACME,acme,ACME Corp\n"
        "u-2,bob@acme.example,Bob,true,,acme,\n"
        "u-3,cy@solo.example,Cy,true,cus_CY,,\n"
    )
    call_command("import_accounts", str(path))
    acme = Account.objects.get(public_id="acme")
    assert (acme.name, acme.email, acme.stripe_customer_id) == (
        "ACME Corp",
        "ann@acme.example",
        "cus_ACME",
    )
    assert sorted(acme.members.values_list("public_id", flat=True)) == ["u-1", "u-2"]
    solo = Account.objects.get(public_id="u-3")
    assert list(solo.members.values_list("public_id", flat=True)) == ["u-3"]
    assert "3 member(s) created" in capsys.readouterr().out
    call_command("import_accounts", str(path))  # idempotent
    assert Account.objects.count() == 2 and User.objects.filter(account__isnull=False).count() == 3


def test_import_refuses_a_group_that_disagrees_and_writes_nothing(tmp_path):
    from django.core.management import CommandError

    path = tmp_path / "bad.csv"
    path.write_text(
        "public_id,email,name,is_active,stripe_customer_id,account_id\n"
        "u-1,ann@acme.example,Ann,true,cus_A,acme\n"
        "u-2,bob@acme.example,Bob,false,,acme\n"
        "u-3,cy@acme.example,Cy,true,cus_B,acme\n"
    )
    with pytest.raises(CommandError, match="2 line"):
        call_command("import_accounts", str(path))
    assert not Account.objects.exists()


def test_flag_resolution_after_seats_is_the_usual_one(support_user):
    from reconciliation.services.queue import flag_resolve_by_staff

    team = AccountFactory(members=2)
    flag = Flag.objects.create(account=team, kind=FlagKind.SEATS_EXCEEDED, reason="3 for 2")
    flag_resolve_by_staff(flag=flag, resolution="Sales sold a seat", actor_user=support_user)
    flag.refresh_from_db()
    assert flag.status == FlagStatus.RESOLVED


def test_activity_for_an_id_that_is_a_member_and_another_account_is_refused(client):
    """Two id spaces that overlap in the product: "42" is a member of one account and the
    public id of another. The event names nobody for sure: refused, nothing stored."""
    import json

    from accounts.services.tokens import api_token_create

    team = AccountFactory(public_id="org-7", members=2)
    User.objects.filter(pk=team.team[1].pk).update(public_id="42")
    AccountFactory(public_id="42", members=0)
    _token, raw = api_token_create(name="product", created_by=None)
    event = {
        "id": "e-1",
        "account": "42",
        "occurred_at": timezone.now().isoformat(),
        "kind": "api",
    }
    response = client.post(
        reverse("activity_ingest_api"),
        data=json.dumps({"events": [event]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 400
    assert not ActivityLog.objects.exists()


def test_a_team_with_many_matching_members_does_not_hide_other_accounts(support_client):
    """The fragment search stops at member rows, not accounts: a big team whose members all
    match must not crowd out (or, left alone, redirect away from) another matching account."""
    crowd = AccountFactory(name="Crowd", email="billing@crowd.example", members=1)
    UserFactory.create_batch(30, account=crowd, email=factory_email("zed"))
    other = AccountFactory(name="Other", email="billing@other.example", members=1)
    UserFactory(account=other, email="zed.lee@other.example")
    response = support_client.get(reverse("account_list"), {"q": "zed."})
    assert response.status_code == 200  # two accounts: a list, not a redirect
    page = response.content.decode()
    assert crowd.public_id in page and other.public_id in page


def factory_email(prefix: str):
    import factory

    return factory.Sequence(lambda n: f"{prefix}.{n}@crowd.example")
