"""Run the example product (examples/product/app.py) as its own process, and talk to it over
HTTP: sign in with its form, send it Janitor events signed with the standardwebhooks library,
read its SQLite file to see what it holds."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "product" / "app.py"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # any base64: a test-only secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], *, seconds: float = 15, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(NoRedirect)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def http(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _opener.open(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read().decode())


def signed_headers(
    body: bytes, *, webhook_id: str, secret: str = SECRET, at: datetime | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers as Janitor sends them, signed by the library."""
    at = at or datetime.now(UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }


def event_payload(
    event_type: str,
    account: str,
    version: int,
    *,
    status: str = "active",
    grants_access: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "type": event_type,
        "timestamp": now,
        "data": {
            "account": account,
            "status": status,
            "is_active": status != "revoked",
            "grants_access": grants_access,
            "grace_ends_at": extra.pop("grace_ends_at", None),
            "version": version,
            "changed_at": now,
            **extra,
        },
    }


@dataclass
class ProductProcess:
    """examples/product/app.py on its own port with its own SQLite file."""

    db_path: Path
    janitor_url: str
    janitor_token: str = "jan_test_token"
    secret: str = SECRET
    port: int = field(default_factory=free_port)
    sync_seconds: float = 0.2
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return f"{self.url}/janitor/events"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "JANITOR_URL": self.janitor_url,
            "JANITOR_TOKEN": self.janitor_token,
            "JANITOR_WEBHOOK_SECRET": self.secret,
            "PORT": str(self.port),
            "PRODUCT_DB": str(self.db_path),
            "PRODUCT_SYNC_SECONDS": str(self.sync_seconds),
            **self.extra_env,
        }

    def cli(self, *args: str) -> Any:
        done = subprocess.run(
            [sys.executable, str(APP), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def start(self) -> ProductProcess:
        self.log_path = self.db_path.with_suffix(f".{int(time.time() * 1000)}.log")
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(APP), "serve"], env=self.env(), stdout=log, stderr=log
        )
        log.close()

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the product exited:\n{self.log()}")
            try:
                return http("GET", f"{self.url}/healthz", timeout=1).status == 200
            except OSError:
                return False

        wait_for(up, seconds=30, what="the example product to answer /healthz")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    # --- as a user ----------------------------------------------------------------------------

    def sign_in(self, email: str, password: str) -> tuple[Reply, str | None]:
        """POST the sign-in form: the reply and the session cookie it set (or None)."""
        body = urllib.parse.urlencode({"email": email, "password": password}).encode()
        reply = http(
            "POST",
            f"{self.url}/login",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        cookie = reply.headers.get("Set-Cookie", "")
        session = cookie.split(";")[0].split("=", 1)[1] if cookie.startswith("product_") else None
        return reply, session or None

    def home(self, session: str) -> Reply:
        return http("GET", f"{self.url}/", headers={"Cookie": f"product_session={session}"})

    # --- as Janitor ---------------------------------------------------------------------------

    def send_event(
        self,
        payload: dict[str, Any],
        *,
        webhook_id: str,
        at: datetime | None = None,
        secret: str | None = None,
        alter: Callable[[bytes], bytes] | None = None,
    ) -> Reply:
        body = json.dumps(payload).encode()
        headers = signed_headers(body, webhook_id=webhook_id, secret=secret or self.secret, at=at)
        if alter is not None:
            body = alter(body)
        return http("POST", self.events_url, body=body, headers=headers)

    # --- what it holds ------------------------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        db = sqlite3.connect(self.db_path, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in db.execute(sql, params)]
        finally:
            db.close()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeJanitor:
    """A tiny HTTP server standing in for Janitor's API: records every request and answers with
    the statuses queued per path prefix (200 {} when none is queued)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                path = self.path
                with fake.lock:
                    fake.requests.append(Recorded(self.command, path, dict(self.headers), body))
                    status, reply = 200, {}
                    for prefix, queue in fake.replies.items():
                        if path.startswith(prefix) and queue:
                            status, reply = queue.pop(0)
                            break
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeJanitor:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reply(self, prefix: str, *answers: tuple[int, dict[str, Any]]) -> None:
        with self.lock:
            self.replies.setdefault(prefix, []).extend(answers)

    def to(self, method: str, prefix: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]
