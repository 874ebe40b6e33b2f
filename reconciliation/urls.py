"""Billing-provider pages; each feature keeps its routes in its own module."""

from django.urls import include, path

from reconciliation import views_billing

urlpatterns = [
    path("app/billing/<str:token>/", views_billing.billing_portal, name="billing_portal"),
    path("", include("reconciliation.urls_webhooks")),
    path("", include("reconciliation.urls_reconcile")),
    path("", include("reconciliation.urls_evidence")),
    path("", include("reconciliation.urls_privacy")),
]
