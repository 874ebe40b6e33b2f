"""Routes of the billing-provider side: the review queue, reconciliation runs, webhooks,
evidence and disputes, privacy, and the customer's billing portal. Stripe's own endpoint is
routed first in janitor/urls.py."""

from django.urls import path

from reconciliation.views import billing, evidence, privacy, queue, runs, webhooks

urlpatterns = [
    path("app/billing/<str:token>/", billing.billing_portal, name="billing_portal"),
    # The review queue (Support).
    path("queue/", queue.review_queue, name="review_queue"),
    path("queue/flags/<int:flag_id>/", queue.flag_row, name="flag_row"),
    path("queue/flags/<int:flag_id>/assign/", queue.flag_assign_view, name="flag_assign"),
    path("queue/flags/<int:flag_id>/note/", queue.flag_note_view, name="flag_note"),
    path("queue/flags/<int:flag_id>/extend/", queue.flag_extend_view, name="flag_extend"),
    path("queue/flags/<int:flag_id>/comp/", queue.flag_comp_view, name="flag_comp"),
    path("queue/flags/<int:flag_id>/resolve/", queue.flag_resolve_view, name="flag_resolve"),
    # Reconciliation runs (the nightly audit).
    path("reconciliation/", runs.run_list_view, name="reconciliation_runs"),
    path("reconciliation/start/", runs.run_start_view, name="reconciliation_run_start"),
    path(
        "reconciliation/runs/<int:run_id>/",
        runs.run_detail_view,
        name="reconciliation_run_detail",
    ),
    path(
        "reconciliation/runs/<int:run_id>/progress/",
        runs.run_progress_view,
        name="reconciliation_run_progress",
    ),
    path(
        "reconciliation/runs/<int:run_id>/apply/",
        runs.run_apply_view,
        name="reconciliation_run_apply",
    ),
    path(
        "reconciliation/runs/<int:run_id>/discard/",
        runs.run_discard_view,
        name="reconciliation_run_discard",
    ),
    # The staff Webhooks page.
    path("webhooks/", webhooks.webhook_list, name="webhook_list"),
    path("webhooks/replay-dead/", webhooks.webhook_replay_dead, name="webhook_replay_dead"),
    path("webhooks/<int:pk>/", webhooks.webhook_detail, name="webhook_detail"),
    path("webhooks/<int:pk>/replay/", webhooks.webhook_replay, name="webhook_replay"),
    # Chargeback evidence and disputes (Finance).
    path("disputes/", evidence.dispute_list, name="dispute_list"),
    path("disputes/<str:provider_id>/", evidence.dispute_detail, name="dispute_detail"),
    path("disputes/<str:provider_id>/stage/", evidence.dispute_stage, name="dispute_stage"),
    path("disputes/<str:provider_id>/submit/", evidence.dispute_submit, name="dispute_submit"),
    path(
        "accounts/<str:public_id>/evidence/",
        evidence.account_evidence_panel,
        name="account_evidence_panel",
    ),
    path(
        "accounts/<str:public_id>/evidence.pdf",
        evidence.evidence_export,
        {"extension": "pdf"},
        name="evidence_pdf",
    ),
    path(
        "accounts/<str:public_id>/evidence.csv",
        evidence.evidence_export,
        {"extension": "csv"},
        name="evidence_csv",
    ),
    # Privacy.
    path("accounts/<str:public_id>/erase/", privacy.account_erase_view, name="account_erase"),
]
