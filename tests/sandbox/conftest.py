"""A Sandbox on a random loopback port, delivering webhooks to the live server, with the
gateway pointed at it: the demo's wiring (sandbox/wiring.py) inside one test process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reconciliation.gateway import request_rate_reset
from sandbox import SANDBOX_API_KEY, SANDBOX_WEBHOOK_SECRET
from sandbox.provider import Sandbox


@pytest.fixture
def sandbox_live(settings: Any, live_server: Any, tmp_path: Any) -> Iterator[Sandbox]:
    sandbox = Sandbox(
        state_file=tmp_path / "sandbox-state.json",
        webhook_url=f"{live_server.url}/webhooks/stripe/",
        retry_base_seconds=0.05,
        retry_max_seconds=0.5,
    )
    sandbox.serve(port=0)
    settings.STRIPE_API_BASE = sandbox.base_url
    settings.STRIPE_API_KEY = SANDBOX_API_KEY
    settings.STRIPE_WEBHOOK_SECRETS = [SANDBOX_WEBHOOK_SECRET]
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 10
    settings.JANITOR_STRIPE_MAX_RPS = 1000
    request_rate_reset()
    try:
        yield sandbox
    finally:
        sandbox.stop()
        request_rate_reset()


def wait_for(condition: Callable[[], bool], *, seconds: float = 30, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)
