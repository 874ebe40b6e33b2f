"""Routes for chargeback evidence: the account panel, exports, disputes."""

from django.urls import path

from reconciliation import views_evidence as views

urlpatterns = [
    path("disputes/", views.dispute_list, name="dispute_list"),
    path("disputes/<str:provider_id>/", views.dispute_detail, name="dispute_detail"),
    path("disputes/<str:provider_id>/stage/", views.dispute_stage, name="dispute_stage"),
    path("disputes/<str:provider_id>/submit/", views.dispute_submit, name="dispute_submit"),
    path(
        "accounts/<str:public_id>/evidence/",
        views.account_evidence_panel,
        name="account_evidence_panel",
    ),
    path("accounts/<str:public_id>/evidence.pdf", views.evidence_pdf, name="evidence_pdf"),
    path("accounts/<str:public_id>/evidence.csv", views.evidence_csv, name="evidence_csv"),
]
