"""Routes for revocations: the account's access panel and actions, Revocations, the audit."""

from django.urls import path

from accounts import views_revocation as views

urlpatterns = [
    path(
        "accounts/<str:public_id>/access/",
        views.account_access_actions,
        name="account_access_actions",
    ),
    path(
        "accounts/<str:public_id>/access/revoke/",
        views.revocation_request_create,
        name="revocation_request_create",
    ),
    path(
        "accounts/<str:public_id>/access/restore/",
        views.access_restore_view,
        name="access_restore",
    ),
    path("revocations/", views.revocation_list, name="revocation_list"),
    path("revocations/<int:pk>/approve/", views.revocation_approve_view, name="revocation_approve"),
    path("revocations/<int:pk>/reject/", views.revocation_reject_view, name="revocation_reject"),
    path("revocations/<int:pk>/retry/", views.revocation_retry_view, name="revocation_retry"),
    path("revocations/<int:pk>/abandon/", views.revocation_abandon_view, name="revocation_abandon"),
    path("access-audit/", views.audit_list, name="audit_list"),
]
