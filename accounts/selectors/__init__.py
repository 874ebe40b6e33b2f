"""Reads of the accounts app, one module per concern; callers import from here."""

from accounts.selectors.access import (
    AccessPanel,
    access_audit_list,
    access_panel_get,
    revocation_history_list,
    revocation_open_list,
)
from accounts.selectors.tokens import api_token_list
from accounts.selectors.two_factor import (
    StaffTwoFactorRow,
    staff_two_factor_list,
    two_factor_enrolled,
    two_factor_required,
)

__all__ = [
    "AccessPanel",
    "StaffTwoFactorRow",
    "access_audit_list",
    "access_panel_get",
    "api_token_list",
    "revocation_history_list",
    "revocation_open_list",
    "staff_two_factor_list",
    "two_factor_enrolled",
    "two_factor_required",
]
