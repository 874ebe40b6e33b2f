"""The example product on its own (examples/product/app.py as a process; a tiny local server
stands in for Janitor's API): it verifies Janitor's events with the standardwebhooks library,
applies each webhook-id once, drops a stale version, ends sessions and confirms a session
revocation, and refuses sign-in to an account without access."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.examples.product_support import (
    FakeJanitor,
    ProductProcess,
    event_payload,
    http,
    signed_headers,
    wait_for,
)

PASSWORD = "correct-horse-1"


@pytest.fixture
def team(product: ProductProcess) -> dict[str, str]:
    """One account with two members, made with the product's own command."""
    first = product.cli(
        "create-user",
        "--email",
        "ada@example.test",
        "--password",
        PASSWORD,
        "--account",
        "acct-team",
        "--stripe-customer",
        "cus_team",
    )
    second = product.cli(
        *("create-user", "--email", "bob@example.test", "--password", PASSWORD),
        *("--account", "acct-team"),
    )
    return {"account": first["account"], "ada": first["member"], "bob": second["member"]}


def _account(product: ProductProcess, public_id: str) -> dict:
    return product.query("SELECT * FROM accounts WHERE public_id = ?", public_id)[0]


def _sessions(product: ProductProcess) -> int:
    return product.query("SELECT COUNT(*) AS n FROM sessions")[0]["n"]


def _grace(account: str, version: int) -> dict:
    return event_payload(
        "access.grace_started",
        account,
        version,
        status="grace_period",
        grace_ends_at="2026-12-13T02:30:00Z",
    )


def _revoke_sessions(product: ProductProcess, fake: FakeJanitor, account: str, version: int):
    return event_payload(
        "access.sessions_revoke",
        account,
        version,
        status="revoked_pending",
        grants_access=False,
        revocation=7,
        confirm_url=f"{fake.url}/api/v1/revocations/7/confirm",
        members=[{"public_id": "mem-x", "email": "ada@example.test"}],
        deadline="2026-12-06T12:00:00Z",
    )


@pytest.mark.smoke
def test_a_signed_event_is_verified_and_applied(product, team):
    reply = product.send_event(_grace(team["account"], 1), webhook_id="msg_grace1")

    assert reply.status == 200, reply.text
    assert reply.json() == {"result": "applied"}
    account = _account(product, team["account"])
    assert (account["status"], account["access_version"]) == ("grace_period", 1)
    assert account["grace_ends_at"] == "2026-12-13T02:30:00Z"
    # Still in: a grace period keeps access, and the home page says why the card matters.
    reply, session = product.sign_in("ada@example.test", PASSWORD)
    assert reply.status == 303 and session
    home = product.home(session)
    assert home.status == 200 and "did not go through" in home.text


@pytest.mark.smoke
def test_an_altered_body_is_refused_and_nothing_applied(product, team):
    def tamper(body: bytes) -> bytes:
        return body.replace(b'"grace_period"', b'"active"').replace(
            b'"version": 1', b'"version": 2'
        )

    reply = product.send_event(_grace(team["account"], 1), webhook_id="msg_alt", alter=tamper)

    assert reply.status == 401
    assert "Signature check failed" in reply.json()["error"]
    assert _account(product, team["account"])["access_version"] == 0
    assert product.query("SELECT * FROM webhook_events") == []


@pytest.mark.smoke
@pytest.mark.parametrize(
    "how",
    ["stale", "future", "wrong_secret", "no_signature"],
)
def test_a_stale_or_unsigned_event_is_refused(product, team, how):
    payload = _grace(team["account"], 1)
    body = json.dumps(payload).encode()
    now = datetime.now(UTC)
    if how == "stale":  # older than the library's five minutes: a replayed capture
        headers = signed_headers(body, webhook_id="msg_old", at=now - timedelta(minutes=6))
    elif how == "future":
        headers = signed_headers(body, webhook_id="msg_old", at=now + timedelta(minutes=6))
    elif how == "wrong_secret":
        headers = signed_headers(
            body, webhook_id="msg_old", secret="whsec_" + "QUJDREVGR0hJSktMTU5PUA=="
        )
    else:
        headers = signed_headers(body, webhook_id="msg_old")
        del headers["webhook-signature"]

    reply = http("POST", product.events_url, body=body, headers=headers)

    assert reply.status == 401, reply.text
    assert _account(product, team["account"])["status"] == "active"
    assert product.query("SELECT * FROM webhook_events") == []


def test_a_signed_event_four_minutes_old_is_still_accepted(product, team):
    # Inside the tolerance: a delivery that sat in a queue a while is not refused.
    at = datetime.now(UTC) - timedelta(minutes=4)
    reply = product.send_event(_grace(team["account"], 1), webhook_id="msg_late", at=at)
    assert reply.status == 200 and reply.json() == {"result": "applied"}


@pytest.mark.smoke
def test_a_redelivered_event_is_applied_once(product, team, fake_janitor):
    reply, session = product.sign_in("ada@example.test", PASSWORD)
    assert session
    payload = _revoke_sessions(product, fake_janitor, team["account"], 1)

    first = product.send_event(payload, webhook_id="msg_revoke")
    wait_for(lambda: fake_janitor.to("POST", "/api/v1/revocations/"), what="the confirmation")
    # Janitor never heard the answer and delivers again: same webhook-id, signed anew.
    product.sign_in("ada@example.test", PASSWORD)  # blocked now, so no new session either
    second = product.send_event(payload, webhook_id="msg_revoke")

    assert first.json() == {"result": "sessions_ended", "sessions_ended": 1}
    assert second.status == 200
    assert second.json() == {"result": "duplicate", "outcome": "sessions_ended"}
    rows = product.query("SELECT webhook_id, outcome FROM webhook_events")
    assert rows == [{"webhook_id": "msg_revoke", "outcome": "sessions_ended"}]
    assert len(product.query("SELECT * FROM confirmations")) == 1
    # Applied once: one confirmation reached Janitor, however long we wait.
    assert wait_for(
        lambda: product.query("SELECT confirmed_at FROM confirmations")[0]["confirmed_at"],
        what="the confirmation recorded",
    )
    assert len(fake_janitor.to("POST", "/api/v1/revocations/")) == 1


@pytest.mark.smoke
def test_an_event_older_than_the_version_held_is_dropped(product, team):
    revoked = event_payload(
        "access.revoked", team["account"], 3, status="revoked", grants_access=False
    )
    assert product.send_event(revoked, webhook_id="msg_v3").json() == {"result": "applied"}

    late = product.send_event(_grace(team["account"], 1), webhook_id="msg_v1")
    same = product.send_event(
        event_payload("access.revoked", team["account"], 3, status="revoked", grants_access=False),
        webhook_id="msg_v3_again",
    )

    assert late.status == 200  # acknowledged, so Janitor stops retrying it
    assert late.json() == {"result": "stale", "held_version": 3}
    assert same.json() == {"result": "unchanged"}
    account = _account(product, team["account"])
    assert (account["status"], account["access_version"]) == ("revoked", 3)
    outcomes = product.query("SELECT webhook_id, version, outcome FROM webhook_events ORDER BY seq")
    assert outcomes == [
        {"webhook_id": "msg_v3", "version": 3, "outcome": "applied"},
        {"webhook_id": "msg_v1", "version": 1, "outcome": "stale"},
        {"webhook_id": "msg_v3_again", "version": 3, "outcome": "unchanged"},
    ]


@pytest.mark.smoke
def test_sessions_revoke_ends_every_members_sessions_then_confirms(product, team, fake_janitor):
    sessions = [
        product.sign_in("ada@example.test", PASSWORD)[1],
        product.sign_in("ada@example.test", PASSWORD)[1],
        product.sign_in("bob@example.test", PASSWORD)[1],
    ]
    assert all(sessions) and _sessions(product) == 3
    other = product.cli("create-user", "--email", "eve@example.test", "--password", PASSWORD)
    _, outsider = product.sign_in("eve@example.test", PASSWORD)

    reply = product.send_event(
        _revoke_sessions(product, fake_janitor, team["account"], 2), webhook_id="msg_sr"
    )

    assert reply.status == 200
    assert reply.json() == {"result": "sessions_ended", "sessions_ended": 3}
    confirms = wait_for(
        lambda: fake_janitor.to("POST", "/api/v1/revocations/7/confirm"), what="the confirmation"
    )
    assert len(confirms) == 1
    assert confirms[0].body == {"sessions_ended": 3}
    assert confirms[0].headers["Authorization"] == f"Bearer {product.janitor_token}"
    # The sessions were gone before the confirmation was sent (deleted in the same step).
    for session in sessions:
        assert product.home(session).status in (302, 303)
    assert _sessions(product) == 1  # only the other account's member is still signed in
    assert product.home(outsider).status == 200
    assert other["account"] != team["account"]
    # Its state came with it (version 2 > 0): new sign-ins are refused.
    assert product.sign_in("bob@example.test", PASSWORD)[0].status == 403


def test_a_confirmation_is_retried_until_janitor_takes_it(product, team, fake_janitor):
    fake_janitor.reply("/api/v1/revocations/", (503, {"error": "down"}))

    product.send_event(
        _revoke_sessions(product, fake_janitor, team["account"], 2), webhook_id="msg_retry"
    )

    wait_for(
        lambda: product.query("SELECT confirmed_at FROM confirmations")[0]["confirmed_at"],
        seconds=20,
        what="the confirmation to succeed on a retry",
    )
    row = product.query("SELECT attempts FROM confirmations")[0]
    assert row["attempts"] == 2
    assert len(fake_janitor.to("POST", "/api/v1/revocations/7/confirm")) == 2


def test_a_revocation_janitor_no_longer_waits_for_is_closed_not_retried(
    product, team, fake_janitor
):
    fake_janitor.reply("/api/v1/revocations/", (409, {"error": "This revocation is not waiting."}))

    product.send_event(
        _revoke_sessions(product, fake_janitor, team["account"], 2), webhook_id="msg_409"
    )

    row = wait_for(
        lambda: product.query("SELECT * FROM confirmations WHERE closed_at IS NOT NULL"),
        what="the confirmation closed",
    )[0]
    assert row["confirmed_at"] is None and "409" in row["last_error"]
    assert len(fake_janitor.to("POST", "/api/v1/revocations/")) == 1


def test_a_confirm_url_outside_janitor_is_refused(product, team, fake_janitor):
    payload = _revoke_sessions(product, fake_janitor, team["account"], 2)
    payload["data"]["confirm_url"] = "http://attacker.example/collect"

    reply = product.send_event(payload, webhook_id="msg_evil")

    assert reply.status == 400 and "confirm_url" in reply.json()["error"]
    assert product.query("SELECT * FROM confirmations") == []
    assert fake_janitor.to("POST", "/") == []


def test_sign_in_is_blocked_once_revoked_and_live_sessions_end(product, team):
    _, session = product.sign_in("ada@example.test", PASSWORD)
    assert product.home(session).status == 200

    reply = product.send_event(
        event_payload("access.revoked", team["account"], 4, status="revoked", grants_access=False),
        webhook_id="msg_revoked",
    )
    assert reply.json() == {"result": "applied"}

    refused, cookie = product.sign_in("ada@example.test", PASSWORD)
    assert refused.status == 403 and cookie is None
    assert "revoked" in refused.text
    assert product.home(session).status in (302, 303, 403)
    assert _sessions(product) == 0

    # Restored in Janitor: the product hears of it and lets them in again.
    product.send_event(
        event_payload("access.restored", team["account"], 5), webhook_id="msg_restored"
    )
    assert product.sign_in("ada@example.test", PASSWORD)[0].status == 303


def test_a_disabled_member_is_signed_out_and_refused_the_others_stay(product, team):
    _, ada = product.sign_in("ada@example.test", PASSWORD)
    _, bob = product.sign_in("bob@example.test", PASSWORD)

    product.send_event(
        event_payload("access.member_disabled", team["account"], 1, member=team["bob"]),
        webhook_id="msg_member",
    )

    assert product.home(bob).status in (302, 303)
    assert product.sign_in("bob@example.test", PASSWORD)[0].status == 403
    assert product.home(ada).status == 200


def test_accounts_and_activity_reach_janitor_in_the_contracts_shapes(product, team, fake_janitor):
    # Pushed after each member was added: the last push carries both.
    put = wait_for(
        lambda: [
            r
            for r in fake_janitor.to("PUT", f"/api/v1/accounts/{team['account']}")
            if len(r.body["members"]) == 2
        ],
        what="the account pushed with both members",
    )[-1]
    assert put.headers["Authorization"] == f"Bearer {product.janitor_token}"
    assert put.body["email"] == "ada@example.test"
    assert put.body["stripe_customer_id"] == "cus_team"
    assert sorted(m["email"] for m in put.body["members"]) == [
        "ada@example.test",
        "bob@example.test",
    ]
    assert {m["public_id"] for m in put.body["members"]} == {team["ada"], team["bob"]}

    _, session = product.sign_in("ada@example.test", PASSWORD)
    product.home(session)

    def reported() -> list[dict]:
        events = [e for r in fake_janitor.to("POST", "/api/v1/activity") for e in r.body["events"]]
        return events if len(events) >= 2 else []

    posts = wait_for(reported, what="the sign-in and the page view reported")
    assert [e["kind"] for e in posts] == ["login", "request"]
    assert {e["account"] for e in posts} == {team["ada"]}  # a member's public id
    assert all(e["occurred_at"].endswith("Z") and e["id"] for e in posts)
    # Sent once: the outbox marks them when Janitor has answered, and nothing goes again.
    wait_for(
        lambda: (
            product.query("SELECT COUNT(*) AS n FROM activity_outbox WHERE sent_at IS NULL")
            == [{"n": 0}]
        ),
        what="the outbox marked sent",
    )
    time.sleep(0.5)  # a few more sync rounds
    assert len(reported()) == 2


def test_a_sign_up_makes_an_account_and_pushes_it(product, fake_janitor):
    from urllib.parse import urlencode

    reply = http(
        "POST",
        f"{product.url}/signup",
        body=urlencode(
            {"email": "new@example.test", "password": PASSWORD, "name": "New", "company": "N Co"}
        ).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == 303 and "product_session=" in reply.headers["Set-Cookie"]
    account = product.query("SELECT * FROM accounts")[0]
    put = wait_for(
        lambda: fake_janitor.to("PUT", f"/api/v1/accounts/{account['public_id']}"),
        what="the new account pushed",
    )[0]
    assert put.body["name"] == "N Co" and put.body["members"][0]["email"] == "new@example.test"

    again = http(
        "POST",
        f"{product.url}/signup",
        body=urlencode({"email": "NEW@example.test", "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert again.status == 400 and "exists" in again.text


def test_a_push_janitor_refuses_is_kept_with_its_error_not_retried(product, fake_janitor):
    fake_janitor.reply("/api/v1/accounts/", (400, {"error": "Invalid", "errors": {"email": "x"}}))
    ids = product.cli("create-user", "--email", "x@example.test", "--password", PASSWORD)

    row = wait_for(
        lambda: [
            r
            for r in product.query("SELECT * FROM accounts WHERE public_id = ?", ids["account"])
            if r["push_error"]
        ],
        what="the refusal recorded",
    )[0]
    assert '"email"' in row["push_error"]
    assert len(fake_janitor.to("PUT", "/api/v1/accounts/")) == 1


def test_a_sessions_revoke_older_than_the_version_held_is_still_carried_out(
    product, team, fake_janitor
):
    # The revoked event (a newer version) overtook it: the instruction still ends the sessions
    # and is confirmed, since Janitor waits for it; the newer state stays.
    _, session = product.sign_in("ada@example.test", PASSWORD)
    product.send_event(
        event_payload("access.revoked", team["account"], 3, status="revoked", grants_access=False),
        webhook_id="msg_v3",
    )

    reply = product.send_event(
        _revoke_sessions(product, fake_janitor, team["account"], 2), webhook_id="msg_sr_v2"
    )

    assert reply.json() == {"result": "sessions_ended", "sessions_ended": 1}
    assert _account(product, team["account"])["status"] == "revoked"
    assert _account(product, team["account"])["access_version"] == 3
    wait_for(lambda: fake_janitor.to("POST", "/api/v1/revocations/7/confirm"), what="confirm")
    assert product.home(session).status in (302, 303)


def test_events_for_an_account_the_product_does_not_know(product, fake_janitor):
    grace = product.send_event(_grace("acct-imported", 1), webhook_id="msg_unknown")
    revoke = product.send_event(
        _revoke_sessions(product, fake_janitor, "acct-imported", 2), webhook_id="msg_unknown_sr"
    )

    assert grace.status == 200 and grace.json() == {"result": "unknown_account"}
    # No sessions of it here: confirmed with 0, so the revocation does not wait for nothing.
    assert revoke.json() == {"result": "sessions_ended", "sessions_ended": 0}
    confirm = wait_for(
        lambda: fake_janitor.to("POST", "/api/v1/revocations/7/confirm"), what="the confirmation"
    )[0]
    assert confirm.body == {"sessions_ended": 0}


def test_during_a_secret_rotation_both_secrets_verify(tmp_path, fake_janitor):
    new = "whsec_" + "QUJDREVGR0hJSktMTU5PUA=="
    process = ProductProcess(db_path=tmp_path / "rotating.sqlite3", janitor_url=fake_janitor.url)
    old = process.secret
    process.secret = f"{new},{old}"
    process.start()
    try:
        ids = process.cli("create-user", "--email", "r@example.test", "--password", PASSWORD)
        by_old = process.send_event(_grace(ids["account"], 1), webhook_id="msg_o", secret=old)
        by_new = process.send_event(_grace(ids["account"], 2), webhook_id="msg_n", secret=new)
        other = process.send_event(
            _grace(ids["account"], 3), webhook_id="msg_x", secret="whsec_" + "WllaWVlaWVlaWVlaWVla"
        )
    finally:
        process.stop()
    assert (by_old.status, by_new.status, other.status) == (200, 200, 401)


def test_the_access_feed_catches_up_on_what_events_did_not_bring(tmp_path, fake_janitor):
    """PRODUCT_ACCESS_POLL_SECONDS on: the product pages through GET /api/v1/access from its
    stored cursor, takes each newer state, and asks Janitor about the members after a member
    change (the feed does not name them)."""
    process = ProductProcess(
        db_path=tmp_path / "feed.sqlite3",
        janitor_url=fake_janitor.url,
        extra_env={"PRODUCT_ACCESS_POLL_SECONDS": "0.2"},
    )
    ids = process.cli(
        *("create-user", "--email", "f@example.test", "--password", PASSWORD),
        *("--account", "acct-feed"),
    )
    change = {
        "account": "acct-feed",
        "at": "2026-12-06T10:00:00Z",
        "is_active": True,
        "grace_ends_at": None,
    }
    fake_janitor.reply(
        "/api/v1/access?",
        (
            200,
            {
                "changes": [
                    {
                        **change,
                        "version": 1,
                        "event": "access.grace_started",
                        "status": "grace_period",
                        "grants_access": True,
                        "grace_ends_at": "2026-12-13T10:00:00Z",
                    },
                    {
                        **change,
                        "version": 2,
                        "event": "access.member_disabled",
                        "status": "grace_period",
                        "grants_access": True,
                        "grace_ends_at": "2026-12-13T10:00:00Z",
                    },
                    {
                        **change,
                        "account": "acct-unknown",
                        "version": 9,
                        "event": "access.revoked",
                        "status": "revoked",
                        "is_active": False,
                        "grants_access": False,
                    },
                ],
                "next_cursor": "cur-1",
                "has_more": True,
            },
        ),
        (200, {"changes": [], "next_cursor": "cur-1", "has_more": False}),
    )
    fake_janitor.reply(
        f"/api/v1/access/{ids['member']}",
        (200, {"id": ids["member"], "kind": "member", "member_is_active": False, "version": 2}),
    )
    process.start()
    try:
        held = wait_for(
            lambda: [
                r
                for r in process.query("SELECT * FROM accounts WHERE public_id = 'acct-feed'")
                if r["access_version"] == 2
            ],
            what="the feed's changes taken",
        )[0]
        member = wait_for(
            lambda: process.query(
                "SELECT * FROM members WHERE public_id = ? AND is_enabled = 0", ids["member"]
            ),
            what="the member asked about and disabled",
        )
        assert process.sign_in("f@example.test", PASSWORD)[0].status == 403
    finally:
        process.stop()
    assert held["status"] == "grace_period" and held["grace_ends_at"] == "2026-12-13T10:00:00Z"
    assert member
    feed = [r.path for r in fake_janitor.to("GET", "/api/v1/access?")]
    assert feed[0] == "/api/v1/access?limit=500"
    assert feed[1] == "/api/v1/access?limit=500&changed_since=cur-1"
    assert process.query("SELECT value FROM meta WHERE key = 'access_cursor'") == [
        {"value": "cur-1"}
    ]


def test_an_expired_feed_cursor_makes_the_product_read_every_account_again(tmp_path, fake_janitor):
    """Janitor purged changes the product's cursor had not read (410 cursor_expired): the
    product reads each account and member afresh, forgets the cursor and follows the feed again
    from the oldest change Janitor keeps."""
    import sqlite3

    process = ProductProcess(
        db_path=tmp_path / "resync.sqlite3",
        janitor_url=fake_janitor.url,
        extra_env={"PRODUCT_ACCESS_POLL_SECONDS": "0.2"},
    )
    ids = process.cli(
        *("create-user", "--email", "r@example.test", "--password", PASSWORD),
        *("--account", "acct-resync"),
    )
    with sqlite3.connect(process.db_path) as db:
        db.execute("INSERT INTO meta (key, value) VALUES ('access_cursor', 'cur-old')")
    expired = {"error": "This cursor is older than the changes kept.", "code": "cursor_expired"}
    fake_janitor.reply(
        "/api/v1/access?",
        (410, expired),
        (200, {"changes": [], "next_cursor": "cur-new", "has_more": False}),
    )
    fake_janitor.reply(
        "/api/v1/access/acct-resync",
        (
            200,
            {
                "id": "acct-resync",
                "kind": "account",
                "account": "acct-resync",
                "status": "revoked",
                "is_active": False,
                "grants_access": False,
                "grace_ends_at": None,
                "version": 7,
                "changed_at": "2026-12-06T09:00:00Z",
            },
        ),
    )
    fake_janitor.reply(
        f"/api/v1/access/{ids['member']}",
        (200, {"id": ids["member"], "kind": "member", "member_is_active": True, "version": 7}),
    )
    process.start()
    try:
        held = wait_for(
            lambda: process.query(
                "SELECT * FROM accounts WHERE public_id = 'acct-resync' AND access_version = 7"
            ),
            what="the account read afresh",
        )[0]
        wait_for(
            lambda: (
                process.query("SELECT value FROM meta WHERE key = 'access_cursor'")
                == [{"value": "cur-new"}]
            ),
            what="the feed followed again from its start",
        )
        assert process.sign_in("r@example.test", PASSWORD)[0].status == 403
    finally:
        process.stop()
    assert (held["status"], held["grants_access"]) == ("revoked", 0)
    feed = [r.path for r in fake_janitor.to("GET", "/api/v1/access?")]
    assert feed[:2] == [
        "/api/v1/access?limit=500&changed_since=cur-old",
        "/api/v1/access?limit=500",
    ]
    assert [r.path for r in fake_janitor.to("GET", f"/api/v1/access/{ids['member']}")]


def test_a_gap_in_versions_makes_the_product_ask_about_each_member(product, team, fake_janitor):
    # Janitor superseded versions 2 and 3 (one was Bob disabled) while the product was away:
    # version 4 carries the account's state, and the product asks about each member.
    fake_janitor.reply(
        f"/api/v1/access/{team['bob']}",
        (200, {"id": team["bob"], "kind": "member", "member_is_active": False, "version": 4}),
    )
    fake_janitor.reply(
        f"/api/v1/access/{team['ada']}",
        (200, {"id": team["ada"], "kind": "member", "member_is_active": True, "version": 4}),
    )
    assert product.send_event(_grace(team["account"], 1), webhook_id="msg_g1").status == 200
    _, bob = product.sign_in("bob@example.test", PASSWORD)

    product.send_event(_grace(team["account"], 4), webhook_id="msg_g4")

    wait_for(
        lambda: product.query(
            "SELECT * FROM members WHERE public_id = ? AND is_enabled = 0", team["bob"]
        ),
        what="Bob's switch taken from Janitor",
    )
    wait_for(lambda: product.query("SELECT * FROM members_to_refresh") == [], what="refresh done")
    assert product.home(bob).status in (302, 303)
    assert product.sign_in("bob@example.test", PASSWORD)[0].status == 403
    assert product.sign_in("ada@example.test", PASSWORD)[0].status == 303
    asked = {r.path for r in fake_janitor.to("GET", "/api/v1/access/")}
    assert asked == {f"/api/v1/access/{team['ada']}", f"/api/v1/access/{team['bob']}"}
