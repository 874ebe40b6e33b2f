"""Reads of the dashboard shell, one module per page; callers import from here."""

from janitor.selectors.accounts import (
    MEMBERS_SHOWN,
    AccountPage,
    MemberRow,
    account_members,
    account_page_get,
)
from janitor.selectors.notices import NOTICES_PER_PAGE, notice_page, notice_preferences_get
from janitor.selectors.overview import Overview, overview_get

__all__ = [
    "MEMBERS_SHOWN",
    "NOTICES_PER_PAGE",
    "AccountPage",
    "MemberRow",
    "Overview",
    "account_members",
    "account_page_get",
    "notice_page",
    "notice_preferences_get",
    "overview_get",
]
