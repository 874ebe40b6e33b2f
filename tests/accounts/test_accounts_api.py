"""The accounts API (PUT /api/v1/accounts/<id>, POST /api/v1/accounts): bearer tokens with the
accounts:write scope, per-field errors, created/updated/unchanged, members upserted, an existing
account's access never moved, batches item by item, idempotent."""

import json
from urllib.parse import quote

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import AccessAudit, AccessStatus, Account, User
from accounts.services.account_sync import MAX_BATCH, SYNC_ACTOR
from accounts.services.tokens import api_token_create, api_token_revoke
from tests.factories import AccountFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def token():
    return api_token_create(name="Product backend", created_by=None, scopes=["accounts:write"])


def _put(client, raw, public_id, body, **extra):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    headers = {"Authorization": f"Bearer {raw}"} if raw else {}
    return client.put(
        f"/api/v1/accounts/{public_id}",
        data=data,
        content_type="application/json",
        headers=headers,
        **extra,
    )


def _batch(client, raw, body):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(
        "/api/v1/accounts",
        data=data,
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )


ACME = {
    "email": "Billing@Acme.example",
    "name": "ACME Corp",
    "stripe_customer_id": "cus_ACME",
    "members": [
        {"public_id": "u-ann", "email": "ann@acme.example", "name": "Ann"},
        {"public_id": "u-bob", "email": "Bob@acme.example", "name": "Bob"},
    ],
}


# --- Authentication and scope -----------------------------------------------------------------


@pytest.mark.smoke
def test_no_unknown_or_revoked_token_is_401_and_a_missing_scope_403(client):
    assert _put(client, "", "acme", ACME).status_code == 401
    assert _put(client, "jan_not-a-token", "acme", ACME).status_code == 401
    _activity, activity_raw = api_token_create(name="activity only", created_by=None)
    forbidden = _put(client, activity_raw, "acme", ACME)
    assert forbidden.status_code == 403
    assert forbidden.json() == {"error": "This token lacks the accounts:write scope."}
    assert (
        _batch(client, activity_raw, {"accounts": [{"public_id": "acme", **ACME}]}).status_code
        == 403
    )
    revoked, revoked_raw = api_token_create(name="old", created_by=None, scopes=["accounts:write"])
    api_token_revoke(token=revoked)
    assert _put(client, revoked_raw, "acme", ACME).status_code == 401
    assert not Account.objects.exists() and not User.objects.exists()


def test_only_put_and_post_are_allowed(client, token):
    _, raw = token
    headers = {"Authorization": f"Bearer {raw}"}
    assert client.get("/api/v1/accounts/acme", headers=headers).status_code == 405
    assert client.get("/api/v1/accounts", headers=headers).status_code == 405


def test_every_api_error_is_json_as_the_guide_says(client, token):
    """A method a view does not take answered an empty HTML body, an unknown route Django's
    404 page, a NUL in the URL plain text: a product's JSON client could read none of them
    (found in review)."""
    _, raw = token
    headers = {"Authorization": f"Bearer {raw}"}
    wrong_method = client.get("/api/v1/accounts/acme", headers=headers)
    assert wrong_method.status_code == 405
    assert "PUT" in wrong_method["Allow"]
    assert "Allow header" in wrong_method.json()["error"]
    for path in ("/api/v1/nothing-here", "/api/v1/accounts/a%2Fb/extra"):
        missing = client.get(path, headers=headers)
        assert missing.status_code == 404, path
        assert "No such API route" in missing.json()["error"]
    nul = client.get("/api/v1/access/a%00b", headers=headers)
    assert nul.status_code == 400
    assert "NUL" in nul.json()["error"]
    # The dashboard's own pages keep their HTML; the API's errors keep the security headers.
    page = client.get("/no-such-page/")
    assert "text/html" in page["Content-Type"]
    for header in ("X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy"):
        assert header in missing, header
    for header in ("X-Content-Type-Options", "Content-Security-Policy"):
        assert header in nul, header


def test_put_refuses_another_id_in_the_body(client, token):
    _, raw = token
    response = _put(client, raw, "acme", {**ACME, "public_id": "other"})
    assert response.status_code == 400, response.content
    assert "differs from the account's id" in json.dumps(response.json())
    assert not Account.objects.filter(public_id__in=["acme", "other"]).exists()


# --- One account --------------------------------------------------------------------------------


@pytest.mark.smoke
def test_put_creates_then_changes_nothing_on_repeat(client, token):
    model, raw = token
    response = _put(client, raw, "acme", ACME)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["result"] == "created"
    assert body["account"] == {
        "public_id": "acme",
        "email": "billing@acme.example",
        "name": "ACME Corp",
        "stripe_customer_id": "cus_ACME",
        "status": "active",
        "is_active": True,
        "members": [
            {"public_id": "u-ann", "email": "ann@acme.example", "name": "Ann", "is_active": True},
            {"public_id": "u-bob", "email": "bob@acme.example", "name": "Bob", "is_active": True},
        ],
    }
    account = Account.objects.get(public_id="acme")
    assert sorted(account.members.values_list("public_id", flat=True)) == ["u-ann", "u-bob"]
    audit = AccessAudit.objects.get(account=account)
    assert (audit.actor, audit.from_status, audit.to_status, audit.source) == (
        SYNC_ACTOR,
        "",
        "active",
        f"token:{model.pk}",
    )
    again = _put(client, raw, "acme", ACME)
    assert again.status_code == 200 and again.json()["result"] == "unchanged"
    assert again.json()["account"] == body["account"]
    assert AccessAudit.objects.count() == 1 and User.objects.count() == 2


def test_active_false_makes_a_new_account_start_revoked_as_the_import_does(client, token):
    _, raw = token
    response = _put(client, raw, "late-payer", {"email": "lp@example.com", "active": False})
    assert response.status_code == 201
    assert response.json()["account"]["status"] == "revoked"
    account = Account.objects.get(public_id="late-payer")
    assert (account.access_status, account.is_active) == (AccessStatus.REVOKED, False)
    audit = AccessAudit.objects.get(account=account)
    assert (audit.from_status, audit.to_status) == ("", "revoked")


def test_an_existing_accounts_access_is_never_moved(client, token, admin_user):
    from accounts.services.access_status import access_status_change

    _, raw = token
    revoked = AccountFactory(public_id="gone", email="gone@example.com", members=1)
    for status in ("revoked_pending", "revoked"):
        access_status_change(
            account=revoked, to_status=status, actor=admin_user.email, reason="chargeback"
        )
    active = AccountFactory(public_id="here", email="here@example.com", members=1)
    audit_rows, version = (
        AccessAudit.objects.count(),
        Account.objects.get(pk=revoked.pk).access_version,
    )
    up = _put(client, raw, "gone", {"email": "gone@example.com", "name": "Renamed", "active": True})
    down = _put(client, raw, "here", {"email": "here@example.com", "active": False})
    assert (up.json()["result"], down.json()["result"]) == ("updated", "unchanged")
    revoked.refresh_from_db()
    active.refresh_from_db()
    assert (revoked.access_status, revoked.is_active, revoked.name) == ("revoked", False, "Renamed")
    assert (active.access_status, active.is_active) == ("active", True)
    assert AccessAudit.objects.count() == audit_rows
    assert revoked.access_version == version


def test_put_updates_fields_and_upserts_members_leaving_others_alone(client, token):
    _, raw = token
    _put(client, raw, "acme", ACME)
    AccountFactory(public_id="acme-other", members=0)  # unrelated
    left_alone = UserFactory(public_id="u-cy", email="cy@acme.example", account=None)
    User.objects.filter(pk=left_alone.pk).update(account=Account.objects.get(public_id="acme"))
    changed = {
        "email": "billing@acme.example",
        "name": "ACME Corporation",
        "members": [
            {"public_id": "u-ann", "email": "ann.new@acme.example"},  # name absent: kept
            {"public_id": "u-dee", "email": "dee@acme.example", "name": "Dee"},
        ],
    }
    response = _put(client, raw, "acme", changed)
    assert response.status_code == 200 and response.json()["result"] == "updated"
    members = {m["public_id"]: m for m in response.json()["account"]["members"]}
    assert set(members) == {"u-ann", "u-bob", "u-cy", "u-dee"}  # not listed: left alone
    assert (members["u-ann"]["email"], members["u-ann"]["name"]) == ("ann.new@acme.example", "Ann")
    account = Account.objects.get(public_id="acme")
    assert (account.name, account.stripe_customer_id) == ("ACME Corporation", "cus_ACME")


def test_a_member_without_an_account_joins_but_none_moves(client, token):
    _, raw = token
    other = AccountFactory(public_id="other", members=2)
    loose = UserFactory(public_id="u-loose", email="loose@example.com")
    User.objects.filter(pk=loose.pk).update(account=None)
    response = _put(
        client,
        raw,
        "acme",
        {
            "email": "acme@example.com",
            "members": [{"public_id": other.team[1].public_id, "email": other.team[1].email}],
        },
    )
    assert response.status_code == 400
    assert "moving members is refused" in response.json()["errors"]["members[0].public_id"]
    assert not Account.objects.filter(public_id="acme").exists()
    joined = _put(
        client,
        raw,
        "acme",
        {
            "email": "acme@example.com",
            "members": [{"public_id": "u-loose", "email": "loose@example.com"}],
        },
    )
    assert joined.status_code == 201
    loose.refresh_from_db()
    assert loose.account.public_id == "acme"


def test_validation_errors_name_each_field_and_store_nothing(client, token):
    _, raw = token
    response = _put(
        client,
        raw,
        "acme",
        {
            "email": "not-an-email",
            "name": 5,
            "stripe_customer_id": "acct_1",
            "active": "yes",
            "is_active": False,
            "members": [
                {"public_id": "a b", "email": "ok@example.com"},
                {"public_id": "u-1", "email": "OK@example.com", "role": "x"},
                "nope",
            ],
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "The account was not saved: see errors."
    assert body["errors"] == {
        "email": "'not-an-email' is not a valid address",
        "name": "must be a string",
        "stripe_customer_id": "'acct_1' does not start with cus_",
        "active": "must be true or false",
        "is_active": "is not a field of an account",
        "members[0].public_id": "'a b' is not allowed: use 1 to 64 characters from A-Z, a-z, "
        "0-9, '-', '_' and '.', starting with a letter or digit",
        "members[1].role": "is not a field of a member",
        "members[1].email": "already appears as members[0]",
        "members[2]": "must be a JSON object",
    }
    bad_id = _put(client, raw, ".hidden", {"email": "x@example.com"})
    assert bad_id.status_code == 400 and "public_id" in bad_id.json()["errors"]
    missing = _put(client, raw, "acme", {})
    assert missing.json()["errors"] == {"email": "is required"}
    assert not Account.objects.exists() and not User.objects.exists()


def test_conflicts_with_what_janitor_holds_are_field_errors(client, token):
    _, raw = token
    taken = AccountFactory(public_id="taken", email="taken@example.com", stripe_customer_id="cus_T")
    staff = StaffFactory(public_id="staffer", email="staff@janitor.test")
    response = _put(
        client,
        raw,
        "acme",
        {
            "email": "TAKEN@example.com",
            "stripe_customer_id": "cus_T",
            "members": [
                {"public_id": "u-new", "email": "Staff@Janitor.test"},  # a staff email
                {"public_id": "staffer", "email": "other@example.com"},  # a staff id
                {"public_id": "u-x", "email": "TAKEN@example.com"},  # someone else's email
            ],
        },
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "email": "taken@example.com is the email of account taken",
        "stripe_customer_id": "cus_T belongs to account taken",
        "members[0].email": "email staff@janitor.test belongs to a staff account",
        "members[1].public_id": "staffer is a staff account",
        "members[2].email": f"email taken@example.com belongs to {taken.member.public_id}",
    }
    staff.refresh_from_db()
    assert staff.account_id is None
    assert not Account.objects.filter(public_id="acme").exists()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "The body is not JSON."),
        (b"\xff\xfe", 400, "The body is not JSON."),
        (b"[" * 100_000, 400, "nested too deeply"),
        ([1, 2], 400, "account"),
    ],
)
def test_malformed_bodies_are_refused(client, token, body, status, message):
    _, raw = token
    response = _put(client, raw, "acme", body)
    assert response.status_code == status
    assert message in json.dumps(response.json())
    assert not Account.objects.exists()


def test_a_body_over_the_cap_is_413(client, token, monkeypatch):
    from accounts.services import account_sync

    _, raw = token
    monkeypatch.setattr(account_sync, "PUT_MAX_BYTES", 100)
    monkeypatch.setattr("accounts.views.api_accounts.PUT_MAX_BYTES", 100)
    response = _put(client, raw, "acme", {"email": "a@example.com", "name": "x" * 200})
    assert response.status_code == 413
    assert response.json() == {"error": "Body larger than 100 bytes."}


# --- Batches --------------------------------------------------------------------------------------


@pytest.mark.smoke
def test_batch_applies_each_item_on_its_own_and_is_idempotent(client, token):
    _, raw = token
    AccountFactory(public_id="old", email="old@example.com", name="Old", members=1)
    items = [
        {"public_id": "acme", **ACME},
        {"public_id": "old", "email": "old@example.com", "name": "Old Ltd"},
        {"public_id": "bad", "email": "nope"},
        {"public_id": "acme", "email": "again@example.com"},
        {"email": "no-id@example.com"},
    ]
    response = _batch(client, raw, {"accounts": items})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["results"] == [
        {"public_id": "acme", "result": "created"},
        {"public_id": "old", "result": "updated"},
        {
            "public_id": "bad",
            "result": "error",
            "errors": {"email": "'nope' is not a valid address"},
        },
        {
            "public_id": "acme",
            "result": "error",
            "errors": {"public_id": "already appears as accounts[0]"},
        },
        {"public_id": "", "result": "error", "errors": {"public_id": "is required"}},
    ]
    assert (body["created"], body["updated"], body["unchanged"], body["errors"]) == (1, 1, 0, 3)
    assert Account.objects.get(public_id="old").name == "Old Ltd"
    assert not Account.objects.filter(public_id="bad").exists()

    audit_rows, users = AccessAudit.objects.count(), User.objects.count()
    again = _batch(client, raw, {"accounts": items[:2]}).json()
    assert [r["result"] for r in again["results"]] == ["unchanged", "unchanged"]
    assert (AccessAudit.objects.count(), User.objects.count()) == (audit_rows, users)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"accounts": []}, 400),
        ({"accounts": "x"}, 400),
        ({}, 400),
        ([], 400),
        (
            {
                "accounts": [
                    {"public_id": f"a{n}", "email": f"a{n}@example.com"}
                    for n in range(MAX_BATCH + 1)
                ]
            },
            413,
        ),
    ],
)
def test_batch_shape_and_limit(client, token, body, status):
    _, raw = token
    response = _batch(client, raw, body)
    assert response.status_code == status
    assert "error" in response.json()
    assert not Account.objects.exists()


def test_a_full_batch_of_1000_is_accepted(client, token):
    _, raw = token
    items = [{"public_id": f"acct-{n}", "email": f"a{n}@example.com"} for n in range(MAX_BATCH)]
    body = _batch(client, raw, {"accounts": items}).json()
    assert body["created"] == MAX_BATCH and body["errors"] == 0
    assert Account.objects.count() == MAX_BATCH


def test_a_conflict_that_arrives_between_check_and_write_is_reported_not_raised(
    client, token, monkeypatch
):
    """Another writer takes the email after the checks ran: the database refuses the insert,
    the item is checked again and answered with the field's error; nothing half-written."""
    from accounts.services import account_sync

    _, raw = token
    AccountFactory(public_id="taken", email="taken@example.com", members=0)
    real, calls = account_sync._conflicts, []

    def blind_first(wanted):
        calls.append(wanted.public_id)
        return {} if len(calls) == 1 else real(wanted)

    monkeypatch.setattr(account_sync, "_conflicts", blind_first)
    response = _put(
        client,
        raw,
        "acme",
        {"email": "taken@example.com", "members": [{"public_id": "u-1", "email": "u1@x.example"}]},
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"email": "taken@example.com is the email of account taken"}
    assert calls == ["acme", "acme"]
    assert not Account.objects.filter(public_id="acme").exists()
    assert not User.objects.filter(public_id="u-1").exists() and not AccessAudit.objects.exists()


# --- Any id in the path, with a valid token -------------------------------------------------
# (The hostile URL suite cannot reach this route: a signed-in visitor gets 401 before any lookup.)


@given(
    public_id=st.one_of(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
            min_size=1,
            max_size=300,
        ),
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True),
    )
)
@hypothesis_settings(max_examples=40)
def test_any_id_in_the_path_is_created_or_refused_by_field_never_an_error(public_id):
    from accounts.models import public_id_is_valid

    with transaction.atomic():
        raw = api_token_create(name="Fuzz", created_by=None, scopes=["accounts:write"])[1]
        body = {"email": "fuzz@example.com"}
        response = Client().put(
            "/api/v1/accounts/" + quote(public_id, safe=""),
            data=json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {raw}"},
        )
        if public_id_is_valid(public_id):
            assert response.status_code == 201, (public_id, response.content)
            assert Account.objects.filter(public_id=public_id).count() == 1
        else:
            assert response.status_code == 400, (public_id, response.content)
            assert "public_id" in response.json()["errors"], response.content
            assert not Account.objects.exists()
        transaction.set_rollback(True)


def test_text_the_database_cannot_store_is_a_field_error_and_the_batch_goes_on(client, token):
    """PostgreSQL text holds no NUL and no lone surrogate (both valid in JSON): each is the
    item's field error, the items after it are still applied, nothing answers 500."""
    _, raw = token
    items = [
        {"public_id": "one", "email": "one@example.com"},
        {
            "public_id": "two",
            "email": "two@example.com",
            "members": [{"public_id": "u-two", "email": "t@example.com", "name": "x\u0000"}],
        },
        {"public_id": "three", "email": "three@example.com", "name": "a\ud800b"},
        {"public_id": "four", "email": "four@example.com", "stripe_customer_id": "cus_\u0000"},
        {"public_id": "five", "email": "five@example.com"},
    ]
    response = _batch(client, raw, {"accounts": items})

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["result"] for r in results] == ["created", "error", "error", "error", "created"]
    assert results[1]["errors"] == {"members[0].name": "contains a NUL character"}
    assert results[2]["errors"] == {"name": "is not valid Unicode (a lone surrogate)"}
    assert results[3]["errors"] == {"stripe_customer_id": "contains a NUL character"}
    assert set(Account.objects.values_list("public_id", flat=True)) == {"one", "five"}

    single = _put(client, raw, "acme", {"email": "a@example.com", "name": "a\u0000b"})
    assert single.status_code == 400, single.content
    assert single.json()["errors"] == {"name": "contains a NUL character"}
