"""Calls from the product to Janitor's API (/api/v1/...), bearer-token authenticated."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

TIMEOUT_SECONDS = 10


class JanitorUnreachable(Exception):
    """No HTTP answer at all (connection refused, timeout): worth retrying later."""


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


class JanitorClient:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Answer:
        """One request; any HTTP answer (2xx or not) is returned, no answer raises."""
        if not url.startswith(("http://", "https://")):
            url = self.base_url + url
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return Answer(response.status, _json(response.read()))
        except urllib.error.HTTPError as error:
            return Answer(error.code, _json(error.read()))
        except (urllib.error.URLError, OSError) as error:
            raise JanitorUnreachable(f"{method} {url}: {error}") from error

    def account_put(self, account: dict[str, Any], members: list[dict[str, Any]]) -> Answer:
        """PUT /api/v1/accounts/<account public id>: upsert the account and its members."""
        body: dict[str, Any] = {
            "email": account["email"],
            "name": account["name"],
            "members": [
                {"public_id": m["public_id"], "email": m["email"], "name": m["name"]}
                for m in members
            ],
        }
        if account["stripe_customer_id"]:
            body["stripe_customer_id"] = account["stripe_customer_id"]
        return self.call("PUT", f"/api/v1/accounts/{account['public_id']}", body)

    def activity_post(self, events: list[dict[str, Any]]) -> Answer:
        """POST /api/v1/activity: {"events": [{"id", "account" (a member's public id),
        "occurred_at", "kind", "path", "ip", "user_agent"}]}."""
        return self.call("POST", "/api/v1/activity", {"events": events})

    def access_changes(self, cursor: str | None, limit: int = 500) -> Answer:
        """GET /api/v1/access?changed_since=<cursor>: the next page of access changes."""
        query = {"limit": str(limit)}
        if cursor:
            query["changed_since"] = cursor
        return self.call("GET", "/api/v1/access?" + urllib.parse.urlencode(query))

    def access_get(self, public_id: str) -> Answer:
        """GET /api/v1/access/<member or account public id>."""
        return self.call("GET", f"/api/v1/access/{urllib.parse.quote(public_id, safe='')}")

    def revocation_confirm(self, confirm_url: str, sessions_ended: int) -> Answer:
        return self.call("POST", confirm_url, {"sessions_ended": sessions_ended})


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"error": raw[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"value": value}
