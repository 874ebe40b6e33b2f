"""The Accounts page and the top bar's search: every way staff look a customer up."""

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccessStatus
from janitor.selectors.search import account_search, fragment_queryset
from tests.factories import AccountFactory, DisputeFactory, SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(db):
    return {
        "ada": AccountFactory(email="ada.lovelace@analytical.example", name="Ada Lovelace"),
        "grace": AccountFactory(
            email="grace.hopper@navy.example",
            name="Grace Hopper",
            access_status=AccessStatus.GRACE_PERIOD,
            grace_ends_at=timezone.now() - timedelta(hours=3),
        ),
        "alan": AccountFactory(email="alan@bletchley.example", name="Alan Turing"),
    }


def _emails(result):
    return [account.email for account in result.accounts]


def test_any_part_of_an_email_or_name_finds_the_account_case_insensitively(people):
    assert _emails(account_search(query="LOVEL")) == ["ada.lovelace@analytical.example"]
    assert _emails(account_search(query="hopper@nav")) == ["grace.hopper@navy.example"]
    assert _emails(account_search(query="turing")) == ["alan@bletchley.example"]
    assert _emails(account_search(query=".example")) == sorted(p.email for p in people.values())
    assert account_search(query="nobody-like-this").accounts == []


def test_under_three_characters_is_refused_unless_it_is_an_exact_id(people):
    result = account_search(query="ad")
    assert result.too_short and result.accounts == []


def test_exact_ids_find_the_account(people):
    ada = people["ada"]
    sub = SubscriptionFactory(account=ada)
    dispute = DisputeFactory(account=people["alan"])
    assert account_search(query=ada.public_id).single == ada
    assert account_search(query=ada.stripe_customer_id).single == ada
    assert account_search(query=sub.provider_id).single == ada
    assert account_search(query=dispute.charge_id).single == people["alan"]
    assert account_search(query=dispute.provider_id).single == people["alan"]
    # An id that names nothing is not a fragment of anything either.
    assert account_search(query="dp_doesnotexist").accounts == []


def test_a_customer_id_known_only_to_the_mirror_finds_the_linked_account(people):
    grace = people["grace"]
    SubscriptionFactory(account=grace, customer_id="cus_mirroronly")
    assert account_search(query="cus_mirroronly").single == grace


def test_staff_are_never_search_results(people, support_user):
    assert account_search(query="janitor.test").accounts == []


def test_one_match_jumps_to_the_account(support_client, people):
    response = support_client.get(reverse("account_list"), {"q": "lovelace"})
    assert response.status_code == 302
    assert response["Location"] == reverse("account_detail", args=[people["ada"].public_id])


def test_several_matches_list_them(support_client, people):
    response = support_client.get(reverse("account_list"), {"q": "example"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "3 matches" in body
    for person in people.values():
        assert person.email in body


def test_a_short_query_says_what_to_type(support_client, people):
    response = support_client.get(reverse("account_list"), {"q": "ad"})
    assert response.status_code == 200
    assert "Type at least 3 characters" in response.content.decode()


def test_the_accounts_page_lists_filters_and_sorts(
    support_client, people, django_assert_max_num_queries
):
    url = reverse("account_list")
    with django_assert_max_num_queries(8):
        response = support_client.get(url)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.index("ada.lovelace") < body.index("alan@") < body.index("grace.hopper")
    # Overdue grace reads as overdue, with how long.
    assert "Overdue by 3 hours" in body

    response = support_client.get(url, {"sort": "-email"})
    body = response.content.decode()
    assert body.index("grace.hopper") < body.index("alan@") < body.index("ada.lovelace")

    response = support_client.get(url, {"status": "grace_period"})
    body = response.content.decode()
    assert "grace.hopper" in body and "ada.lovelace" not in body
    assert "1 account" in body


def test_the_accounts_page_paginates(support_client, db):
    UserFactory.create_batch(55)
    body = support_client.get(reverse("account_list")).content.decode()
    assert "Page 1 of 2" in body
    assert body.count('class="account-row"') == 50
    body = support_client.get(reverse("account_list"), {"page": 2}).content.decode()
    assert body.count('class="account-row"') == 5


def test_every_dashboard_page_has_the_search_box(support_client, people):
    for url in (reverse("overview"), reverse("review_queue"), reverse("revocation_list")):
        body = support_client.get(url).content.decode()
        assert 'role="search"' in body and f'action="{reverse("account_list")}"' in body, url


@pytest.mark.postgres
def test_postgres_answers_fragments_from_the_trigram_index(people):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'accounts_account' "
            "AND indexname IN ('account_email_trgm_idx', 'account_name_trgm_idx')"
        )
        assert sorted(row[0] for row in cursor.fetchall()) == [
            "account_email_trgm_idx",
            "account_name_trgm_idx",
        ]
        cursor.execute("SET enable_seqscan = off")
        try:
            # The very query the search runs, as PostgreSQL plans it.
            plan = fragment_queryset("lovel").explain()
        finally:
            cursor.execute("SET enable_seqscan = on")
    assert "account_email_trgm_idx" in plan and "account_name_trgm_idx" in plan, plan


@pytest.mark.postgres
def test_a_scan_over_its_budget_falls_back_to_the_index(people, monkeypatch):
    """A rare fragment would scan the whole table: cancelled at the budget, the index answers
    (here a deliberately slow condition stands in for a million rows)."""
    from django.db.models.expressions import RawSQL

    from janitor.selectors import search

    monkeypatch.setattr(search, "FRAGMENT_SCAN_BUDGET_MS", 20)
    slow = search.fragment_queryset("lovel").filter(
        pk__in=RawSQL("SELECT id FROM accounts_account, pg_sleep(0.2)", [])
    )
    seen: list[str] = []

    def record(execute, sql, params, many, context):
        if "set_config('enable_bitmapscan', 'off'" in sql:
            seen.append("scan")
        elif "set_config('enable_seqscan', 'off'" in sql:
            seen.append("index")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        found = search._fragment_matches(slow)
    assert [account.email for account in found] == ["ada.lovelace@analytical.example"]
    assert seen == ["scan", "index"]


@pytest.mark.postgres
@pytest.mark.parametrize("budget_ms", [30_000, 20], ids=["scan", "index after a cancel"])
def test_the_search_leaves_the_callers_transaction_as_it_found_it(people, monkeypatch, budget_ms):
    """A SET LOCAL lasts until the transaction ends: a search inside one (this test is) must
    not leave the rest of it with the scan's 30 ms timeout and index scans off (its teardown's
    foreign-key checks timed out so on a busy machine)."""
    from django.db.models.expressions import RawSQL

    from janitor.selectors import search

    monkeypatch.setattr(search, "FRAGMENT_SCAN_BUDGET_MS", budget_ms)
    names = ("statement_timeout", "enable_bitmapscan", "enable_indexscan", "enable_seqscan")

    def settings_now():
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join(f"current_setting('{n}')" for n in names))
            return cursor.fetchone()

    before = settings_now()
    slow = search.fragment_queryset("lovel").filter(
        pk__in=RawSQL("SELECT id FROM accounts_account, pg_sleep(0.1)", [])
    )
    found = search._fragment_matches(slow)
    assert [account.email for account in found] == ["ada.lovelace@analytical.example"]
    assert settings_now() == before
