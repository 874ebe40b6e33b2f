"""The example product's catch-up and activity reporting, in process against a stub of
Janitor's answers (found in review, seventh session)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

PRODUCT = Path(__file__).resolve().parents[2] / "examples" / "product"


@pytest.fixture
def product_module(monkeypatch):
    monkeypatch.syspath_prepend(str(PRODUCT))
    for name in ("app", "janitor_api", "store", "events"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import app
    import janitor_api

    yield app, janitor_api
    for name in ("app", "janitor_api", "store", "events"):
        sys.modules.pop(name, None)


class StubJanitor:
    """Janitor's answers: feed pages in turn, each member's access, and activity refused for
    the members it does not know (listed by index, as the activity API does)."""

    def __init__(self, answer, pages, member_active, unknown=(), bad=(), max_batch=1000):
        self.answer, self.pages, self.member_active = answer, list(pages), member_active
        self.unknown, self.bad, self.max_batch = set(unknown), set(bad), max_batch
        self.batches: list[list[str]] = []

    def access_changes(self, cursor, limit=500):
        page = self.pages.pop(0) if self.pages else None
        return self.answer(200, page or {"changes": [], "next_cursor": "c", "has_more": False})

    def access_get(self, public_id):
        return self.answer(
            200, {"kind": "member", "member_is_active": self.member_active[public_id]}
        )

    def activity_post(self, events: list[dict[str, Any]]):
        self.batches.append([event["account"] for event in events])
        if len(events) > self.max_batch:
            return self.answer(413, {"error": "Body too large."})
        bad = [
            {"index": index, "id": event["id"], "errors": {"account": "no such account: ..."}}
            for index, event in enumerate(events)
            if event["account"] in self.unknown
        ] + [
            {"index": index, "id": event["id"], "errors": {"kind": "must be login or request"}}
            for index, event in enumerate(events)
            if event["account"] in self.bad
        ]
        bad.sort(key=lambda item: item["index"])
        if bad:
            return self.answer(400, {"error": "invalid events", "errors": bad})
        return self.answer(200, {"received": len(events)})


def _product(app, tmp_path):
    config = app.Config(
        janitor_url="http://janitor.invalid",
        janitor_token="jan_x",
        webhook_secret="",
        host="",
        port=0,
        db_path=str(tmp_path / "product.sqlite3"),
        sync_seconds=1,
        access_poll_seconds=1,
    )
    return app.Product(config)


def test_a_version_that_skips_some_makes_the_product_ask_about_the_members(
    product_module, tmp_path
):
    """Two changes of overlapping transactions: the feed served v2 (revocation pending) before
    v1 (a member disabled). v1 is dropped as older, and the product never learnt that Bob was
    disabled: a version more than one above the one held now makes it ask about each member."""
    app, janitor_api = product_module
    product = _product(app, tmp_path)
    ada = product.user_create(email="ada@acme.example", password="x" * 8, account_id="acct-acme")
    bob = product.user_create(email="bob@acme.example", password="x" * 8, account_id="acct-acme")
    state = {"is_active": True, "grants_access": True, "grace_ends_at": None, "at": "2026-12-06"}
    page = {
        "changes": [
            {"account": "acct-acme", "version": 2, "event": "access.revocation_pending",
             "status": "revoked_pending", **state},
            {"account": "acct-acme", "version": 1, "event": "access.member_disabled",
             "status": "active", **state},
        ],
        "next_cursor": "MS4x",
        "has_more": False,
    }  # fmt: skip
    product.janitor = StubJanitor(
        janitor_api.Answer, [page], {ada["member"]: True, bob["member"]: False}
    )
    product.access_catch_up()
    with product.store.connect() as db:
        enabled = db.execute(
            "SELECT is_enabled FROM members WHERE public_id = ?", (bob["member"],)
        ).fetchone()[0]
    assert enabled == 0


def test_one_refused_event_does_not_hold_back_everyone_elses_activity(product_module, tmp_path):
    """Janitor refuses a whole batch for one bad event: the product resent the same oldest
    batch on every tick, and no activity (chargeback evidence) reached Janitor again. An event
    refused for what it says is set aside with the reason; one of a member Janitor does not
    know yet (its account's push still to come) waits for the next round, and then goes."""
    app, janitor_api = product_module
    product = _product(app, tmp_path)
    good = product.user_create(email="ok@example.com", password="x" * 8)["member"]
    with product.store.write() as db:
        product.store.activity_record(db, member_id="mem-bad", kind="login")
        product.store.activity_record(db, member_id="mem-new", kind="login")
        product.store.activity_record(db, member_id=good, kind="login")
    product.janitor = StubJanitor(janitor_api.Answer, [], {}, unknown={"mem-new"}, bad={"mem-bad"})
    assert product.activity_send() == 1
    assert product.janitor.batches[-1] == [good]
    with product.store.connect() as db:
        refused = db.execute("SELECT error FROM activity_refused").fetchall()
    assert len(refused) == 1 and "must be login or request" in refused[0][0]
    # Janitor learns the new member (the account's push went through): its login goes.
    product.janitor.unknown.clear()
    assert product.activity_send() == 1
    assert product.janitor.batches[-1] == ["mem-new"]
    with product.store.connect() as db:
        assert product.store.activity_unsent(db) == []
    assert product.activity_send() == 0  # nothing resent


def test_a_batch_too_large_for_janitor_is_halved(product_module, tmp_path):
    app, janitor_api = product_module
    product = _product(app, tmp_path)
    member = product.user_create(email="many@example.com", password="x" * 8)["member"]
    with product.store.write() as db:
        for _ in range(10):
            product.store.activity_record(db, member_id=member, kind="request")
    product.janitor = StubJanitor(janitor_api.Answer, [], {}, max_batch=4)
    assert product.activity_send() == 10
    assert max(len(batch) for batch in product.janitor.batches if len(batch) <= 4) <= 4
