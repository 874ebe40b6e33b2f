"""The menu and the account page's panels, for every role: every link and panel a role is
shown opens, and a URL name that does not reverse is an error, never a silently missing link
(issue 16: renaming a URL once made the Disputes link vanish while the suite stayed green)."""

import re

import pytest
from django.test import Client
from django.urls import NoReverseMatch, reverse

from accounts.roles import ROLE_NAMES
from janitor import navigation
from tests.factories import AccountFactory, StaffFactory

pytestmark = pytest.mark.django_db

PANEL = re.compile(r'<section class="card" id="[a-z-]+" hx-get="([^"]+)"')


def _client(role: str) -> tuple[Client, object]:
    user = StaffFactory(role=role)
    client = Client()
    client.force_login(user)
    return client, user


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_menu_entry_a_role_may_see_is_shown_and_opens(role):
    client, user = _client(role)
    page = client.get(reverse("overview")).content.decode()
    expected = [reverse(name) for name, _label, perm in navigation.NAV_ITEMS if user.has_perm(perm)]
    assert expected, "every role sees some of the menu"
    for url in expected:
        assert f'href="{url}"' in page, url
        assert client.get(url).status_code == 200, url
    hidden = [reverse(n) for n, _l, perm in navigation.NAV_ITEMS if not user.has_perm(perm)]
    for url in hidden:
        assert f'href="{url}"' not in page, url


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_the_account_page_and_each_of_its_panels_render_for_every_role(role):
    client, _user = _client(role)
    account = AccountFactory(members=2)
    page = client.get(reverse("account_detail", args=[account.public_id]))
    assert page.status_code == 200
    panels = PANEL.findall(page.content.decode())
    assert set(panels) == {
        reverse("account_access_actions", args=[account.public_id]),
        reverse("account_evidence_panel", args=[account.public_id]),
    }
    for url in panels:
        response = client.get(url, HTTP_HX_REQUEST="true")
        assert response.status_code == 200, (url, response.status_code)
        assert b"<h2" in response.content


def test_a_menu_entry_whose_url_does_not_exist_is_an_error(monkeypatch):
    client, _user = _client("Admin")
    monkeypatch.setattr(
        navigation,
        "NAV_ITEMS",
        [*navigation.NAV_ITEMS, ("disputes_renamed", "X", "accounts.view_dashboard")],
    )
    with pytest.raises(NoReverseMatch):
        client.get(reverse("overview"))
