"""API tokens in the Django admin: created through the service, raw value shown once, revocable."""

import pytest
from django.contrib.messages import get_messages

from accounts.models import ApiToken, User

pytestmark = pytest.mark.django_db


def test_admin_creates_token_shows_it_once_and_revokes(client):
    superuser = User.objects.create_superuser("root@janitor.test", "pw-for-tests-only")
    client.force_login(superuser)
    response = client.post("/django-admin/accounts/apitoken/add/", {"name": "Product API"})
    assert response.status_code == 302
    token = ApiToken.objects.get(name="Product API")
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    raw = shown[0].split(": ", 1)[1].split(" ")[0]
    assert raw.startswith(token.prefix) and token.token_hash not in shown[0]
    assert raw in client.get("/django-admin/accounts/apitoken/").content.decode()  # shown once...
    assert (
        raw
        not in client.get(f"/django-admin/accounts/apitoken/{token.pk}/change/").content.decode()
    )
    client.post(
        "/django-admin/accounts/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
    )
    token.refresh_from_db()
    assert token.revoked_at is not None
