"""Routes of the accounts side: access actions and staged revocations, the access audit trail,
members, staff two-factor sign-in, the products' API tokens, the customer surface under /app/,
and the product API (activity, accounts, access, confirmations of session revocations)."""

from django.urls import path

from accounts.views import (
    activity,
    api_access,
    api_accounts,
    api_tokens,
    customer,
    members,
    revocation,
    revocation_api,
    two_factor,
)

urlpatterns = [
    # The access API first: products ask it on every sign-in, so it resolves without a scan.
    path(
        "api/v1/access/<str:public_id>",
        api_access.access_detail_api,
        name="access_detail_api",
    ),
    path("api/v1/access", api_access.access_changes_api, name="access_changes_api"),
    # An account's access panel and actions; Revocations; the access audit trail.
    path(
        "accounts/<str:public_id>/access/",
        revocation.account_access_actions,
        name="account_access_actions",
    ),
    path(
        "accounts/<str:public_id>/access/revoke/",
        revocation.revocation_request_create,
        name="revocation_request_create",
    ),
    path(
        "accounts/<str:public_id>/access/restore/",
        revocation.access_restore_view,
        name="access_restore",
    ),
    path("revocations/", revocation.revocation_list, name="revocation_list"),
    path(
        "revocations/<int:pk>/approve/",
        revocation.revocation_approve_view,
        name="revocation_approve",
    ),
    path(
        "revocations/<int:pk>/reject/", revocation.revocation_reject_view, name="revocation_reject"
    ),
    path("revocations/<int:pk>/retry/", revocation.revocation_retry_view, name="revocation_retry"),
    path(
        "revocations/<int:pk>/abandon/",
        revocation.revocation_abandon_view,
        name="revocation_abandon",
    ),
    path("access-audit/", revocation.audit_list, name="audit_list"),
    # Members of a team account.
    path(
        "accounts/<str:public_id>/members/<str:member_id>/<str:action>/",
        members.member_set_enabled_view,
        name="member_set_enabled",
    ),
    # Staff two-factor sign-in.
    path("two-factor/verify/", two_factor.two_factor_verify_view, name="two_factor_verify"),
    path("two-factor/enrol/", two_factor.two_factor_enrol_view, name="two_factor_enrol"),
    path("staff/two-factor/", two_factor.staff_two_factor_list_view, name="staff_two_factor_list"),
    path(
        "staff/two-factor/<str:public_id>/reset/",
        two_factor.staff_two_factor_reset_view,
        name="staff_two_factor_reset",
    ),
    # The products' API tokens (Admins).
    path("staff/api-tokens/", api_tokens.api_token_list_view, name="api_token_list"),
    path("staff/api-tokens/create/", api_tokens.api_token_create_view, name="api_token_create"),
    path(
        "staff/api-tokens/<int:pk>/revoke/",
        api_tokens.api_token_revoke_view,
        name="api_token_revoke",
    ),
    # The customer-facing surface.
    path("app/login/", customer.CustomerLoginView.as_view(), name="customer_login"),
    path("app/logout/", customer.CustomerLogoutView.as_view(), name="customer_logout"),
    path("app/", customer.customer_home, name="customer_home"),
    # The activity API.
    path("api/v1/activity", activity.activity_ingest_api, name="activity_ingest_api"),
    # A product that holds sessions confirms it ended them for a staged revocation.
    path(
        "api/v1/revocations/<int:revocation_id>/confirm",
        revocation_api.revocation_confirm_api,
        name="revocation_confirm_api",
    ),
    # The accounts API: accounts and their members, one or a batch.
    path("api/v1/accounts", api_accounts.accounts_batch_api, name="accounts_batch_api"),
    path("api/v1/accounts/<str:public_id>", api_accounts.account_put_api, name="account_put_api"),
]
