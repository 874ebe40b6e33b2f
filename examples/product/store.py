"""The example product's own storage: one SQLite file for its accounts, members, sessions, the
Janitor events it has processed, the confirmations it owes and the activity it has yet to send."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    public_id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    stripe_customer_id TEXT NOT NULL DEFAULT '',
    -- Access as Janitor last said (a new account may sign in until Janitor says otherwise).
    status TEXT NOT NULL DEFAULT 'active',
    is_active INTEGER NOT NULL DEFAULT 1,
    grants_access INTEGER NOT NULL DEFAULT 1,
    grace_ends_at TEXT,
    access_version INTEGER NOT NULL DEFAULT 0,
    access_changed_at TEXT,
    -- Pushing to Janitor: every local change bumps revision; the pusher records what it sent.
    revision INTEGER NOT NULL DEFAULT 1,
    pushed_revision INTEGER NOT NULL DEFAULT 0,
    push_error TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    public_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(public_id),
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    is_enabled INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    member_id TEXT NOT NULL REFERENCES members(public_id),
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_member ON sessions(member_id);
-- Every Janitor event processed, by webhook-id: a redelivery is recognised and applied once.
CREATE TABLE IF NOT EXISTS webhook_events (
    webhook_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    account TEXT NOT NULL,
    version INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    received_at TEXT NOT NULL,
    seq INTEGER NOT NULL
);
-- Session revocations whose sessions are gone, to confirm to Janitor (retried until answered).
CREATE TABLE IF NOT EXISTS confirmations (
    webhook_id TEXT PRIMARY KEY,
    revocation TEXT NOT NULL,
    account TEXT NOT NULL,
    confirm_url TEXT NOT NULL,
    sessions_ended INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    confirmed_at TEXT,
    -- Janitor answered that it no longer waits for this (404/409): nothing left to do.
    closed_at TEXT
);
-- Activity not yet reported to Janitor; the product's own id makes a resend harmless.
CREATE TABLE IF NOT EXISTS activity_outbox (
    id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL DEFAULT '',
    ip TEXT,
    user_agent TEXT NOT NULL DEFAULT '',
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS activity_unsent ON activity_outbox(sent_at);
-- Activity Janitor refused (its member unknown there, say): kept with the reason, not resent,
-- so one bad event never holds back everyone else's.
CREATE TABLE IF NOT EXISTS activity_refused (
    id TEXT PRIMARY KEY,
    error TEXT NOT NULL,
    refused_at TEXT NOT NULL
);
-- Accounts whose members' own switches must be asked about: a member event may have been
-- superseded (a gap in versions), and events carry only the account's state.
CREATE TABLE IF NOT EXISTS members_to_refresh (
    account TEXT PRIMARY KEY,
    since TEXT NOT NULL
);
-- Small state of its own: the access feed's cursor.
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

PASSWORD_ITERATIONS = 120_000


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    # Janitor's public id alphabet: letters, digits, "-", "_" and "."; at most 64 characters.
    return f"{prefix}-{secrets.token_hex(6)}"


def password_hash(password: str, *, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), PASSWORD_ITERATIONS)
    return f"pbkdf2_sha256${PASSWORD_ITERATIONS}${salt}${digest.hex()}"


def password_check(password: str, stored: str) -> bool:
    try:
        _, iterations, salt, expected = stored.split("$")
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(digest.hex(), expected)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class Store:
    """One connection per call (the web server is threaded); SQLite serialises the writers."""

    def __init__(self, path: str) -> None:
        self.path = path
        with self.connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once (BEGIN IMMEDIATE): read-then-write decisions such
        as "seen this webhook-id?" are made under the lock, so two deliveries cannot both win."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- accounts and members --------------------------------------------------------------

    def account_create(
        self,
        db: sqlite3.Connection,
        *,
        public_id: str,
        email: str,
        name: str = "",
        stripe_customer_id: str = "",
    ) -> None:
        db.execute(
            "INSERT INTO accounts (public_id, email, name, stripe_customer_id, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (public_id, email, name, stripe_customer_id, now_iso()),
        )

    def member_create(
        self,
        db: sqlite3.Connection,
        *,
        public_id: str,
        account_id: str,
        email: str,
        password: str,
        name: str = "",
    ) -> None:
        db.execute(
            "INSERT INTO members (public_id, account_id, email, name, password_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (public_id, account_id, email, name, password_hash(password), now_iso()),
        )
        # The account's member list changed: Janitor hears of it on the next push.
        db.execute("UPDATE accounts SET revision = revision + 1 WHERE public_id = ?", (account_id,))

    def account(self, db: sqlite3.Connection, public_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM accounts WHERE public_id = ?", (public_id,)
        ).fetchone()
        return row

    def member_by_email(self, db: sqlite3.Connection, email: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM members WHERE email = ?", (email,)
        ).fetchone()
        return row

    def members_of(self, db: sqlite3.Connection, account_id: str) -> list[sqlite3.Row]:
        return list(
            db.execute(
                "SELECT * FROM members WHERE account_id = ? ORDER BY created_at, public_id",
                (account_id,),
            )
        )

    def accounts_to_push(self, db: sqlite3.Connection, limit: int = 100) -> list[sqlite3.Row]:
        return list(
            db.execute(
                "SELECT * FROM accounts WHERE pushed_revision < revision ORDER BY created_at"
                " LIMIT ?",
                (limit,),
            )
        )

    def access_take(self, db: sqlite3.Connection, account_id: str, state: dict[str, Any]) -> None:
        """Hold `state` (an event's data, or a change of the access feed) as the account's
        access. The caller has checked that its version is newer than the one held."""
        db.execute(
            "UPDATE accounts SET status = ?, is_active = ?, grants_access = ?, grace_ends_at = ?,"
            " access_version = ?, access_changed_at = ? WHERE public_id = ?",
            (
                str(state.get("status", "active")),
                int(bool(state.get("is_active", True))),
                int(bool(state.get("grants_access", True))),
                state.get("grace_ends_at"),
                state["version"],
                state.get("changed_at", state.get("at")),
                account_id,
            ),
        )

    def meta_get(self, db: sqlite3.Connection, key: str) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row["value"]) if row else None

    def meta_set(self, db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # --- sessions ---------------------------------------------------------------------------

    def session_create(self, db: sqlite3.Connection, member_id: str) -> str:
        raw = secrets.token_urlsafe(32)
        db.execute(
            "INSERT INTO sessions (token_hash, member_id, created_at) VALUES (?, ?, ?)",
            (token_hash(raw), member_id, now_iso()),
        )
        return raw

    def session_member(self, db: sqlite3.Connection, raw: str) -> sqlite3.Row | None:
        """The signed-in member with their account's access, or None."""
        row: sqlite3.Row | None = db.execute(
            "SELECT m.*, a.status, a.grants_access, a.grace_ends_at, a.name AS account_name"
            " FROM sessions s JOIN members m ON m.public_id = s.member_id"
            " JOIN accounts a ON a.public_id = m.account_id WHERE s.token_hash = ?",
            (token_hash(raw),),
        ).fetchone()
        return row

    def session_delete(self, db: sqlite3.Connection, raw: str) -> None:
        db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash(raw),))

    def sessions_delete_for_members(self, db: sqlite3.Connection, member_ids: list[str]) -> int:
        if not member_ids:
            return 0
        marks = ",".join("?" * len(member_ids))
        cursor = db.execute(f"DELETE FROM sessions WHERE member_id IN ({marks})", member_ids)
        return int(cursor.rowcount)

    def sessions_delete_for_account(self, db: sqlite3.Connection, account_id: str) -> int:
        cursor = db.execute(
            "DELETE FROM sessions WHERE member_id IN"
            " (SELECT public_id FROM members WHERE account_id = ?)",
            (account_id,),
        )
        return int(cursor.rowcount)

    # --- activity ---------------------------------------------------------------------------

    def activity_record(
        self,
        db: sqlite3.Connection,
        *,
        member_id: str,
        kind: str,
        path: str = "",
        ip: str | None = None,
        user_agent: str = "",
    ) -> None:
        db.execute(
            "INSERT INTO activity_outbox (id, member_id, occurred_at, kind, path, ip, user_agent)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (new_id("act"), member_id, now_iso(), kind, path[:500], ip, user_agent[:500]),
        )

    def activity_unsent(
        self, db: sqlite3.Connection, limit: int = 1000, leave_out: set[str] | None = None
    ) -> list[dict[str, Any]]:
        """The oldest unsent activity, but for what Janitor refused and the ids left out."""
        rows = db.execute(
            "SELECT * FROM activity_outbox WHERE sent_at IS NULL"
            " AND id NOT IN (SELECT id FROM activity_refused) ORDER BY occurred_at",
        )
        wanted: list[dict[str, Any]] = []
        for row in rows:
            if leave_out and row["id"] in leave_out:
                continue
            wanted.append(dict(row))
            if len(wanted) == limit:
                break
        return wanted

    def activity_refuse(self, db: sqlite3.Connection, refused: dict[str, str], at: str) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO activity_refused (id, error, refused_at) VALUES (?, ?, ?)",
            [(event_id, error, at) for event_id, error in refused.items()],
        )
