"""Janitor's URL map: the dashboard shell here, each area's pages in its own module."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from janitor import views
from janitor.forms import StaffLoginForm
from janitor.metrics import metrics
from reconciliation.views.webhooks import stripe_webhook

urlpatterns = [
    # First: Stripe's deliveries are the busiest route, so they resolve without a scan.
    path("webhooks/stripe/", stripe_webhook, name="stripe_webhook"),
    path("", views.overview, name="overview"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="registration/login.html", authentication_form=StaffLoginForm
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", views.account_list, name="account_list"),
    path("accounts/<str:public_id>/", views.account_detail, name="account_detail"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("notifications/", views.notice_list, name="notice_list"),
    path("notifications/mine/", views.notice_preferences, name="notice_preferences"),
    path("django-admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("reconciliation.urls")),
    path("", include("products.urls")),
]
