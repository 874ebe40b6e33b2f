from django.apps import AppConfig


class ProductsConfig(AppConfig):
    """Janitor beside a product it does not host: the product's endpoints, the outbox of signed
    access events delivered to them, and the session revocations they confirm."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "products"
    verbose_name = "Products"
