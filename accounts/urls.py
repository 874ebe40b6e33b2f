"""Account pages; each feature keeps its routes in its own module."""

from django.urls import include, path

urlpatterns = [
    path("", include("accounts.urls_revocation")),
    path("", include("accounts.urls_customer")),
    path("", include("accounts.urls_activity")),
    path("", include("accounts.urls_two_factor")),
    path("", include("accounts.urls_members")),
]
