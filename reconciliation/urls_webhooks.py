"""Routes for the staff Webhooks page (Stripe's endpoint is routed first in janitor/urls.py)."""

from django.urls import path

from reconciliation import views_webhooks as views

urlpatterns = [
    path("webhooks/", views.webhook_list, name="webhook_list"),
    path("webhooks/replay-dead/", views.webhook_replay_dead, name="webhook_replay_dead"),
    path("webhooks/<int:pk>/", views.webhook_detail, name="webhook_detail"),
    path("webhooks/<int:pk>/replay/", views.webhook_replay, name="webhook_replay"),
]
