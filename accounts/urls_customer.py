"""Routes for the customer-facing surface under /app/."""

from django.urls import path

from accounts import views_customer

urlpatterns = [
    path("app/login/", views_customer.CustomerLoginView.as_view(), name="customer_login"),
    path("app/logout/", views_customer.CustomerLogoutView.as_view(), name="customer_logout"),
    path("app/", views_customer.customer_home, name="customer_home"),
]
