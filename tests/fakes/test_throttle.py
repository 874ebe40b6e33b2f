"""The fake's latency and limiters (throttle()): off by default, and refusing beyond them as
Stripe does, with a 429 `rate_limit` error, Stripe-Should-Retry and Retry-After."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.stripe_fake import TEST_API_KEY, StripeFake


@pytest.fixture
def fake() -> Iterator[StripeFake]:
    with StripeFake() as running:
        running.add_subscription("sub_one", customer="cus_one")
        yield running


def _get(fake: StripeFake, path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(
        fake.base_url + path, headers={"Authorization": f"Bearer {TEST_API_KEY}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_by_default_nothing_is_slowed_or_refused(fake: StripeFake) -> None:
    started = time.monotonic()
    statuses = [_get(fake, "/v1/subscriptions?limit=1")[0] for _ in range(50)]
    assert statuses == [200] * 50
    assert time.monotonic() - started < 2
    assert fake.rate_limited == 0


def test_latency_holds_every_answer(fake: StripeFake) -> None:
    fake.throttle(latency=0.2)
    started = time.monotonic()
    assert _get(fake, "/v1/subscriptions/sub_one")[0] == 200
    assert time.monotonic() - started >= 0.2


def test_beyond_the_endpoint_rate_the_answer_is_stripes_429(fake: StripeFake) -> None:
    fake.throttle(endpoint_rps=5, retry_after=1)
    answers = [_get(fake, "/v1/subscriptions?limit=1") for _ in range(6)]

    assert [status for status, _, _ in answers] == [200] * 5 + [429]
    status, headers, body = answers[-1]
    assert body == {
        "error": {
            "type": "invalid_request_error",
            "code": "rate_limit",
            "message": body["error"]["message"],
        }
    }
    assert "rate limit" in body["error"]["message"]
    assert headers["Stripe-Should-Retry"] == "true"
    assert headers["Retry-After"] == "1"
    # Another endpoint has its own budget; the refused request was not admitted.
    assert _get(fake, "/v1/subscriptions/sub_one")[0] == 200
    assert fake.rate_limited == 1 and fake.refused_twice == 0
    # The refused request, asked again at once, is refused a second time: counted as such.
    assert _get(fake, "/v1/subscriptions?limit=1")[0] == 429
    assert fake.rate_limited == 2 and fake.refused_twice == 1
    time.sleep(1.05)
    assert _get(fake, "/v1/subscriptions?limit=1")[0] == 200
    # Served once: a later refusal of it is a first one again.
    assert [_get(fake, "/v1/subscriptions?limit=1")[0] for _ in range(5)][-1] == 429
    assert fake.refused_twice == 1


def test_beyond_the_concurrency_cap_requests_are_refused(fake: StripeFake) -> None:
    fake.throttle(latency=0.4, max_concurrent=2)
    statuses: list[int] = []

    def call() -> None:
        statuses.append(_get(fake, "/v1/subscriptions/sub_one")[0])

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # the first two are in progress when the third arrives
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 200, 429]
    # Once they are done, there is room again.
    assert _get(fake, "/v1/subscriptions/sub_one")[0] == 200
