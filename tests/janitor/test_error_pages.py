"""The 403, 404 and 500 pages: in the dashboard's shell, saying what helps and leaking nothing."""

import pytest
from django.conf import settings
from django.test import Client, RequestFactory
from django.urls import get_resolver, path, reverse

import janitor.urls


def _boom(request):
    raise RuntimeError("secret detail: postgres://janitor:hunter2@db.internal/janitor")


# This module doubles as the URLconf of the 500 test: Janitor's routes plus one that fails.
urlpatterns = [path("boom/", _boom), *janitor.urls.urlpatterns]


@pytest.mark.django_db
def test_404_is_in_the_shell_and_lists_no_routes(client):
    response = client.get("/no-such-page/")
    body = response.content.decode()
    assert response.status_code == 404
    assert [t.name for t in response.templates][0] == "404.html"
    assert 'class="topbar"' in body and 'data-testid="error-404"' in body
    for leak in ("URLconf", "django-admin", "webhooks/", "/no-such-page/"):
        assert leak not in body


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "method", "url_name", "message"),
    [
        ("support_client", "post", "reconciliation_run_start", "This needs the Admin role."),
        ("finance_client", "get", "webhook_list", "This needs the Support or Admin role."),
        ("admin_client_", "post", "dispute_stage", "This needs the Finance role."),
        ("customer_client", "get", "overview", "The dashboard is for staff only."),
    ],
)
def test_403_says_which_role_the_page_needs(request, who, method, url_name, message):
    client = request.getfixturevalue(who)
    kwargs = {"provider_id": "dp_x"} if url_name == "dispute_stage" else {}
    response = getattr(client, method)(reverse(url_name, kwargs=kwargs))
    body = response.content.decode()
    assert response.status_code == 403
    assert 'class="topbar"' in body and 'data-testid="error-403"' in body
    assert message in body


@pytest.mark.django_db
def test_the_audit_export_403_names_the_roles(support_client):
    response = support_client.get(reverse("audit_list"), {"format": "csv"})
    assert response.status_code == 403
    assert "This needs the Finance or Admin role." in response.content.decode()


def _assert_generic_500(response):
    body = response.content.decode()
    assert response.status_code == 500
    assert 'data-testid="error-500"' in body and 'class="topbar"' in body
    for leak in ("hunter2", "postgres://", "Traceback", "RuntimeError", settings.SECRET_KEY):
        assert leak not in body


def test_500_handler_renders_with_the_database_blocked():
    """No django_db mark: pytest-django fails any query, as a dead database would."""
    handler = get_resolver().resolve_error_handler(500)
    _assert_generic_500(handler(RequestFactory().get("/boom/")))


@pytest.mark.urls(__name__)
def test_a_failing_request_gets_the_500_page_without_touching_the_database():
    client = Client(raise_request_exception=False)
    response = client.get("/boom/")
    _assert_generic_500(response)
    # The view's own error, not a blocked query on the way (that would be a RuntimeError too).
    assert "hunter2" in str(response.exc_info[1])
