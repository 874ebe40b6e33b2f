"""Routes for staff two-factor sign-in: verify, enrol, and the Admins' reset page."""

from django.urls import path

from accounts import views_two_factor as views

urlpatterns = [
    path("two-factor/verify/", views.two_factor_verify_view, name="two_factor_verify"),
    path("two-factor/enrol/", views.two_factor_enrol_view, name="two_factor_enrol"),
    path("staff/two-factor/", views.staff_two_factor_list_view, name="staff_two_factor_list"),
    path(
        "staff/two-factor/<str:public_id>/reset/",
        views.staff_two_factor_reset_view,
        name="staff_two_factor_reset",
    ),
]
