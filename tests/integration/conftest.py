"""localstripe, an independent fake Stripe (PyPI, not written here), for the integration suite.

Started once per session by `localstripe` below as a subprocess of
tests/integration/localstripe_launcher.py (loopback only, no disk dump), emptied before each
test with its own DELETE /_config/data.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).with_name("localstripe_launcher.py")
API_KEY = "sk_test_localstripe"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStripe:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, **form) -> dict:
        from urllib.parse import urlencode

        body = urlencode(_flatten(form)).encode() if form else None
        request = urllib.request.Request(
            self.base_url + path,
            data=body if method != "GET" else None,
            method=method,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else {}

    def flush(self) -> None:
        self.call("DELETE", "/_config/data")

    def add_paying_customer(self, email: str) -> dict:
        token = self.call(
            "POST",
            "/v1/tokens",
            card={
                "number": "4242424242424242",
                "exp_month": "12",
                "exp_year": "2030",
                "cvc": "123",
            },
        )
        return self.call("POST", "/v1/customers", email=email, source=token["id"])

    def subscribe(self, customer_id: str, plan: str = "basic") -> dict:
        return self.call("POST", "/v1/subscriptions", customer=customer_id, items=[{"plan": plan}])

    def cancel(self, subscription_id: str) -> dict:
        return self.call("DELETE", f"/v1/subscriptions/{subscription_id}")


def _flatten(value, prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding: a[b]=..., a[0][b]=..."""
    if isinstance(value, dict):
        items = []
        for key, inner in value.items():
            items += _flatten(inner, f"{prefix}[{key}]" if prefix else key)
        return items
    if isinstance(value, list):
        items = []
        for index, inner in enumerate(value):
            items += _flatten(inner, f"{prefix}[{index}]")
        return items
    return [(prefix, str(value))]


@pytest.fixture(scope="session")
def localstripe_server():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(LAUNCHER), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = LocalStripe(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"localstripe did not start: {process.stderr.read().decode()[-2000:]}"
                ) from None
            time.sleep(0.1)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def localstripe(localstripe_server, settings):
    """localstripe, emptied, with the gateway pointing at it (and retries quick)."""
    localstripe_server.flush()
    settings.STRIPE_API_BASE = localstripe_server.base_url
    settings.STRIPE_API_KEY = API_KEY
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 10
    localstripe_server.call(
        "POST",
        "/v1/plans",
        id="basic",
        amount=1500,
        currency="usd",
        interval="month",
        product={"name": "Basic"},
    )
    return localstripe_server
