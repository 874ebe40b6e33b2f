"""The API tokens page: Admins only; a token made with its scopes, its raw value shown once;
revoked with a reason; both audited in the staff audit."""

import threading

import pytest
from django.db import connections, transaction
from django.urls import reverse

from accounts.models import ApiToken, StaffActionAudit, StaffActionKind
from accounts.services.tokens import (
    api_token_authenticate,
    api_token_create,
    api_token_revoke_by_staff,
)

pytestmark = pytest.mark.django_db
LIST = "/staff/api-tokens/"


@pytest.mark.parametrize(
    ("who", "expected"),
    [("support_client", 403), ("finance_client", 403), ("customer_client", 403), ("client", 302)],
)
def test_only_admins_reach_the_page_or_its_actions(request, who, expected):
    client = request.getfixturevalue(who)
    token, _raw = api_token_create(name="Product", created_by=None)
    assert client.get(LIST).status_code == expected
    create = client.post(
        reverse("api_token_create"), {"name": "Sneaky", "scopes": ["accounts:write"]}
    )
    revoke = client.post(reverse("api_token_revoke", args=[token.pk]), {"reason": "because"})
    assert (create.status_code, revoke.status_code) == (expected, expected)
    assert not ApiToken.objects.filter(name="Sneaky").exists()
    token.refresh_from_db()
    assert token.revoked_at is None
    assert not StaffActionAudit.objects.exists()


def test_the_page_is_in_the_admins_navigation_only(admin_client_):
    assert f'href="{LIST}"' in admin_client_.get(reverse("overview")).content.decode()
    page = admin_client_.get(LIST).content.decode()
    assert "No API tokens yet" in page
    for scope in ("accounts:write", "activity:write", "access:read"):
        assert f'data-testid="scope-{scope}"' in page


def test_support_does_not_see_the_link(support_client):
    assert f'href="{LIST}"' not in support_client.get(reverse("overview")).content.decode()


def test_create_shows_the_raw_token_once_and_audits_it(admin_client_, admin_user):
    response = admin_client_.post(
        reverse("api_token_create"),
        {"name": "  Billing backend ", "scopes": ["accounts:write", "access:read"]},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    token = ApiToken.objects.get()
    page = response.content.decode()
    start = page.index('data-testid="raw-token">') + len('data-testid="raw-token">')
    raw = page[start : page.index("<", start)]
    assert raw.startswith(token.prefix) and len(raw) > 40
    assert token.token_hash not in page
    assert (token.name, token.scopes, token.created_by) == (
        "Billing backend",
        ["access:read", "accounts:write"],
        admin_user,
    )
    assert api_token_authenticate(raw=raw) == token
    # Shown once: the list afterwards has the token's row, never its value.
    later = admin_client_.get(LIST).content.decode()
    assert raw not in later and f'data-testid="token-{token.pk}"' in later
    assert "Billing backend" in later and "accounts:write" in later
    audit = StaffActionAudit.objects.get()
    assert (audit.kind, audit.actor_user, audit.subject) == (
        StaffActionKind.API_TOKEN_CREATED,
        admin_user,
        None,
    )
    assert audit.details == {
        "token": token.pk,
        "name": "Billing backend",
        "prefix": token.prefix,
        "scopes": ["access:read", "accounts:write"],
    }
    assert raw not in str(audit.details) and raw not in audit.reason


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "No scopes"}, "Choose at least one scope."),
        ({"name": "   ", "scopes": ["access:read"]}, "This field is required."),
        ({"name": "Bad", "scopes": ["admin:everything"]}, "is not one of the available choices"),
    ],
)
def test_create_refuses_a_bad_form_and_stores_nothing(admin_client_, form, message):
    response = admin_client_.post(reverse("api_token_create"), form)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ApiToken.objects.exists() and not StaffActionAudit.objects.exists()


def test_revoke_needs_a_reason_then_stops_the_token_and_audits(admin_client_, admin_user):
    token, raw = api_token_create(name="Old product", created_by=None, scopes=["access:read"])
    url = reverse("api_token_revoke", args=[token.pk])
    page = admin_client_.get(LIST).content.decode()
    assert 'hx-confirm="Revoke Old product' in page  # a confirmation before it happens
    refused = admin_client_.post(url, {"reason": "  "}, headers={"HX-Request": "true"})
    assert refused.status_code == 400 and "Say why" in refused.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None and api_token_authenticate(raw=raw) == token

    done = admin_client_.post(url, {"reason": "Product retired"})
    assert done.status_code == 302 and done["Location"] == LIST
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert api_token_authenticate(raw=raw) is None
    audit = StaffActionAudit.objects.get(kind=StaffActionKind.API_TOKEN_REVOKED)
    assert (audit.actor_user, audit.reason, audit.details["token"]) == (
        admin_user,
        "Product retired",
        token.pk,
    )
    page = admin_client_.get(LIST).content.decode()
    assert f'data-testid="revoke-{token.pk}"' not in page  # nothing left to revoke

    again = admin_client_.post(url, {"reason": "twice"}, headers={"HX-Request": "true"})
    assert again.status_code == 400 and "already revoked" in again.content.decode()
    assert StaffActionAudit.objects.filter(kind=StaffActionKind.API_TOKEN_REVOKED).count() == 1


def test_the_list_is_paginated_and_counted_in_few_queries(
    admin_client_, admin_user, django_assert_max_num_queries
):
    for n in range(55):
        api_token_create(name=f"Product {n}", created_by=admin_user)
    with django_assert_max_num_queries(12):
        first = admin_client_.get(LIST).content.decode()
    assert "Page 1 of 2" in first and "Product 54" in first and "Product 0<" not in first
    assert "Product 0<" in admin_client_.get(LIST, {"page": 2}).content.decode()


def test_an_unknown_token_is_a_404(admin_client_):
    assert (
        admin_client_.post(reverse("api_token_revoke", args=[999]), {"reason": "x"}).status_code
        == 404
    )


@pytest.mark.postgres  # a second connection reads while the first writes: SQLite locks the table
@pytest.mark.django_db(transaction=True)
def test_a_token_read_while_its_revocation_commits_is_not_kept_in_the_cache(admin_user):
    """A request of the revoking process that reads the token after the revocation is written
    but before it commits still sees it live and caches it: the cache entry is dropped again
    once the revocation commits, so the token stops at once in that process."""
    token, raw = api_token_create(name="Racing", created_by=admin_user, scopes=["access:read"])
    read_meanwhile: list[object] = []

    def concurrent_request() -> None:
        try:
            read_meanwhile.append(api_token_authenticate(raw=raw))
        finally:
            connections.close_all()

    with transaction.atomic():
        api_token_revoke_by_staff(token=token, actor=admin_user, reason="leaked")
        reader = threading.Thread(target=concurrent_request)
        reader.start()
        reader.join()

    assert read_meanwhile and read_meanwhile[0] is not None  # it saw the token live
    assert api_token_authenticate(raw=raw) is None
