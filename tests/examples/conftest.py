"""The example product (examples/product/) run as its own process, beside a stand-in for
Janitor's API (unit tests) or the real Janitor on pytest-django's live server (end to end)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.examples.product_support import FakeJanitor, ProductProcess


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "end_to_end: Janitor's live server, the example product and the fake Stripe together "
        "(select with -m end_to_end)",
    )


@pytest.fixture
def fake_janitor() -> Iterator[FakeJanitor]:
    fake = FakeJanitor().start()
    yield fake
    fake.stop()


@pytest.fixture
def product(tmp_path, fake_janitor) -> Iterator[ProductProcess]:
    process = ProductProcess(db_path=tmp_path / "product.sqlite3", janitor_url=fake_janitor.url)
    yield process.start()
    process.stop()
