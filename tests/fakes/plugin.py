"""The `stripe_fake` fixture: the sandbox's StripeFake on a random port, the gateway pointed at it.

tests/conftest.py loads this module as a pytest plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.stripe_fake import TEST_API_KEY, StripeFake


@pytest.fixture
def stripe_fake(settings: Any) -> Iterator[StripeFake]:
    """A running StripeFake with Django settings pointing the gateway at it."""
    from reconciliation.gateway import request_rate_reset

    with StripeFake() as fake:
        settings.STRIPE_API_BASE = fake.base_url
        settings.STRIPE_API_KEY = TEST_API_KEY
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        # Retried calls in tests wait milliseconds, not Stripe's half-seconds.
        settings.STRIPE_RETRY_BASE_SECONDS = 0.002
        # A hung fake should fail a test in seconds, not after the production 20 s.
        settings.STRIPE_TIMEOUT_SECONDS = 5
        # The process-wide request rate is tested on its own; elsewhere it must not pace tests.
        settings.JANITOR_STRIPE_MAX_RPS = 1000
        request_rate_reset()
        yield fake
        request_rate_reset()
