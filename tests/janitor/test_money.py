"""Provider amounts (minor units) are shown as money."""

import pytest

from janitor.templatetags.money import money


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (4900, "usd", "49.00 USD"),
        (123456789, "eur", "1,234,567.89 EUR"),
        (500, "jpy", "500 JPY"),
        (5, "usd", "0.05 USD"),
        (None, "usd", "—"),
    ],
)
def test_money(amount, currency, shown):
    assert money(amount, currency) == shown
