"""Billing-provider pages, one module per feature; the routes are in reconciliation/urls.py."""
