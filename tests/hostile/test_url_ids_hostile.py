"""Random and stale object ids in every URL path: a plain 404 (a 400 for a NUL byte), never a
5xx, nothing changed.

The permission matrix visits each pattern with real ids; this suite fills the same patterns
with whatever their converters accept (huge integers, unicode, ids of rows that are gone),
as a visitor allowed to use the page, so the refusal is about the id and not the role.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import get_resolver, reverse
from hypothesis import given, note, settings
from hypothesis import strategies as st

from accounts.models import AccessAudit, RevocationRequest, User
from accounts.roles import ROLE_ADMIN, ROLE_SUPPORT
from reconciliation.models import Flag, FlagNote, ReconciliationRun, RunStatus, WebhookEvent
from tests.factories import (
    AccountFactory,
    DisputeFactory,
    FlagFactory,
    StaffFactory,
    UserFactory,
    WebhookEventFactory,
)
from tests.hostile.conftest import assert_answered, rolled_back
from tests.test_permission_matrix import MATRIX, _patterns

# A path id is a lookup, not a parser: a tenth of the endpoint count is plenty to cover the
# converter's range and the stale ids (100 per pattern in CI; at least 20 in a dev run).
PATH_EXAMPLES_SHARE = 0.1

# Signed links (a token, not a row's id) have their own test below.
SIGNED_LINK_PATTERNS = {"billing_portal"}
# Bearer-token APIs answer 401 to a signed-in visitor before any lookup: their unknown ids are
# fuzzed with a valid token beside their other tests (tests/accounts/test_revocation_products.py,
# tests/accounts/test_access_api.py, tests/accounts/test_accounts_api.py).
TOKEN_API_PATTERNS = {"revocation_confirm_api", "access_detail_api", "account_put_api"}
ID_PATTERNS = sorted(
    (route, name)
    for route, name in _patterns(get_resolver().url_patterns)
    if "<" in route and name not in SIGNED_LINK_PATTERNS | TOKEN_API_PATTERNS
)


def _converters(name: str) -> dict:
    for entry in get_resolver().reverse_dict.getlist(name):
        if isinstance(entry, tuple) and len(entry) == 4:
            return entry[3]
    raise LookupError(name)


def _path_values(name: str, stale: dict[str, str]) -> st.SearchStrategy[dict[str, str]]:
    """What each converter accepts: `int` any run of digits, `str` anything without a slash;
    one time in three, the id a row of this kind had before it was deleted."""
    values = {}
    for param, converter in _converters(name).items():
        regex = st.from_regex(f"^(?:{converter.regex})$", fullmatch=True)
        if converter.regex == "[0-9]+":
            regex = st.one_of(
                st.integers(min_value=0, max_value=2**70).map(str),
                st.just("9" * 40),
                regex,
            )
        else:
            regex = st.one_of(st.sampled_from(["user-", "du_", "0", ".", "..", "%00"]), regex)
        values[param] = st.one_of(st.just(stale[_kind(name, param)]), regex, regex)
    return st.fixed_dictionaries(values)


def _kind(name: str, param: str) -> str:
    """Which kind of row a path parameter names: `pk` depends on the page."""
    if param == "pk":
        return "revocation" if name.startswith("revocation") else "webhook"
    return param


@pytest.fixture
def stale(db) -> dict[str, str]:
    """One row of each kind that a URL names, created and deleted: their ids are stale."""
    requester = StaffFactory(role=ROLE_SUPPORT)
    rows = {
        "public_id": AccountFactory(members=0),
        "revocation": RevocationRequest.objects.create(
            account=AccountFactory(), requested_by=requester, reason="Stale"
        ),
        "webhook": WebhookEventFactory(),
        "flag_id": FlagFactory(),
        "run_id": ReconciliationRun.objects.create(status=RunStatus.FAILED),
        "provider_id": DisputeFactory(account=None, customer_id=""),
        "member_id": UserFactory(),
    }
    ids = {
        "public_id": rows["public_id"].public_id,
        "member_id": rows["member_id"].public_id,
        "action": "disable",
        "provider_id": rows["provider_id"].provider_id,
        **{kind: str(rows[kind].pk) for kind in ("revocation", "webhook", "flag_id", "run_id")},
    }
    for row in rows.values():
        row.delete()
    return ids


def _snapshot() -> dict[str, int]:
    return {
        "users": User.objects.count(),
        "audit": AccessAudit.objects.count(),
        "revocations": RevocationRequest.objects.count(),
        "flags": Flag.objects.filter(status="open").count(),
        "notes": FlagNote.objects.count(),
        "runs": ReconciliationRun.objects.count(),
        "webhooks": WebhookEvent.objects.count(),
    }


@pytest.mark.django_db
@given(
    token=st.text(
        alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
        min_size=1,
    )
)
def test_a_made_up_billing_link_is_refused_and_asks_stripe_nothing(token):
    """The customer's billing link: anything but a token Janitor signed is a 400, not a call
    to Stripe (nobody can mint portal sessions for a customer id they guess)."""
    from django.core.signing import dumps

    forged = [token, dumps({"c": "cus_guess"}, salt="another-salt"), dumps({"c": token})]
    for attempt in forged:
        response = Client().get(reverse("billing_portal", kwargs={"token": attempt}))
        assert response.status_code == 400, (attempt, response.status_code)


def test_every_pattern_with_an_id_is_fuzzed():
    assert {name for _route, name in ID_PATTERNS} <= set(MATRIX), "declare it in the matrix"
    assert len(ID_PATTERNS) >= 25


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "name"), ID_PATTERNS, ids=[n for _r, n in ID_PATTERNS])
def test_unknown_ids_in_the_path_are_a_plain_not_found(route, name, stale, stripe_fake):
    method, allowed = MATRIX[name]
    role = ROLE_ADMIN if ROLE_ADMIN in allowed else sorted(allowed)[0]
    client = Client()
    client.force_login(StaffFactory(role=role))
    sent: list[int] = []

    @settings(max_examples=max(20, int(settings.default.max_examples * PATH_EXAMPLES_SHARE)))
    @given(kwargs=_path_values(name, stale), htmx=st.booleans())
    def check(kwargs, htmx):
        sent.append(1)
        url = reverse(name, kwargs=kwargs)
        headers = {"HX-Request": "true"} if htmx else {}
        with rolled_back():
            before = _snapshot()
            response = getattr(client, method)(url, headers=headers)
            assert _snapshot() == before, url
        note(f"{response.status_code} {url}")
        assert_answered(response, context=f"{method.upper()} {url}")
        if "\x00" in "".join(kwargs.values()):
            # Refused at the door by RejectNulBytesMiddleware, before any lookup.
            assert response.status_code == 400, f"{response.status_code} for {url}"
            assert b"NUL" in response.content
        else:
            assert response.status_code == 404, f"{response.status_code} for {url}"

    check()
    assert len(sent) >= 20, route
