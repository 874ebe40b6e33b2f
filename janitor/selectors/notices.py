"""Reads for notices: the Notifications page and a staff member's preferences."""

from django.core.paginator import Page

from accounts.models import User
from janitor.models import UNMUTABLE_KINDS, Notice, NoticeKind, NoticeMute, NoticeStatus

NOTICES_PER_PAGE = 50


def notice_page(
    *, status: str = "", kind: str = "", page_number: int | str | None = 1
) -> Page[Notice]:
    """The Notifications page: newest first, filtered by status and kind."""
    from django.core.paginator import Paginator

    notices = Notice.objects.select_related("recipient").order_by("-created_at", "-id")
    if status in NoticeStatus.values:
        notices = notices.filter(status=status)
    if kind in NoticeKind.values:
        notices = notices.filter(kind=kind)
    return Paginator(notices, NOTICES_PER_PAGE).get_page(page_number)


def notice_preferences_get(*, user: User) -> list[tuple[str, str, bool, bool]]:
    """(kind, label, muted, can_mute) for every kind of notice a staff member can receive."""
    muted = set(NoticeMute.objects.filter(user=user).values_list("kind", flat=True))
    staff_kinds = [k for k in NoticeKind if k != NoticeKind.GRACE_STARTED]
    return [(k.value, k.label, k.value in muted, k not in UNMUTABLE_KINDS) for k in staff_kinds]
