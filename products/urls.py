"""Routes of the product pages: endpoints (Admins) and the deliveries of access events."""

from django.urls import path

from products.views import deliveries, endpoints

urlpatterns = [
    path("products/endpoints/", endpoints.endpoint_list_view, name="product_endpoint_list"),
    path(
        "products/endpoints/<int:pk>/",
        endpoints.endpoint_detail_view,
        name="product_endpoint_detail",
    ),
    path(
        "products/endpoints/<int:pk>/enabled/",
        endpoints.endpoint_set_enabled_view,
        name="product_endpoint_set_enabled",
    ),
    path(
        "products/endpoints/<int:pk>/rotate-secret/",
        endpoints.endpoint_secret_rotate_view,
        name="product_endpoint_rotate_secret",
    ),
    path("products/deliveries/", deliveries.delivery_list_view, name="delivery_list"),
    path("products/deliveries/<int:pk>/", deliveries.delivery_detail_view, name="delivery_detail"),
    path(
        "products/deliveries/<int:pk>/replay/",
        deliveries.delivery_replay_view,
        name="delivery_replay",
    ),
]
