"""Routes for an account's members."""

from django.urls import path

from accounts import views_members

urlpatterns = [
    path(
        "accounts/<str:public_id>/members/<str:member_id>/<str:action>/",
        views_members.member_set_enabled_view,
        name="member_set_enabled",
    ),
]
