"""Routes for privacy actions: erasing a customer's personal data."""

from django.urls import path

from reconciliation import views_privacy

urlpatterns = [
    path(
        "accounts/<str:public_id>/erase/",
        views_privacy.account_erase_view,
        name="account_erase",
    ),
]
