"""{{ amount|money:currency }}: provider amounts are in minor units (cents); show them as money."""

from decimal import Decimal

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma

register = template.Library()

# Stripe's zero-decimal currencies: the amount is already in whole units.
ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}


@register.filter
def money(amount, currency: str = "") -> str:
    if amount in (None, ""):
        return "—"
    code = (currency or "").lower()
    if code in ZERO_DECIMAL:
        value = f"{intcomma(int(amount))}"
    else:
        whole = (Decimal(int(amount)) / 100).quantize(Decimal("0.01"))
        units, cents = f"{whole:.2f}".split(".")
        value = f"{intcomma(int(units))}.{cents}"
    return f"{value} {code.upper()}".strip()
