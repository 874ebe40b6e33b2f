"""Janitor's access events, received at POST /janitor/events: verified with the Standard
Webhooks library, applied once per webhook-id, a stale version dropped, sessions ended on
access.sessions_revoke (and the confirmation queued for Janitor)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from store import Store, now_iso

SESSIONS_REVOKE = "access.sessions_revoke"
MEMBER_DISABLED = "access.member_disabled"
MEMBER_ENABLED = "access.member_enabled"
# Outcomes recorded per webhook-id (webhook_events.outcome).
APPLIED = "applied"
STALE = "stale"  # older than the version held: dropped
UNCHANGED = "unchanged"  # the version already held
UNKNOWN_ACCOUNT = "unknown_account"
SESSIONS_ENDED = "sessions_ended"


@dataclass
class Result:
    status: int
    body: dict[str, Any]
    confirmation_queued: bool = False


def _invalid(message: str) -> Result:
    return Result(400, {"error": message})


def _shape_error(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return "The body must be a JSON object."
    if not isinstance(payload.get("type"), str):
        return "type: required, a string."
    data = payload.get("data")
    if not isinstance(data, dict):
        return "data: required, an object."
    if not isinstance(data.get("account"), str) or not data["account"]:
        return "data.account: required, the account's public id."
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        return "data.version: required, a whole number."
    if payload["type"] == SESSIONS_REVOKE:
        if not isinstance(data.get("confirm_url"), str) or not data.get("revocation"):
            return "data.confirm_url and data.revocation: required for access.sessions_revoke."
    return None


class EventReceiver:
    def __init__(self, *, store: Store, secret: str, janitor_url: str) -> None:
        self.store = store
        # Several secrets, comma-separated, while the endpoint's secret is rotated in Janitor.
        self.webhooks = [Webhook(part.strip()) for part in secret.split(",") if part.strip()]
        self.janitor_url = janitor_url.rstrip("/")

    def receive(self, body: bytes, headers: dict[str, str]) -> Result:
        """Verify, then apply once. 401: not signed by Janitor (or altered, or older than five
        minutes: the library's tolerance, which also refuses a replay of an old capture)."""
        payload: Any = None
        refusal: WebhookVerificationError | None = None
        for webhook in self.webhooks:
            try:
                payload = webhook.verify(body, headers)
            except WebhookVerificationError as error:
                refusal = refusal or error
                continue
            except (ValueError, UnicodeDecodeError):
                return _invalid("The body is not JSON.")
            refusal = None
            break
        if refusal is not None or not self.webhooks:
            return Result(401, {"error": f"Signature check failed: {refusal}."})
        problem = _shape_error(payload)
        if problem:
            return _invalid(problem)
        webhook_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        if payload["type"] == SESSIONS_REVOKE and not self._trusted_confirm_url(
            payload["data"]["confirm_url"]
        ):
            # The token goes with the confirmation: never to an address that is not Janitor's.
            return _invalid(f"data.confirm_url is not under {self.janitor_url}/.")
        with self.store.write() as db:
            seen = db.execute(
                "SELECT outcome FROM webhook_events WHERE webhook_id = ?", (webhook_id,)
            ).fetchone()
            if seen is not None:
                return Result(200, {"result": "duplicate", "outcome": seen["outcome"]})
            outcome, extra = self._apply(db, webhook_id, payload)
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM webhook_events").fetchone()[0]
            db.execute(
                "INSERT INTO webhook_events"
                " (webhook_id, type, account, version, outcome, received_at, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    webhook_id,
                    payload["type"],
                    payload["data"]["account"],
                    payload["data"]["version"],
                    outcome,
                    now_iso(),
                    seq,
                ),
            )
        return Result(
            200, {"result": outcome, **extra}, confirmation_queued=outcome == SESSIONS_ENDED
        )

    def _trusted_confirm_url(self, url: str) -> bool:
        return url.startswith(self.janitor_url + "/")

    def _apply(
        self, db: sqlite3.Connection, webhook_id: str, payload: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        data = payload["data"]
        account = self.store.account(db, data["account"])
        if payload["type"] == SESSIONS_REVOKE:
            return self._sessions_revoke(db, webhook_id, data, account)
        if account is None:
            # Janitor knows an account this product does not (e.g. imported by file): nothing
            # here to apply it to. Acknowledged, so Janitor does not retry it for three days.
            return UNKNOWN_ACCOUNT, {}
        held = int(account["access_version"])
        newer = data["version"] > held
        if data["version"] < held:
            return STALE, {"held_version": held}
        if not newer:
            return UNCHANGED, {}
        self.store.access_take(db, account["public_id"], data)
        if data["version"] > held + 1:
            # Versions skipped: Janitor superseded events this product never saw. The account's
            # state is whole in this one, but a member's own switch travels only in member
            # events: the background thread asks Janitor about each member.
            db.execute(
                "INSERT OR IGNORE INTO members_to_refresh (account, since) VALUES (?, ?)",
                (account["public_id"], now_iso()),
            )
        if payload["type"] in (MEMBER_DISABLED, MEMBER_ENABLED) and data.get("member"):
            enabled = payload["type"] == MEMBER_ENABLED
            db.execute(
                "UPDATE members SET is_enabled = ? WHERE public_id = ? AND account_id = ?",
                (int(enabled), data["member"], account["public_id"]),
            )
            if not enabled:
                self.store.sessions_delete_for_members(db, [data["member"]])
        # Access gone (revocation pending, revoked): every request of the account's members is
        # refused from now on (Handler._member reads this state and ends the session there);
        # access.sessions_revoke then ends every session at once and says how many.
        return APPLIED, {}

    def _sessions_revoke(
        self,
        db: sqlite3.Connection,
        webhook_id: str,
        data: dict[str, Any],
        account: sqlite3.Row | None,
    ) -> tuple[str, dict[str, Any]]:
        """An instruction, not only a state: carried out and confirmed whatever the version,
        since Janitor waits for it (it shares the version of the revocation_pending before it).
        Its state is taken only when newer. An account this product does not know has no
        sessions here: confirmed with 0, so the revocation does not wait for nothing."""
        ended = 0
        if account is not None:
            if data["version"] > int(account["access_version"]):
                self.store.access_take(db, account["public_id"], data)
            ended = self.store.sessions_delete_for_account(db, account["public_id"])
        db.execute(
            "INSERT INTO confirmations (webhook_id, revocation, account, confirm_url,"
            " sessions_ended, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                webhook_id,
                str(data["revocation"]),
                data["account"],
                data["confirm_url"],
                ended,
                now_iso(),
                now_iso(),
            ),
        )
        return SESSIONS_ENDED, {"sessions_ended": ended}
