"""Routes for activity capture: the ingest API."""

from django.urls import path

from accounts import views_activity

urlpatterns = [
    path("api/v1/activity", views_activity.activity_ingest_api, name="activity_ingest_api"),
]
