"""Routes for this feature."""

urlpatterns: list = []
