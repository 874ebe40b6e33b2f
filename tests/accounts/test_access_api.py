"""The access API: GET /api/v1/access/<public_id> (ETag, 304) and the changes feed."""

import base64
import threading
from datetime import UTC, timedelta
from io import StringIO
from urllib.parse import quote

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import AccessChange, AccessFeedHorizon, AccessStatus, Account, ApiScope
from accounts.selectors.access_api import (
    FeedCursorExpired,
    FeedPosition,
    access_changes_page,
    access_feed_horizon,
)
from accounts.services.access_changes import access_changed, access_changes_purge
from accounts.services.access_status import access_status_change
from accounts.services.members import member_set_enabled
from accounts.services.tokens import api_token_create
from tests.factories import AccountFactory, StaffFactory, UserFactory


@pytest.fixture
def raw(admin_user):
    return api_token_create(name="Product", created_by=admin_user, scopes=[ApiScope.ACCESS_READ])[1]


def _get(client, url, raw, **headers):
    return client.get(url, HTTP_AUTHORIZATION=f"Bearer {raw}", **headers)


def _grace(account, days=5):
    access_status_change(
        account=account,
        to_status=AccessStatus.GRACE_PERIOD,
        actor="system:test",
        reason="payment failed",
        grace_ends_at=timezone.now() + timedelta(days=days),
    )


# --- Authentication -------------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.django_db
def test_no_token_unknown_token_and_wrong_scope(client, admin_user):
    account = AccountFactory()
    url = f"/api/v1/access/{account.public_id}"
    missing = client.get(url)
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert _get(client, url, "jan_nope").status_code == 401
    _, activity_only = api_token_create(name="Reporter", created_by=admin_user)
    refused = _get(client, url, activity_only)
    assert refused.status_code == 403 and "access:read" in refused.json()["error"]
    refused_feed = _get(client, "/api/v1/access", activity_only)
    assert refused_feed.status_code == 403
    assert client.get("/api/v1/access").status_code == 401


@pytest.mark.django_db
def test_only_get(client, raw):
    account = AccountFactory()
    response = client.post(
        f"/api/v1/access/{account.public_id}", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert response.status_code == 405


# --- One account or member ------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.django_db
def test_account_answer(client, raw, django_assert_num_queries):
    account = AccountFactory(members=0, public_id="acct-1")
    _grace(account)
    account.refresh_from_db()
    _get(client, "/api/v1/access/nobody", raw)  # the token is cached from here on
    with django_assert_num_queries(1):
        response = _get(client, "/api/v1/access/acct-1", raw)
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": "acct-1",
        "kind": "account",
        "account": "acct-1",
        "status": "grace_period",
        "is_active": True,
        "grants_access": True,
        "grace_ends_at": account.grace_ends_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "version": 1,
        "changed_at": account.access_changed_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "can_log_in": True,
    }
    assert response["ETag"] and response["Cache-Control"] == "private, no-cache"


@pytest.mark.smoke
@pytest.mark.django_db
def test_member_answer_and_a_shared_id_answers_for_the_member(client, raw, admin_user):
    account = AccountFactory(members=2)
    first, second = account.team
    member_set_enabled(member=second, enabled=False, actor=admin_user, reason="left the team")
    other = _get(client, f"/api/v1/access/{second.public_id}", raw).json()
    assert other["kind"] == "member" and other["id"] == second.public_id
    assert other["account"] == account.public_id and other["version"] == 1
    assert other["member_is_active"] is False and other["grants_access"] is True
    assert other["can_log_in"] is False
    # The first member has the account's own id: the member (who can say more) answers.
    shared = _get(client, f"/api/v1/access/{account.public_id}", raw).json()
    assert shared["kind"] == "member" and shared["member_is_active"] is True
    assert shared["can_log_in"] is True


@pytest.mark.django_db
def test_an_id_that_is_one_accounts_member_and_another_account_is_ambiguous(client, raw):
    """A product whose user ids and team ids are both small numbers: member 42 of team 7, and
    team 42 (revoked). Neither answer may be assumed; kind= says which is meant."""
    team7 = AccountFactory(public_id="team7", members=0)
    UserFactory(public_id="42", account=team7, email="m42@example.com")
    AccountFactory(public_id="42", members=0, access_status=AccessStatus.REVOKED)

    ambiguous = _get(client, "/api/v1/access/42", raw)
    assert ambiguous.status_code == 409
    assert "kind=member or kind=account" in ambiguous.json()["error"]
    member = _get(client, "/api/v1/access/42?kind=member", raw).json()
    assert (member["kind"], member["account"], member["can_log_in"]) == ("member", "team7", True)
    account = _get(client, "/api/v1/access/42?kind=account", raw).json()
    assert (account["kind"], account["status"], account["can_log_in"]) == (
        "account",
        "revoked",
        False,
    )
    assert _get(client, "/api/v1/access/team7?kind=member", raw).status_code == 404
    assert _get(client, "/api/v1/access/42?kind=team", raw).status_code == 400
    # Someone who pays for themselves (their account's id is their own): no ambiguity.
    solo = AccountFactory(members=1)
    assert _get(client, f"/api/v1/access/{solo.public_id}", raw).json()["kind"] == "member"


@pytest.mark.django_db
def test_revoked_account_members_cannot_log_in(client, raw):
    account = AccountFactory(members=1, access_status=AccessStatus.REVOKED)
    body = _get(client, f"/api/v1/access/{account.team[0].public_id}", raw).json()
    assert body["status"] == "revoked" and body["is_active"] is False
    assert body["grants_access"] is False and body["can_log_in"] is False
    assert body["member_is_active"] is True and body["version"] == 0
    assert body["changed_at"] is None and body["grace_ends_at"] is None


@pytest.mark.smoke
@pytest.mark.django_db
def test_unknown_id_is_404(client, raw):
    for public_id in ("no-such-id", "x" * 65, "a.b"):
        response = _get(client, f"/api/v1/access/{public_id}", raw)
        assert response.status_code == 404
        assert response.json() == {"error": "No account or member has that id."}


@pytest.mark.django_db
def test_staff_are_not_members(client, raw):
    staff = StaffFactory()
    assert _get(client, f"/api/v1/access/{staff.public_id}", raw).status_code == 404


# --- ETag and 304 ---------------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.django_db
def test_if_none_match_gives_304_until_the_access_changes(client, raw):
    account = AccountFactory(members=0)
    url = f"/api/v1/access/{account.public_id}"
    first = _get(client, url, raw)
    etag = first["ETag"]
    not_modified = _get(client, url, raw, HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified["ETag"] == etag
    assert not_modified["Cache-Control"] == "private, no-cache"
    # A list, a weak form and "*" all match (RFC 9110 weak comparison).
    assert _get(client, url, raw, HTTP_IF_NONE_MATCH=f'"other", {etag}').status_code == 304
    assert _get(client, url, raw, HTTP_IF_NONE_MATCH=f"W/{etag}").status_code == 304
    assert _get(client, url, raw, HTTP_IF_NONE_MATCH="*").status_code == 304
    assert _get(client, url, raw, HTTP_IF_NONE_MATCH='"stale"').status_code == 200
    assert _get(client, url, raw, HTTP_IF_NONE_MATCH="junk, ,").status_code == 200

    _grace(account)
    changed = _get(client, url, raw, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert changed.json()["version"] == 1 and changed.json()["status"] == "grace_period"
    assert _get(client, url, raw, HTTP_IF_NONE_MATCH=changed["ETag"]).status_code == 304


@pytest.mark.django_db
def test_member_etag_moves_with_the_member_and_with_the_account(client, raw, admin_user):
    account = AccountFactory(members=2)
    member = account.team[1]
    url = f"/api/v1/access/{member.public_id}"
    etag = _get(client, url, raw)["ETag"]
    member_set_enabled(member=member, enabled=False, actor=admin_user, reason="left")
    disabled = _get(client, url, raw, HTTP_IF_NONE_MATCH=etag)
    assert disabled.status_code == 200 and disabled["ETag"] != etag
    _grace(account)
    in_grace = _get(client, url, raw, HTTP_IF_NONE_MATCH=disabled["ETag"])
    assert in_grace.status_code == 200 and in_grace.json()["status"] == "grace_period"
    # The account's own tag differs from its member's (a product may cache both).
    assert _get(client, f"/api/v1/access/{account.public_id}", raw)["ETag"] != in_grace["ETag"]


# --- The changes feed -----------------------------------------------------------------------
# On PostgreSQL the feed serves only transactions older than every one still open, and a test
# wrapped in a transaction is one: the feed's API tests commit (transaction=True).


def _feed(client, raw, **params):
    return client.get("/api/v1/access", params, HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.mark.smoke
@pytest.mark.django_db(transaction=True)
def test_feed_pages_in_order_each_change_with_its_own_state(client, raw):
    accounts = [AccountFactory(members=0) for _ in range(3)]
    for account in accounts:
        _grace(account)
    access_status_change(
        account=accounts[0], to_status=AccessStatus.ACTIVE, actor="system:test", reason="paid"
    )
    first = _feed(client, raw, limit=2)
    assert first.status_code == 200
    body = first.json()
    assert [c["account"] for c in body["changes"]] == [a.public_id for a in accounts[:2]]
    assert body["has_more"] is True
    assert body["changes"][0]["event"] == "access.grace_started"
    assert body["changes"][0]["version"] == 1
    # Each change carries the account as it was at that version (accounts[0] is active again
    # since, at version 2): a version is never paired with a later state, which a product
    # would keep and then let an older, delayed event overwrite.
    assert body["changes"][0]["status"] == "grace_period"
    assert body["changes"][0]["grace_ends_at"].endswith("Z")
    assert body["changes"][1]["status"] == "grace_period"
    second = _feed(client, raw, changed_since=body["next_cursor"], limit=2).json()
    assert [(c["account"], c["version"]) for c in second["changes"]] == [
        (accounts[2].public_id, 1),
        (accounts[0].public_id, 2),
    ]
    assert second["changes"][1]["event"] == "access.grace_ended"
    assert second["changes"][1]["status"] == "active" and second["changes"][1]["grants_access"]
    assert second["changes"][1]["grace_ends_at"] is None
    # Caught up: an empty page keeps the cursor.
    third = _feed(client, raw, changed_since=second["next_cursor"]).json()
    assert third == {"changes": [], "next_cursor": second["next_cursor"], "has_more": False}
    assert second["has_more"] is False


@pytest.mark.django_db(transaction=True)
def test_feed_empty_from_the_beginning(client, raw):
    body = _feed(client, raw).json()
    assert body["changes"] == [] and body["has_more"] is False
    assert FeedPosition.decode(body["next_cursor"]) == FeedPosition(0, 0)


@pytest.mark.django_db(transaction=True)
def test_feed_default_and_maximum_limit(client, raw):
    account = AccountFactory(members=0)
    locked = Account.objects.get(pk=account.pk)
    with transaction.atomic():
        for _ in range(105):
            access_changed(account=locked, event_type="access.grace_extended")
    page = _feed(client, raw).json()
    assert len(page["changes"]) == 100 and page["has_more"] is True
    versions = [c["version"] for c in page["changes"]]
    assert versions == list(range(1, 101))
    rest = _feed(client, raw, changed_since=page["next_cursor"], limit=1000).json()
    assert [c["version"] for c in rest["changes"]] == list(range(101, 106))


@pytest.mark.smoke
@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, field",
    [
        ({"changed_since": "not-a-cursor!"}, "changed_since"),
        ({"changed_since": base64.urlsafe_b64encode(b"12").decode()}, "changed_since"),
        ({"changed_since": base64.urlsafe_b64encode(b"-1.5").decode()}, "changed_since"),
        (
            {"changed_since": base64.urlsafe_b64encode(b"1.99999999999999999999").decode()},
            "changed_since",
        ),
        ({"changed_since": "A" * 200}, "changed_since"),
        ({"changed_since": "\u00e9t\u00e9"}, "changed_since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ],
)
def test_feed_refuses_junk_with_a_clear_message(client, raw, params, field):
    response = _feed(client, raw, **params)
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"] and body["error"].startswith("Fix the query parameters")


@pytest.mark.smoke
def test_cursor_round_trip():
    for position in (FeedPosition(0, 0), FeedPosition(2**40, 17), FeedPosition(5, 2**62)):
        assert FeedPosition.decode(position.encode()) == position


@pytest.mark.postgres
@pytest.mark.django_db
def test_feed_orders_by_transaction_then_id(raw):
    account = AccountFactory(members=0)
    # Rows as two transactions left them: the later-started one (txid 20) wrote first.
    AccessChange.objects.create(account=account, version=1, txid=20, event_type="b")
    AccessChange.objects.create(account=account, version=2, txid=10, event_type="a")
    AccessChange.objects.create(account=account, version=3, txid=10, event_type="c")
    page = access_changes_page(after=FeedPosition(), limit=10)
    assert [c["event"] for c in page.changes] == ["a", "c", "b"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_change_whose_transaction_commits_late_is_still_served(client, raw):
    """T1 starts writing first (lower txid), T2 writes and commits before T1 does. The feed must
    not serve T2's change while T1 is open (a reader would move past it and never see T1's),
    and serves both, T1's first, once T1 commits."""
    slow, fast = AccountFactory(members=0), AccountFactory(members=0)
    t1_has_txid, t2_done, t1_may_commit, t1_done = (threading.Event() for _ in range(4))
    errors = []

    def t1():
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_current_xact_id()")  # T1 has its txid now
                t1_has_txid.set()
                assert t1_may_commit.wait(10)
                locked = Account.objects.select_for_update().get(pk=slow.pk)
                access_changed(account=locked, event_type="access.grace_started")
        except Exception as exc:  # reported by the test below
            errors.append(exc)
        finally:
            connection.close()
            t1_done.set()

    def t2():
        try:
            assert t1_has_txid.wait(10)
            with transaction.atomic():
                locked = Account.objects.select_for_update().get(pk=fast.pk)
                access_changed(account=locked, event_type="access.revoked")
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()
            t2_done.set()

    threads = [threading.Thread(target=t1), threading.Thread(target=t2)]
    for thread in threads:
        thread.start()
    assert t2_done.wait(10)
    served = []
    while_open = _feed(client, raw).json()
    served += while_open["changes"]
    assert AccessChange.objects.filter(account=fast).exists()  # committed and visible...
    assert served == []  # ...but held back behind T1, which is still open
    t1_may_commit.set()
    assert t1_done.wait(10)
    for thread in threads:
        thread.join(10)
    assert not errors, errors
    after = _feed(client, raw, changed_since=while_open["next_cursor"]).json()
    served += after["changes"]
    assert [(c["account"], c["event"]) for c in served] == [
        (slow.public_id, "access.grace_started"),
        (fast.public_id, "access.revoked"),
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_transaction_in_another_database_does_not_hold_the_feed(client, raw):
    """Transaction ids are cluster-wide: an open writing transaction of another database on
    the same server (another application, another test run) must not stall this feed."""
    import psycopg

    db = connection.settings_dict
    account = AccountFactory(members=0)
    _grace(account)
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres"
    ) as other:
        other.execute("SELECT pg_current_xact_id()")  # holds an xid until the block ends
        assert other.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        served = _feed(client, raw).json()["changes"]
    assert [c["account"] for c in served] == [account.public_id]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_horizon_is_read_afresh_within_one_transaction(raw):
    """A reader paging twice inside one transaction must see a writer that began in between
    (pg_stat_activity is otherwise kept for the whole transaction)."""
    import psycopg

    from accounts.selectors.access_api import _feed_horizon

    db = connection.settings_dict
    with transaction.atomic():
        first = _feed_horizon()
        with psycopg.connect(
            host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]
        ) as writer:
            xid = int(writer.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0])
            assert xid >= first
            # A later transaction completes, so the snapshot's xmax moves past the writer's.
            with psycopg.connect(
                host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]
            ) as later:
                later.execute("SELECT pg_current_xact_id()")
            # The writer's xid is running: the horizon may not pass it.
            assert _feed_horizon() <= xid


# --- Retention: the purge's horizon ----------------------------------------------------------

DAY = timedelta(days=1)


def _age(changes, days=31):
    AccessChange.objects.filter(pk__in=[c.pk for c in changes]).update(
        at=timezone.now() - days * DAY
    )


def _purge():
    return access_changes_purge(older_than=timezone.now() - 30 * DAY, batch_size=1)


@pytest.mark.smoke
@pytest.mark.django_db(transaction=True)
def test_a_cursor_into_purged_changes_is_gone_and_one_after_them_keeps_working(client, raw):
    accounts = [AccountFactory(members=0) for _ in range(3)]
    for account in accounts:
        _grace(account)
    changes = list(AccessChange.objects.order_by("txid", "id"))
    start = _feed(client, raw, limit=1).json()["next_cursor"]  # after the first change
    at_second = _feed(client, raw, changed_since=start, limit=1).json()["next_cursor"]
    _age(changes[:2])

    assert _purge() == 2  # one a batch
    assert list(AccessChange.objects.order_by("txid", "id")) == changes[2:]
    assert access_feed_horizon() == FeedPosition(changes[1].txid, changes[1].id)

    # Before the horizon: the second change is gone, so the next page would skip it.
    for cursor in (start, FeedPosition(0, 0).encode()):
        gone = _feed(client, raw, changed_since=cursor)
        assert gone.status_code == 410
        body = gone.json()
        assert body["code"] == "cursor_expired"
        assert (
            "GET /api/v1/access/<id>" in body["error"] and "without changed_since" in body["error"]
        )
        assert gone["Cache-Control"] == "private, no-store"
    # At the horizon: it was handed out with the last purged change, nothing after is gone.
    kept = _feed(client, raw, changed_since=at_second).json()
    assert [c["account"] for c in kept["changes"]] == [accounts[2].public_id]
    after = _feed(client, raw, changed_since=kept["next_cursor"])
    assert after.status_code == 200 and after.json()["changes"] == []
    # No cursor: from the oldest change kept, as before any purge.
    fresh = _feed(client, raw).json()
    assert [c["account"] for c in fresh["changes"]] == [accounts[2].public_id]
    assert fresh["next_cursor"] == kept["next_cursor"]

    assert _purge() == 0  # idempotent
    assert access_feed_horizon() == FeedPosition(changes[1].txid, changes[1].id)
    assert AccessChange.objects.count() == 1


@pytest.mark.smoke
@pytest.mark.django_db
def test_the_horizon_orders_by_id_when_txid_is_zero(raw):
    """SQLite writes txid 0 on every change: the horizon is then the highest id purged."""
    account = AccountFactory(members=0)
    rows = [
        AccessChange.objects.create(
            account=account, version=v, txid=0, event_type="e", status="active", is_active=True
        )
        for v in (1, 2, 3)
    ]
    _age(rows[:2])
    assert _purge() == 2
    assert AccessFeedHorizon.objects.get().change_id == rows[1].id
    with pytest.raises(FeedCursorExpired):
        access_changes_page(after=FeedPosition(0, rows[0].id))
    page = access_changes_page(after=FeedPosition(0, rows[1].id))
    assert [c["version"] for c in page.changes] == [3]
    assert [c["version"] for c in access_changes_page(after=None).changes] == [3]


@pytest.mark.django_db(transaction=True)
def test_an_emptied_feed_read_without_a_cursor_hands_out_the_horizon_not_a_refused_cursor(
    client, raw
):
    """Everything purged and nothing new: a product starting without a cursor must get one it
    can come back with (a (0, 0) cursor would be refused: a resync on every poll)."""
    account = AccountFactory(members=0)
    _grace(account)
    _age(list(AccessChange.objects.all()))
    assert _purge() == 1
    empty = _feed(client, raw).json()
    assert empty["changes"] == []
    assert FeedPosition.decode(empty["next_cursor"]) == access_feed_horizon()
    again = _feed(client, raw, changed_since=empty["next_cursor"])
    assert again.status_code == 200 and again.json()["changes"] == []
    _grace(account, days=9)  # a new change after the purge is served from that cursor
    served = _feed(client, raw, changed_since=empty["next_cursor"]).json()["changes"]
    assert [c["event"] for c in served] == ["access.grace_extended"]


@pytest.mark.django_db(transaction=True)
def test_the_purge_deletes_whole_prefixes_of_the_feed_order(client, raw):
    """A change ordered before an aged one goes with it, even if it is recent: nothing is kept
    below the horizon, so a feed read from it never skips a kept change."""
    account = AccountFactory(members=0)
    rows = [
        AccessChange.objects.create(account=account, version=v, txid=0, event_type="e")
        for v in (1, 2, 3)
    ]
    _age([rows[1]])  # the second is old; the first is recent but ordered before it
    assert _purge() == 2
    assert list(AccessChange.objects.all()) == [rows[2]]
    assert access_feed_horizon() == FeedPosition(0, rows[1].id)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_purge_leaves_what_a_running_transaction_could_still_land_below(raw):
    """A transaction still running holds an xid below the changes written after it began:
    it could commit a change there later, so nothing from its xid on is purged yet."""
    import psycopg

    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]
    ) as other:
        other.execute("SELECT pg_current_xact_id()")  # holds an xid until the block ends
        account = AccountFactory(members=0)
        _grace(account)  # its change's txid is above the running one's
        _age(list(AccessChange.objects.all()))
        assert _purge() == 0
        assert access_feed_horizon() is None
    assert _purge() == 1  # the transaction ended: the change can go


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_horizon_never_moves_back(raw):
    """A change ordered below the horizon (the guard on running transactions keeps PostgreSQL
    from writing one; made by hand here) is purged without moving the horizon back."""
    account = AccountFactory(members=0)
    late = AccessChange.objects.create(account=account, version=1, txid=50, event_type="e")
    _age([late])
    assert _purge() == 1
    slow = AccessChange.objects.create(account=account, version=2, txid=10, event_type="e")
    _age([slow])
    assert _purge() == 1
    assert access_feed_horizon() == FeedPosition(50, late.id)


# --- Made-up ids with a valid token ---------------------------------------------------------
# (The hostile URL suite cannot reach this route: a signed-in visitor gets 401 before any lookup.)


@pytest.mark.django_db
@given(
    public_id=st.one_of(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
            min_size=1,
            max_size=300,
        ),
        st.just("user-00000-0000-0000"),
        st.just("x" * 5000),
    )
)
@hypothesis_settings(max_examples=40)
def test_made_up_ids_are_a_plain_404(public_id):
    with transaction.atomic():
        raw_token = api_token_create(name="Fuzz", created_by=None, scopes=[ApiScope.ACCESS_READ])[1]
        AccountFactory()  # a real account beside, never answered for a made-up id
        response = Client().get(
            "/api/v1/access/" + quote(public_id, safe=""),
            HTTP_AUTHORIZATION=f"Bearer {raw_token}",
        )
        assert response.status_code == 404, (public_id, response.content)
        assert response.json()["error"]
        transaction.set_rollback(True)


@pytest.mark.django_db(transaction=True)
def test_a_change_written_before_changes_kept_their_state_is_served_as_the_account_now(raw):
    """Changes from before the state columns carry none: the feed serves the account's current
    state with its current version, never the old version with a newer state."""
    account = AccountFactory(members=0)
    _grace(account)
    _grace(account, days=9)  # version 2
    AccessChange.objects.filter(account=account, version=1).update(
        status=None, is_active=None, grace_ends_at=None
    )
    account.refresh_from_db()

    changes = access_changes_page(after=None).changes

    assert [(c["version"], c["status"]) for c in changes] == [
        (2, "grace_period"),
        (2, "grace_period"),
    ]
    expected_end = account.grace_ends_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert changes[0]["grace_ends_at"] == changes[1]["grace_ends_at"] == expected_end


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_cursor_this_database_never_handed_out_is_gone_not_an_empty_feed_for_ever(client, raw):
    """A cursor kept across a restore to a new cluster (its transaction ids start low again), or
    from another Janitor, is ahead of every transaction this database has run: it was taken,
    echoed back with an empty page, and nothing was served to it again (found in review)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        now_txid = cursor.fetchone()[0]
    ahead = FeedPosition(now_txid + 10_000_000, 1).encode()
    gone = _feed(client, raw, changed_since=ahead)
    assert gone.status_code == 410
    assert gone.json()["code"] == "cursor_expired"
    assert "never handed it out" in gone.json()["error"]
    # A cursor the feed did hand out keeps working.
    _grace(AccountFactory(members=0))
    first = _feed(client, raw).json()
    assert first["changes"]
    assert _feed(client, raw, changed_since=first["next_cursor"]).status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_after_a_logical_restore_the_feed_asks_for_a_restamp_then_serves_again(client, raw):
    """A restore from pg_dump into another cluster keeps the old cluster's transaction ids on the
    kept changes and the purge's horizon, which the new one has not reached: the feed handed
    out the horizon as a cursor and then refused it, on every poll (found in review). It
    answers 503 until `access_feed_restamp`, and then serves every kept change again."""
    from django.core.management import call_command

    _grace(AccountFactory(members=0))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        ahead = cursor.fetchone()[0] + 10_000_000
    AccessChange.objects.update(txid=ahead + 5)  # as the old cluster stamped them
    AccessFeedHorizon.objects.create(txid=ahead, change_id=1)
    unavailable = _feed(client, raw)
    assert unavailable.status_code == 503
    assert unavailable.json()["code"] == "feed_unavailable"

    call_command("access_feed_restamp", stdout=StringIO())
    served = _feed(client, raw)
    assert served.status_code == 200
    assert len(served.json()["changes"]) == 1
    assert _feed(client, raw, changed_since=served.json()["next_cursor"]).status_code == 200
