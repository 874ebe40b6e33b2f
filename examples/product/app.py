"""An example product beside Janitor, on the Python standard library (plus `standardwebhooks`).

Its users sign in with a form and a cookie session kept in its own SQLite file. It pushes its
accounts and members to Janitor (PUT /api/v1/accounts/<id>), reports activity
(POST /api/v1/activity), receives Janitor's signed access events at POST /janitor/events,
refuses sign-in and requests of accounts without access, and on access.sessions_revoke ends the
account's sessions and confirms to Janitor. See README.md beside this file.

    python app.py [serve]                     # the web app (env: see Config)
    python app.py create-user --email a@example.com --password secret123 [--account ID]
    python app.py push                        # push unsynced accounts to Janitor now
"""

from __future__ import annotations

import argparse
import html
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from events import EventReceiver
from janitor_api import JanitorClient, JanitorUnreachable
from store import Store, new_id, now_iso, password_check

SESSION_COOKIE = "product_session"
MAX_FORM_BYTES = 64 * 1024
MAX_EVENT_BYTES = 1024 * 1024
ACTIVITY_BATCH = 1000
CONFIRM_BACKOFF_MAX_SECONDS = 60


def log(message: str) -> None:
    print(f"[product {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass
class Config:
    janitor_url: str
    janitor_token: str
    webhook_secret: str
    host: str
    port: int
    db_path: str
    sync_seconds: float
    # 0: off. Otherwise page through GET /api/v1/access?changed_since= this often, to catch up
    # on what events did not bring (a product down longer than Janitor retries, or no endpoint).
    access_poll_seconds: float

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            janitor_url=os.environ.get("JANITOR_URL", "http://127.0.0.1:8000").rstrip("/"),
            janitor_token=os.environ.get("JANITOR_TOKEN", ""),
            webhook_secret=os.environ.get("JANITOR_WEBHOOK_SECRET", ""),
            host=os.environ.get("HOST", "127.0.0.1"),
            port=int(os.environ.get("PORT", "8100")),
            db_path=os.environ.get("PRODUCT_DB", "product.sqlite3"),
            sync_seconds=float(os.environ.get("PRODUCT_SYNC_SECONDS", "5")),
            access_poll_seconds=float(os.environ.get("PRODUCT_ACCESS_POLL_SECONDS", "0")),
        )


class Product:
    """The product's work outside requests: pushing accounts, reporting activity, confirming
    session revocations. A background thread runs it every `sync_seconds`, and at once when
    kicked (a sign-up, a revocation to confirm)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.db_path)
        self.janitor = JanitorClient(config.janitor_url, config.janitor_token)
        self.receiver = (
            EventReceiver(
                store=self.store, secret=config.webhook_secret, janitor_url=config.janitor_url
            )
            if config.webhook_secret
            else None
        )
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._last_poll = 0.0

    def kick(self) -> None:
        self._kick.set()

    def run_background(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, name="janitor-sync", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sync_once()
            self._kick.wait(self.config.sync_seconds)
            self._kick.clear()

    def sync_once(self) -> None:
        if not self.config.janitor_token:
            return
        steps = [
            self.confirmations_send,
            self.accounts_push,
            self.activity_send,
            self.members_refresh_due,
        ]
        poll = self.config.access_poll_seconds
        if poll > 0 and time.monotonic() - self._last_poll >= poll:
            self._last_poll = time.monotonic()
            steps.append(self.access_catch_up)
        for step in steps:
            try:
                step()
            except JanitorUnreachable as error:
                log(f"Janitor unreachable, will retry: {error}")
            except Exception as error:  # keep the loop alive; say what broke
                log(f"{step.__name__} failed: {error.__class__.__name__}: {error}")

    # --- accounts -----------------------------------------------------------------------------

    def accounts_push(self) -> int:
        """PUT every account changed since its last push, with its members. Returns how many
        Janitor took."""
        pushed = 0
        with self.store.connect() as db:
            accounts = self.store.accounts_to_push(db)
            work = [(a, self.store.members_of(db, a["public_id"])) for a in accounts]
        for account, members in work:
            answer = self.janitor.account_put(dict(account), [dict(m) for m in members])
            error = ""
            if answer.status >= 500:
                log(f"push {account['public_id']}: Janitor answered {answer.status}, will retry")
                continue
            if answer.status >= 400:
                # Refused (a bad email, a Stripe id taken...): kept until the account changes.
                error = json.dumps(answer.body)[:1000]
                log(f"push {account['public_id']} refused ({answer.status}): {error}")
            else:
                pushed += 1
            with self.store.write() as db:
                db.execute(
                    "UPDATE accounts SET pushed_revision = ?, push_error = ? WHERE public_id = ?",
                    (account["revision"], error, account["public_id"]),
                )
        return pushed

    # --- activity -----------------------------------------------------------------------------

    def activity_send(self) -> int:
        """Report unsent activity in batches; Janitor dedupes on the product's own event id, so
        a batch resent after a lost answer is stored once. Events Janitor refuses (it lists
        them by index) are set aside with the reason and the rest sent again; a batch too
        large for it (413) is halved."""
        sent = 0
        batch = ACTIVITY_BATCH
        # Events of members Janitor does not know yet (their account's push is still to come,
        # or failed this time): left out of this round only, and sent again on the next.
        later: set[str] = set()
        while True:
            with self.store.connect() as db:
                rows = self.store.activity_unsent(db, batch, leave_out=later)
            if not rows:
                return sent
            events = [
                {
                    "id": row["id"],
                    "account": row["member_id"],
                    "occurred_at": row["occurred_at"],
                    "kind": row["kind"],
                    "path": row["path"],
                    "ip": row["ip"],
                    "user_agent": row["user_agent"],
                }
                for row in rows
            ]
            answer = self.janitor.activity_post(events)
            if answer.status == 413 and batch > 1:
                batch = max(1, batch // 2)
                continue
            refused = self._activity_refused(answer, rows)
            if refused:
                unknown = {
                    event_id for event_id, why in refused.items() if "no such account" in why
                }
                later |= unknown
                kept = {k: v for k, v in refused.items() if k not in unknown}
                log(
                    f"activity: Janitor refused {len(refused)} event(s) ({len(unknown)} of "
                    "members it does not know yet, sent again next round); the rest go again"
                )
                if kept:
                    with self.store.write() as db:
                        self.store.activity_refuse(db, kept, now_iso())
                continue
            if answer.status != 200:
                log(f"activity refused ({answer.status}): {json.dumps(answer.body)[:500]}")
                return sent
            with self.store.write() as db:
                db.executemany(
                    "UPDATE activity_outbox SET sent_at = ? WHERE id = ?",
                    [(now_iso(), row["id"]) for row in rows],
                )
            sent += len(rows)

    @staticmethod
    def _activity_refused(answer: Any, rows: list[dict[str, Any]]) -> dict[str, str]:
        """The events a 400 lists by index, with why: {event id: reason}."""
        if answer.status != 400 or not isinstance(answer.body, dict):
            return {}
        refused: dict[str, str] = {}
        for item in answer.body.get("errors") or []:
            index = item.get("index") if isinstance(item, dict) else None
            if isinstance(index, int) and 0 <= index < len(rows):
                refused[rows[index]["id"]] = json.dumps(item.get("errors"))[:500]
        return refused

    # --- the access feed ----------------------------------------------------------------------

    def access_catch_up(self) -> int:
        """Page through Janitor's access changes from the stored cursor and hold each account's
        newest state (a change no newer than the version held is skipped). A member's own switch
        is not in the feed: after a member change, or a version that skips some, the account's
        members are asked one by one (GET /api/v1/access/<member>). Returns the changes taken."""
        taken = 0
        while True:
            with self.store.connect() as db:
                cursor = self.store.meta_get(db, "access_cursor")
            answer = self.janitor.access_changes(cursor)
            changes = answer.body.get("changes")
            if answer.status == 410 and answer.body.get("code") == "cursor_expired":
                # Janitor purged changes this cursor had not read yet: read every account
                # afresh, then follow the feed again from the oldest change it keeps.
                log("access feed cursor expired: reading every account again")
                if not self.access_resync():
                    return taken
                continue
            if answer.status != 200 or not isinstance(changes, list):
                log(f"access feed refused ({answer.status}): {json.dumps(answer.body)[:300]}")
                return taken
            members_to_ask: set[str] = set()
            with self.store.write() as db:
                for change in changes:
                    account = self.store.account(db, str(change.get("account")))
                    if account is None or not isinstance(change.get("version"), int):
                        continue
                    if change["version"] > account["access_version"]:
                        held = int(account["access_version"])
                        self.store.access_take(db, account["public_id"], change)
                        taken += 1
                        # A member change, or versions skipped (changes of overlapping
                        # transactions can come higher version first, and the lower one is
                        # then dropped): ask about each member.
                        if change["version"] > held + 1 or str(change.get("event", "")).startswith(
                            "access.member_"
                        ):
                            members_to_ask.update(
                                m["public_id"]
                                for m in self.store.members_of(db, account["public_id"])
                            )
                if answer.body.get("next_cursor"):
                    self.store.meta_set(db, "access_cursor", str(answer.body["next_cursor"]))
            for member_id in sorted(members_to_ask):
                self.member_refresh(member_id)
            if not answer.body.get("has_more"):
                return taken

    def access_resync(self) -> bool:
        """Hold each account's and member's access as Janitor has it now and forget the feed's
        cursor (GET /api/v1/access/<id> each). False when Janitor did not answer for one: the
        cursor stays, and the next poll tries again."""
        with self.store.connect() as db:
            accounts = [row["public_id"] for row in db.execute("SELECT public_id FROM accounts")]
        for account_id in accounts:
            answer = self.janitor.access_get(account_id)
            if answer.status == 404:
                continue  # not pushed to Janitor yet: nothing to hold
            if answer.status != 200 or not isinstance(answer.body.get("version"), int):
                log(f"access of {account_id}: {answer.status} {json.dumps(answer.body)[:200]}")
                return False
            with self.store.write() as db:
                held = self.store.account(db, account_id)
                if held is not None and answer.body["version"] >= held["access_version"]:
                    self.store.access_take(db, account_id, answer.body)
                members = [m["public_id"] for m in self.store.members_of(db, account_id)]
            if not all([self.member_refresh(member) for member in members]):
                return False
        with self.store.write() as db:
            db.execute("DELETE FROM meta WHERE key = 'access_cursor'")
        return True

    def members_refresh_due(self) -> int:
        """Ask Janitor about each member of the accounts whose events skipped versions."""
        with self.store.connect() as db:
            accounts = [
                row["account"] for row in db.execute("SELECT account FROM members_to_refresh")
            ]
            work = {a: [m["public_id"] for m in self.store.members_of(db, a)] for a in accounts}
        done = 0
        for account, members in work.items():
            if all([self.member_refresh(member) for member in members]):
                with self.store.write() as db:
                    db.execute("DELETE FROM members_to_refresh WHERE account = ?", (account,))
                done += 1
        return done

    def member_refresh(self, member_id: str) -> bool:
        """Hold the member's own switch as Janitor has it. False when Janitor did not say."""
        answer = self.janitor.access_get(member_id)
        enabled = answer.body.get("member_is_active")
        if answer.status == 404:
            return True  # Janitor does not know the member (not pushed yet): nothing to hold
        if answer.status != 200 or not isinstance(enabled, bool):
            log(f"access of {member_id}: {answer.status} {json.dumps(answer.body)[:200]}")
            return False
        with self.store.write() as db:
            db.execute(
                "UPDATE members SET is_enabled = ? WHERE public_id = ?", (int(enabled), member_id)
            )
            if not enabled:
                self.store.sessions_delete_for_members(db, [member_id])
        return True

    # --- session revocations ----------------------------------------------------------------

    def confirmations_send(self) -> int:
        """Tell Janitor which session revocations are done. A 404 or 409 means Janitor no longer
        waits for this one (unknown, or the revocation failed or finished): closed, not retried.
        Anything else is retried with backoff."""
        confirmed = 0
        now = datetime.now(UTC)
        with self.store.connect() as db:
            due = [
                dict(row)
                for row in db.execute(
                    "SELECT * FROM confirmations WHERE confirmed_at IS NULL AND closed_at IS NULL"
                    " AND next_attempt_at <= ? ORDER BY created_at",
                    (now_iso(),),
                )
            ]
        for row in due:
            try:
                answer = self.janitor.revocation_confirm(row["confirm_url"], row["sessions_ended"])
                error = "" if answer.status < 300 else f"{answer.status} {answer.body}"
            except JanitorUnreachable as exc:
                answer, error = None, str(exc)
            with self.store.write() as db:
                if answer is not None and answer.status < 300:
                    db.execute(
                        "UPDATE confirmations SET confirmed_at = ?, attempts = attempts + 1,"
                        " last_error = '' WHERE webhook_id = ?",
                        (now_iso(), row["webhook_id"]),
                    )
                    confirmed += 1
                    log(f"revocation {row['revocation']} confirmed: {answer.body}")
                elif answer is not None and answer.status in (404, 409):
                    db.execute(
                        "UPDATE confirmations SET closed_at = ?, attempts = attempts + 1,"
                        " last_error = ? WHERE webhook_id = ?",
                        (now_iso(), error[:1000], row["webhook_id"]),
                    )
                    log(f"revocation {row['revocation']} no longer waits: {error}")
                else:
                    delay = min(2 ** row["attempts"], CONFIRM_BACKOFF_MAX_SECONDS)
                    later = (now + timedelta(seconds=delay)).isoformat().replace("+00:00", "Z")
                    db.execute(
                        "UPDATE confirmations SET attempts = attempts + 1, last_error = ?,"
                        " next_attempt_at = ? WHERE webhook_id = ?",
                        (error[:1000], later, row["webhook_id"]),
                    )
                    log(f"confirming revocation {row['revocation']} failed, retrying: {error}")
        return confirmed

    # --- users --------------------------------------------------------------------------------

    def user_create(
        self,
        *,
        email: str,
        password: str,
        name: str = "",
        account_id: str | None = None,
        account_email: str | None = None,
        account_name: str = "",
        stripe_customer_id: str = "",
    ) -> dict[str, str]:
        """A member, in `account_id` (made if new) or in an account of their own."""
        member_id = new_id("mem")
        with self.store.write() as db:
            account_id = account_id or new_id("acct")
            if self.store.account(db, account_id) is None:
                self.store.account_create(
                    db,
                    public_id=account_id,
                    email=account_email or email,
                    name=account_name or name,
                    stripe_customer_id=stripe_customer_id,
                )
            self.store.member_create(
                db,
                public_id=member_id,
                account_id=account_id,
                email=email,
                password=password,
                name=name,
            )
        return {"account": account_id, "member": member_id}


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(title)} · Example product</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode()


LOGIN_FORM = """
<form method=post action=/login>
  <label>Email <input name=email type=email required value="{email}"></label>
  <label>Password <input name=password type=password required></label>
  <button type=submit>Sign in</button>
</form>
<p><a href=/signup>Create an account</a></p>"""

SIGNUP_FORM = """
<form method=post action=/signup>
  <label>Name <input name=name value="{name}"></label>
  <label>Company <input name=company value="{company}"></label>
  <label>Email <input name=email type=email required value="{email}"></label>
  <label>Password (8+ characters) <input name=password type=password required></label>
  <button type=submit>Create account</button>
</form>"""


def _access_refusal(status: str) -> str:
    if status == "revoked":
        return "Your account's access has been revoked. Contact billing to restore it."
    if status == "revoked_pending":
        return "Your account's access is being revoked."
    return "Your account has no access at the moment."


class Handler(BaseHTTPRequestHandler):
    server_version = "ExampleProduct/1.0"
    product: Product  # set on the class by serve()

    def log_message(self, format: str, *args: Any) -> None:
        log(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}")

    # --- plumbing -----------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: dict[str, Any]) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _redirect(self, location: str, headers: dict[str, str] | None = None) -> None:
        self._send(303, b"", headers={"Location": location, **(headers or {})})

    def _body(self, limit: int) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0 or length > limit:
            return None
        return self.rfile.read(length)

    def _form(self) -> dict[str, str] | None:
        raw = self._body(MAX_FORM_BYTES)
        if raw is None:
            return None
        parsed = urllib.parse.parse_qs(raw.decode("utf-8", "replace"))
        return {key: values[0].strip() for key, values in parsed.items()}

    def _cookie(self) -> str | None:
        jar = cookies.SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except cookies.CookieError:
            return None
        morsel = jar.get(SESSION_COOKIE)
        return morsel.value if morsel else None

    def _session_cookie(self, raw: str) -> dict[str, str]:
        return {"Set-Cookie": f"{SESSION_COOKIE}={raw}; Path=/; HttpOnly; SameSite=Lax"}

    def _clear_cookie(self) -> dict[str, str]:
        return {"Set-Cookie": f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"}

    # --- routes -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/healthz":
            self._json(200, {"ok": True})
        elif path == "/login":
            self._send(200, _page("Sign in", LOGIN_FORM.format(email="")))
        elif path == "/signup":
            self._send(200, _page("Create an account", SIGNUP_FORM.format(**_blank_signup())))
        elif path == "/":
            self._home()
        else:
            self._send(404, _page("Not found", "<p>No such page.</p>"))

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/janitor/events":
            self._janitor_event()
        elif path == "/login":
            self._login()
        elif path == "/logout":
            self._logout()
        elif path == "/signup":
            self._signup()
        else:
            self._send(404, _page("Not found", "<p>No such page.</p>"))

    def _member(self) -> tuple[Any, str | None]:
        """(the signed-in member row, the refusal) for this request's session. A member whose
        account lost access (or who was disabled) is signed out here, on their next request."""
        raw = self._cookie()
        if not raw:
            return None, None
        store = self.product.store
        with store.connect() as db:
            member = store.session_member(db, raw)
        if member is None:
            return None, None
        if member["is_enabled"] and member["grants_access"]:
            return member, None
        with store.write() as db:
            store.session_delete(db, raw)
        refusal = (
            _access_refusal(member["status"])
            if not member["grants_access"]
            else "Your membership of this account is disabled."
        )
        return None, refusal

    def _home(self) -> None:
        member, refusal = self._member()
        if member is None:
            if refusal:
                body = f"<p role=alert>{html.escape(refusal)}</p>" + LOGIN_FORM.format(email="")
                self._send(403, _page("Signed out", body), headers=self._clear_cookie())
            else:
                self._redirect("/login")
            return
        store = self.product.store
        with store.write() as db:
            store.activity_record(
                db,
                member_id=member["public_id"],
                kind="request",
                path=self.path,
                ip=self.client_address[0],
                user_agent=self.headers.get("User-Agent", ""),
            )
        notice = ""
        if member["status"] == "grace_period":
            notice = (
                "<p role=status>Your last payment did not go through: access continues until "
                f"{html.escape(member['grace_ends_at'] or '')}. Please update your card.</p>"
            )
        body = (
            f"<p>Signed in as {html.escape(member['email'])}"
            f" (account {html.escape(member['account_id'])}).</p>{notice}"
            "<form method=post action=/logout><button>Sign out</button></form>"
        )
        self._send(200, _page("Welcome", body))

    def _login(self) -> None:
        form = self._form()
        if form is None:
            self._send(400, _page("Sign in", "<p role=alert>The form is too large.</p>"))
            return
        email = form.get("email", "")
        store = self.product.store
        with store.connect() as db:
            member = store.member_by_email(db, email)
            account = store.account(db, member["account_id"]) if member else None
        if member is None or not password_check(form.get("password", ""), member["password_hash"]):
            body = "<p role=alert>Wrong email or password.</p>" + LOGIN_FORM.format(
                email=html.escape(email)
            )
            self._send(401, _page("Sign in", body))
            return
        assert account is not None
        if not account["grants_access"] or not member["is_enabled"]:
            refusal = (
                _access_refusal(account["status"])
                if not account["grants_access"]
                else "Your membership of this account is disabled."
            )
            body = f"<p role=alert>{html.escape(refusal)}</p>"
            self._send(403, _page("Sign in refused", body))
            return
        with store.write() as db:
            raw = store.session_create(db, member["public_id"])
            store.activity_record(
                db,
                member_id=member["public_id"],
                kind="login",
                path="/login",
                ip=self.client_address[0],
                user_agent=self.headers.get("User-Agent", ""),
            )
        self.product.kick()
        self._redirect("/", self._session_cookie(raw))

    def _logout(self) -> None:
        raw = self._cookie()
        if raw:
            with self.product.store.write() as db:
                self.product.store.session_delete(db, raw)
        self._redirect("/login", self._clear_cookie())

    def _signup(self) -> None:
        form = self._form() or {}
        values = {**_blank_signup(), **{k: html.escape(v) for k, v in form.items()}}
        values.pop("password", None)
        email, password = form.get("email", ""), form.get("password", "")
        problem = None
        if "@" not in email or len(email) > 254:
            problem = "Enter a valid email address."
        elif len(password) < 8:
            problem = "The password needs at least 8 characters."
        else:
            with self.product.store.connect() as db:
                if self.product.store.member_by_email(db, email) is not None:
                    problem = "An account with this email exists: sign in instead."
        if problem:
            body = f"<p role=alert>{html.escape(problem)}</p>" + SIGNUP_FORM.format(**values)
            self._send(400, _page("Create an account", body))
            return
        ids = self.product.user_create(
            email=email,
            password=password,
            name=form.get("name", ""),
            account_name=form.get("company", ""),
        )
        with self.product.store.write() as db:
            raw = self.product.store.session_create(db, ids["member"])
        self.product.kick()  # Janitor hears of the new account now, not at the next tick
        self._redirect("/", self._session_cookie(raw))

    def _janitor_event(self) -> None:
        receiver = self.product.receiver
        if receiver is None:
            self._json(503, {"error": "JANITOR_WEBHOOK_SECRET is not set."})
            return
        body = self._body(MAX_EVENT_BYTES)
        if body is None:
            self._json(413, {"error": f"Send a Content-Length of at most {MAX_EVENT_BYTES}."})
            return
        result = receiver.receive(body, dict(self.headers.items()))
        self._json(result.status, result.body)
        if result.confirmation_queued:
            self.product.kick()


def _blank_signup() -> dict[str, str]:
    return {"name": "", "company": "", "email": ""}


def serve(config: Config) -> None:
    product = Product(config)
    if product.receiver is None:
        log("JANITOR_WEBHOOK_SECRET is not set: /janitor/events answers 503.")
    Handler.product = product
    server = ThreadingHTTPServer((config.host, config.port), Handler)
    server.daemon_threads = True

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    product.run_background()
    port = server.server_address[1]
    print(f"Example product listening on http://{config.host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        product.stop()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An example product beside Janitor.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the web app (the default)")
    create = commands.add_parser("create-user", help="add a member (and their account)")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.add_argument("--name", default="")
    create.add_argument("--account", help="the account's public id (made if new)")
    create.add_argument("--account-email", help="the billing email of a new account")
    create.add_argument("--account-name", default="")
    create.add_argument("--stripe-customer", default="", help="cus_... of a new account")
    commands.add_parser("push", help="push changed accounts to Janitor now")
    args = parser.parse_args(argv)
    config = Config.from_env()
    if args.command == "create-user":
        if len(args.password) < 8:
            parser.error("--password needs at least 8 characters")
        ids = Product(config).user_create(
            email=args.email,
            password=args.password,
            name=args.name,
            account_id=args.account,
            account_email=args.account_email,
            account_name=args.account_name,
            stripe_customer_id=args.stripe_customer,
        )
        print(json.dumps(ids))
        return 0
    if args.command == "push":
        started = time.monotonic()
        pushed = Product(config).accounts_push()
        print(json.dumps({"pushed": pushed, "seconds": round(time.monotonic() - started, 2)}))
        return 0
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
