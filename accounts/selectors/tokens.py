"""The products' API tokens as the Admins' page lists them."""

from django.db.models import QuerySet

from accounts.models import ApiToken


def api_token_list() -> QuerySet[ApiToken]:
    """Live tokens first, then revoked ones; newest first within each (paginate it)."""
    return (
        ApiToken.objects.select_related("created_by")
        .defer("token_hash")
        .order_by("revoked_at", "-created_at", "-id")
    )
