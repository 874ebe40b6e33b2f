"""The review queue page and its flag actions, through the real URLs."""

import html
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccessAudit, AccessComp, AccessStatus
from reconciliation.models import Flag, FlagKind, FlagNote, FlagStatus, ReconciliationRun
from tests.factories import AccountFactory, FlagFactory, UserFactory, WebhookEventFactory

pytestmark = pytest.mark.django_db

QUEUE = "/queue/"


def _grace_flag(days_left: int = 3, **kwargs) -> Flag:
    account = AccountFactory(
        access_status=AccessStatus.GRACE_PERIOD,
        grace_ends_at=timezone.now() + timedelta(days=days_left, hours=1),
    )
    return FlagFactory(account=account, **kwargs)


def test_the_queue_url_is_named_review_queue():
    assert reverse("review_queue") == QUEUE


@pytest.mark.smoke
def test_support_sees_open_flags_with_account_kind_why_and_grace_days(support_client):
    run = ReconciliationRun.objects.create()
    flag = _grace_flag(days_left=3, opened_by_run=run)
    event = WebhookEventFactory(type="invoice.payment_failed")
    other = FlagFactory(kind=FlagKind.PAYMENT_FAILED, opened_by_event=event)
    FlagFactory(status=FlagStatus.RESOLVED, resolution="done", resolved_at=timezone.now())

    response = support_client.get(QUEUE)

    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('class="flag-row"') == 2
    assert f'href="/accounts/{flag.account.public_id}/"' in body
    assert f"/reconciliation/runs/{run.pk}/" in body
    assert event.provider_event_id in body and other.account.email in body
    row = response.context["queue"].page.object_list
    assert {f.pk: f.grace_days_left for f in row}[flag.pk] == 4
    assert "data-grace-days>4<" in body


def test_filters_by_kind_age_assignee_and_search(support_client, support_user):
    old = FlagFactory(kind=FlagKind.MANUAL_GRANT)
    Flag.objects.filter(pk=old.pk).update(opened_at=timezone.now() - timedelta(days=10))
    mine = FlagFactory(kind=FlagKind.PAYMENT_FAILED, assignee=support_user)
    plain = FlagFactory(kind=FlagKind.PAYMENT_FAILED)

    def listed(query: str) -> set[int]:
        response = support_client.get(f"{QUEUE}?{query}")
        assert response.status_code == 200
        return {f.pk for f in response.context["queue"].page.object_list}

    assert listed("kind=payment_failed") == {mine.pk, plain.pk}
    assert listed("age=7") == {old.pk}
    assert listed("assignee=me") == {mine.pk}
    assert listed("assignee=none") == {old.pk, plain.pk}
    assert listed(f"q={plain.account.email.upper()}") == {plain.pk}
    assert listed(f"q={plain.account.stripe_customer_id}") == {plain.pk}
    assert listed(f"q={mine.account.public_id}") == {mine.pk}
    # A member of a team account finds the account's flag by their own id or email's start.
    member = UserFactory(account=old.account, email="zelda.member@example.com")
    assert listed(f"q={member.public_id}") == {old.pk}
    assert listed("q=ZELDA.mem") == {old.pk}
    assert listed("q=user-nobody-has-this") == set()
    assert listed("kind=nonsense") == {old.pk, mine.pk, plain.pk}
    # An imported id need not look generated: it was searched as an email's start (found in
    # review), and an account or member named "Customer42" was not found by it.
    imported = FlagFactory(account=AccountFactory(public_id="Customer42"))
    assert listed("q=Customer42") == {imported.pk}
    member_of_imported = UserFactory(account=mine.account, public_id="Staffer-7")
    assert listed(f"q={member_of_imported.public_id}") == {mine.pk}


def test_sorting_and_pagination(support_client):
    flags = [_grace_flag(days_left=d) for d in (5, 1, 9)]
    response = support_client.get(f"{QUEUE}?sort=grace")
    assert [f.pk for f in response.context["queue"].page.object_list] == [
        flags[1].pk,
        flags[0].pk,
        flags[2].pk,
    ]
    response = support_client.get(f"{QUEUE}?sort=-grace")
    assert response.context["queue"].page.object_list[0].pk == flags[2].pk
    FlagFactory.create_batch(30)
    response = support_client.get(f"{QUEUE}?per_page=25&page=2")
    page = response.context["queue"].page
    assert (page.number, len(page.object_list), page.paginator.count) == (2, 8, 33)
    assert 'rel="prev"' in response.content.decode()


@pytest.mark.parametrize("per_page", [25, 200])
def test_the_queue_runs_a_fixed_number_of_queries(
    support_client, per_page, django_assert_max_num_queries
):
    run = ReconciliationRun.objects.create()
    event = WebhookEventFactory()
    for index in range(60):
        FlagFactory(
            account=AccountFactory(
                access_status=AccessStatus.GRACE_PERIOD,
                grace_ends_at=timezone.now() + timedelta(days=2),
            ),
            opened_by_run=run if index % 2 else None,
            opened_by_event=None if index % 2 else event,
        )
    support_client.get(QUEUE)  # warm the session and permission caches like a real visit
    # On the embedded default (database sessions) too: the staff member's role and two-factor
    # state are read once each (13 when every reader asked the database again).
    with django_assert_max_num_queries(10):
        response = support_client.get(f"{QUEUE}?per_page={per_page}")
    assert response.status_code == 200
    assert len(response.context["queue"].page.object_list) == min(per_page, 60)


def test_htmx_filtering_answers_with_the_results_partial(support_client):
    FlagFactory()
    response = support_client.get(
        f"{QUEUE}?kind=manual_grant",
        headers={"HX-Request": "true", "HX-Target": "queue-results"},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section class="card" id="queue-results">')
    assert "<html" not in body


def test_anonymous_is_sent_to_login_and_customers_are_refused(customer_client):
    assert Client().get(QUEUE).status_code == 302
    assert customer_client.get(QUEUE).status_code == 403


def test_rows_open_their_actions_on_demand(support_client):
    flag = _grace_flag()
    listing = support_client.get(QUEUE).content.decode()
    assert f'href="/queue/flags/{flag.pk}/?back=/queue/"' in listing
    assert "Assign to me" not in listing  # no forms until a row is opened
    opened = support_client.get(f"/queue/flags/{flag.pk}/", headers={"HX-Request": "true"})
    body = opened.content.decode()
    assert body.lstrip().startswith(f'<tbody id="flag-{flag.pk}"')
    assert "Assign to me" in body and "Extend grace" in body and "Record comp" in body


def test_finance_reads_the_queue_but_sees_no_actions_and_cannot_post(finance_client):
    flag = _grace_flag()
    body = finance_client.get(QUEUE).content.decode()
    assert flag.account.email in body
    body += finance_client.get(
        f"/queue/flags/{flag.pk}/", headers={"HX-Request": "true"}
    ).content.decode()
    assert "Assign to me" not in body
    assert "Extend grace" not in body
    assert "Record comp" not in body
    assert finance_client.post(f"/queue/flags/{flag.pk}/assign/").status_code == 403
    assert finance_client.post(f"/queue/flags/{flag.pk}/comp/").status_code == 403
    flag.refresh_from_db()
    assert flag.assignee is None


def _hx_post(client, url: str, data: dict | None = None):
    return client.post(url, data or {}, headers={"HX-Request": "true"})


@pytest.mark.smoke
def test_assign_to_me_and_add_a_note_answer_with_the_updated_row(support_client, support_user):
    flag = _grace_flag()

    response = _hx_post(support_client, f"/queue/flags/{flag.pk}/assign/")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith(f'<tbody id="flag-{flag.pk}"')
    assert support_user.email in body
    flag.refresh_from_db()
    assert flag.assignee == support_user

    response = _hx_post(
        support_client, f"/queue/flags/{flag.pk}/note/", {"body": "Called the customer."}
    )
    assert response.status_code == 200
    assert "Called the customer." in response.content.decode()
    assert list(
        FlagNote.objects.filter(flag=flag).values_list("action", flat=True).order_by("pk")
    ) == [
        "assign",
        "note",
    ]
    assert (
        _hx_post(support_client, f"/queue/flags/{flag.pk}/note/", {"body": " "}).status_code == 422
    )


def test_extend_grace_is_bounded_needs_a_reason_and_is_audited(support_client, support_user):
    flag = _grace_flag(days_left=2)
    before = flag.account.grace_ends_at

    too_long = _hx_post(
        support_client, f"/queue/flags/{flag.pk}/extend/", {"days": "31", "reason": "x"}
    )
    assert too_long.status_code == 422
    no_reason = _hx_post(support_client, f"/queue/flags/{flag.pk}/extend/", {"days": "5"})
    assert no_reason.status_code == 422

    response = _hx_post(
        support_client,
        f"/queue/flags/{flag.pk}/extend/",
        {"days": "5", "reason": "Bank transfer on its way"},
    )

    assert response.status_code == 200
    flag.account.refresh_from_db()
    assert flag.account.grace_ends_at == before + timedelta(days=5)
    audit = AccessAudit.objects.get(account=flag.account)
    assert audit.actor_user == support_user
    assert "Bank transfer on its way" in audit.reason
    assert FlagNote.objects.get(flag=flag).action == "extend_grace"
    assert "data-grace-days>8<" in response.content.decode()  # 7 days and an hour


def test_record_comp_stores_the_grant_with_reason_and_expiry(support_client, support_user):
    flag = FlagFactory(kind=FlagKind.MANUAL_GRANT)
    expires = (timezone.now() + timedelta(days=60)).date().isoformat()

    response = _hx_post(
        support_client,
        f"/queue/flags/{flag.pk}/comp/",
        {"reason": "Conference speaker", "expires_on": expires},
    )

    assert response.status_code == 200
    comp = AccessComp.objects.get(account=flag.account)
    assert (comp.reason, comp.granted_by, comp.expires_at.date().isoformat()) == (
        "Conference speaker",
        support_user,
        expires,
    )
    assert FlagNote.objects.get(flag=flag).action == "comp"
    bad = _hx_post(
        support_client, f"/queue/flags/{flag.pk}/comp/", {"reason": "x", "expires_on": "soon"}
    )
    assert bad.status_code == 422


def test_resolve_with_restore_ends_the_grace_period(support_client, support_user):
    flag = _grace_flag()

    response = _hx_post(
        support_client,
        f"/queue/flags/{flag.pk}/resolve/",
        {"resolution": "Paid by invoice", "restore_access": "on"},
    )

    assert response.status_code == 200
    flag.refresh_from_db()
    assert (flag.status, flag.resolution) == (FlagStatus.RESOLVED, "Paid by invoice")
    flag.account.refresh_from_db()
    assert flag.account.access_status == AccessStatus.ACTIVE
    audit = AccessAudit.objects.get(account=flag.account)
    assert (audit.from_status, audit.to_status, audit.source) == (
        AccessStatus.GRACE_PERIOD,
        AccessStatus.ACTIVE,
        f"flag:{flag.pk}",
    )
    assert "Resolved" in response.content.decode()
    # Acting on a resolved flag is refused with a message, not an error page.
    again = _hx_post(support_client, f"/queue/flags/{flag.pk}/assign/")
    assert again.status_code == 422
    assert "already resolved" in again.content.decode()


def test_resolve_without_restore_keeps_the_grace_period(support_client):
    flag = _grace_flag()
    _hx_post(support_client, f"/queue/flags/{flag.pk}/resolve/", {"resolution": "Known"})
    flag.account.refresh_from_db()
    assert flag.account.access_status == AccessStatus.GRACE_PERIOD
    assert not AccessAudit.objects.exists()


def test_without_javascript_a_posted_form_redirects_back_to_the_queue(support_client):
    flag = _grace_flag()
    response = support_client.post(f"/queue/flags/{flag.pk}/note/", {"body": "plain form"})
    assert response.status_code == 302
    assert response["Location"] == QUEUE
    assert FlagNote.objects.filter(flag=flag, body="plain form").exists()


def test_without_javascript_the_queue_page_and_its_filters_are_kept(support_client):
    """Opened from a filtered queue page and acted on without JavaScript: a saved action goes
    back to that page, a refused one back to the flag's page to be corrected; both lost the
    filters and the page before (found in review). Only a queue URL of ours is followed."""
    flag = _grace_flag()
    FlagFactory.create_batch(2)
    where = f"{QUEUE}?kind={flag.kind}&sort=grace&per_page=25&page=1"
    queue = support_client.get(where).content.decode()
    act = f"/queue/flags/{flag.pk}/?back=" + quote(where, safe="/")
    assert f'href="{html.escape(act)}"' in queue
    page = support_client.get(act).content.decode()
    assert f'name="back" value="{html.escape(where)}"' in page
    assert f'href="{html.escape(where)}">← Back to the review queue' in page
    # The page links carry one page number each.
    assert "page=1&amp;page=" not in queue

    saved = support_client.post(f"/queue/flags/{flag.pk}/note/", {"body": "ok", "back": where})
    assert (saved.status_code, saved["Location"]) == (302, where)
    refused = support_client.post(
        f"/queue/flags/{flag.pk}/extend/", {"days": "abc", "reason": "x", "back": where}
    )
    assert refused.status_code == 302
    assert refused["Location"] == f"/queue/flags/{flag.pk}/?back=" + quote(where)
    for elsewhere in ("https://evil.example/queue/", "//evil.example/", "/admin/"):
        response = support_client.post(
            f"/queue/flags/{flag.pk}/note/", {"body": "ok", "back": elsewhere}
        )
        assert response["Location"] == QUEUE, elsewhere


def test_the_flag_page_shows_its_notes(support_client, support_user):
    flag = _grace_flag()
    FlagNote.objects.create(flag=flag, author=support_user, body="first look")
    response = support_client.get(f"/queue/flags/{flag.pk}/")
    assert response.status_code == 200
    assert "first look" in response.content.decode()
    assert support_client.get("/queue/flags/999999/").status_code == 404
