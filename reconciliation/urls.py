"""Billing-provider pages; each feature keeps its routes in its own module."""

from django.urls import include, path

urlpatterns = [
    path("", include("reconciliation.urls_webhooks")),
    path("", include("reconciliation.urls_reconcile")),
    path("", include("reconciliation.urls_evidence")),
    path("", include("reconciliation.urls_privacy")),
]
