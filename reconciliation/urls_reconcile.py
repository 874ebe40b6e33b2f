"""Routes of the review queue and the reconciliation runs."""

from django.urls import path

from reconciliation import views_queue, views_reconcile

urlpatterns = [
    path("queue/", views_queue.review_queue, name="review_queue"),
    path("queue/flags/<int:flag_id>/", views_queue.flag_row, name="flag_row"),
    path("queue/flags/<int:flag_id>/assign/", views_queue.flag_assign_view, name="flag_assign"),
    path("queue/flags/<int:flag_id>/note/", views_queue.flag_note_view, name="flag_note"),
    path("queue/flags/<int:flag_id>/extend/", views_queue.flag_extend_view, name="flag_extend"),
    path("queue/flags/<int:flag_id>/comp/", views_queue.flag_comp_view, name="flag_comp"),
    path("queue/flags/<int:flag_id>/resolve/", views_queue.flag_resolve_view, name="flag_resolve"),
    path("reconciliation/", views_reconcile.reconciliation_runs, name="reconciliation_runs"),
    path(
        "reconciliation/start/",
        views_reconcile.reconciliation_run_start,
        name="reconciliation_run_start",
    ),
    path(
        "reconciliation/runs/<int:run_id>/",
        views_reconcile.reconciliation_run_detail,
        name="reconciliation_run_detail",
    ),
    path(
        "reconciliation/runs/<int:run_id>/progress/",
        views_reconcile.reconciliation_run_progress,
        name="reconciliation_run_progress",
    ),
    path(
        "reconciliation/runs/<int:run_id>/apply/",
        views_reconcile.reconciliation_run_apply,
        name="reconciliation_run_apply",
    ),
    path(
        "reconciliation/runs/<int:run_id>/discard/",
        views_reconcile.reconciliation_run_discard,
        name="reconciliation_run_discard",
    ),
]
