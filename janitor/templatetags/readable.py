"""Template helpers that make values readable: labels, Stripe ids as links, grace left."""

from datetime import datetime

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe

from janitor.labels import SEARCHABLE_PREFIXES, label, stripe_dashboard_url

register = template.Library()


@register.filter(name="label")
def label_filter(value, kind: str) -> str:
    """{{ dispute.reason|label:"dispute_reason" }}"""
    return label(value, kind)


@register.simple_tag
def stripe_id(value: object, account: object = None) -> SafeString:
    """A Stripe id, linked to the Stripe Dashboard and to the account it belongs to.

    With the account at hand the link goes straight to it; otherwise through the search, which
    jumps to the account when the id names exactly one.
    """
    if not value:
        return mark_safe('<span class="empty">—</span>')
    value = str(value)
    parts = [format_html('<code class="id">{}</code>', value)]
    # A template hands over an Account, None, or "" for a variable it could not resolve.
    public_id = getattr(account, "public_id", "") if account is not None else ""
    if public_id:
        parts.append(
            format_html(
                ' <a href="{}" class="id-link">account</a>',
                reverse("account_detail", kwargs={"public_id": public_id}),
            )
        )
    elif value.startswith(SEARCHABLE_PREFIXES):
        parts.append(
            format_html(
                ' <a href="{}?{}" class="id-link">account</a>',
                reverse("account_list"),
                urlencode({"q": value}),
            )
        )
    dashboard = stripe_dashboard_url(value)
    if dashboard:
        parts.append(
            format_html(
                ' <a href="{}" class="id-link" target="_blank" rel="noopener noreferrer">'
                "Stripe ↗</a>",
                dashboard,
            )
        )
    # Every part was escaped by format_html above.
    return format_html('<span class="stripe-id">{}</span>', mark_safe("".join(parts)))  # noqa: S308


def _span(delta_seconds: float) -> str:
    minutes = int(delta_seconds // 60)
    if minutes < 60:
        return f"{max(minutes, 1)} minute{'s' if minutes != 1 else ''}"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    days = hours // 24
    return f"{days} days"


@register.simple_tag
def grace_left(grace_ends_at: datetime | None):
    """ "Overdue by 3 hours" in warning colours once the grace has ended, else the time left."""
    if grace_ends_at is None:
        return mark_safe('<span class="empty">—</span>')
    seconds = (grace_ends_at - timezone.now()).total_seconds()
    if seconds <= 0:
        return format_html(
            '<span class="badge overdue" data-overdue title="Grace ended {} UTC">'
            "Overdue by {}</span>",
            f"{grace_ends_at:%Y-%m-%d %H:%M}",
            _span(-seconds),
        )
    return format_html(
        '<span title="Grace ends {} UTC">{} left</span>',
        f"{grace_ends_at:%Y-%m-%d %H:%M}",
        _span(seconds),
    )


@register.filter
def provider_error(text: str) -> str:
    """{{ run.errors|provider_error }}: the plain-words reading of a provider error, or ""."""
    from janitor.labels import provider_error_plain

    return provider_error_plain(str(text or ""))


@register.filter
def is_past(moment: datetime | None) -> bool:
    return moment is not None and moment <= timezone.now()
