"""HTMX answers are never silent or misplaced: sign-in on an ended session, refusals in place."""

import pytest
from django.urls import reverse

from reconciliation.models import FlagNote
from tests.factories import FlagFactory

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true", "HX-Current-URL": "http://testserver/queue/?kind=payment_failed"}


def test_an_ended_session_sends_the_browser_to_sign_in_and_back(client, db):
    flag = FlagFactory()
    response = client.post(reverse("flag_assign", args=[flag.pk]), headers=HTMX)
    # Not a redirect htmx would follow and paste into the row: a whole-page navigation.
    assert response.status_code == 200
    assert response.content == b""
    assert response["HX-Redirect"] == "/login/?next=%2Fqueue%2F%3Fkind%3Dpayment_failed"
    flag.refresh_from_db()
    assert flag.assignee is None


def test_an_ended_session_on_an_htmx_read_also_goes_to_sign_in(client, db):
    flag = FlagFactory()
    response = client.get(reverse("flag_row", args=[flag.pk]), headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/login/?next=")


def test_without_htmx_it_is_the_usual_redirect(client, db):
    flag = FlagFactory()
    response = client.get(reverse("flag_row", args=[flag.pk]))
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next=/queue/flags/{flag.pk}/"


def test_a_refused_queue_action_answers_422_with_its_message_in_the_row(support_client):
    flag = FlagFactory()
    response = support_client.post(
        reverse("flag_note", args=[flag.pk]), {"body": "   "}, headers=HTMX
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "<html" not in html and f'id="flag-{flag.pk}"' in html
    assert 'role="alert"' in html and "A note cannot be empty." in html
    assert not FlagNote.objects.filter(flag=flag).exists()


def test_every_page_loads_the_script_that_shows_refusals(support_client):
    html = support_client.get(reverse("overview")).content.decode()
    assert "/static/janitor/janitor.js" in html and 'id="toasts"' in html
