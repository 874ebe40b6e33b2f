"""Every URL pattern, as every kind of visitor: the declared outcome, and CSRF on every POST.

The table below is the declaration. A URL pattern that is not in it fails the coverage test,
so a new page cannot be forgotten.
"""

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts.roles import ROLE_ADMIN, ROLE_FINANCE, ROLE_SUPPORT
from products.models import AccessEvent, Delivery, ProductEndpoint
from products.services.outbox import deliveries_create
from reconciliation.models import ReconciliationRun, RunStatus
from tests.factories import (
    AccountFactory,
    DisputeFactory,
    FlagFactory,
    StaffFactory,
    WebhookEventFactory,
)

ANON, CUSTOMER = "anonymous", "customer"
VISITORS = [ANON, CUSTOMER, ROLE_SUPPORT, ROLE_FINANCE, ROLE_ADMIN]
STAFF = {ROLE_SUPPORT, ROLE_FINANCE, ROLE_ADMIN}
SUPPORT_ADMIN = {ROLE_SUPPORT, ROLE_ADMIN}

# Outcomes: "ok" (served: 2xx, 3xx that is not to a login page, or a 4xx form error other than
# 401/403), "login" (302 to the staff login), "app_login" (302 to the customer login),
# "forbidden" (403), "unauthorized" (401), "bad_request" (400).
PUBLIC = "public"  # everyone: ok
# name: (method, who is allowed ("public", or a set of roles; others: anon->login, rest->403))
MATRIX = {
    "overview": ("get", STAFF),
    "account_list": ("get", STAFF),
    "account_detail": ("get", STAFF),
    "account_access_actions": ("get", STAFF),
    "revocation_request_create": ("post", STAFF),
    "access_restore": ("post", {ROLE_ADMIN}),
    "revocation_list": ("get", STAFF),
    "revocation_approve": ("post", {ROLE_ADMIN}),
    "revocation_reject": ("post", {ROLE_ADMIN}),
    "revocation_retry": ("post", {ROLE_ADMIN}),
    "revocation_abandon": ("post", {ROLE_ADMIN}),
    "audit_list": ("get", STAFF),
    "review_queue": ("get", STAFF),
    "flag_row": ("get", STAFF),
    "flag_assign": ("post", SUPPORT_ADMIN),
    "flag_note": ("post", SUPPORT_ADMIN),
    "flag_extend": ("post", SUPPORT_ADMIN),
    "flag_comp": ("post", SUPPORT_ADMIN),
    "flag_resolve": ("post", SUPPORT_ADMIN),
    "reconciliation_runs": ("get", STAFF),
    "reconciliation_run_start": ("post", {ROLE_ADMIN}),
    "reconciliation_run_detail": ("get", STAFF),
    "reconciliation_run_progress": ("get", STAFF),
    "reconciliation_run_apply": ("post", {ROLE_ADMIN}),
    "reconciliation_run_discard": ("post", {ROLE_ADMIN}),
    "webhook_list": ("get", SUPPORT_ADMIN),
    "webhook_detail": ("get", SUPPORT_ADMIN),
    "webhook_replay": ("post", {ROLE_ADMIN}),
    "webhook_replay_dead": ("post", {ROLE_ADMIN}),
    "dispute_list": ("get", STAFF),
    "dispute_detail": ("get", STAFF),
    "dispute_stage": ("post", {ROLE_FINANCE}),
    "dispute_submit": ("post", {ROLE_FINANCE}),
    "account_evidence_panel": ("get", STAFF),
    "evidence_pdf": ("post", {ROLE_FINANCE}),
    "evidence_csv": ("post", {ROLE_FINANCE}),
    "notice_list": ("get", {ROLE_ADMIN}),
    "notice_preferences": ("post", STAFF),
    "account_erase": ("post", {ROLE_ADMIN}),
    "member_set_enabled": ("post", SUPPORT_ADMIN),
    "staff_two_factor_list": ("get", {ROLE_ADMIN}),
    "staff_two_factor_reset": ("post", {ROLE_ADMIN}),
    # Products beside Janitor (issue 19): Admins manage endpoints (their secrets show there);
    # Support and Admins read deliveries, as they read inbound webhooks; Admins replay.
    "product_endpoint_list": ("get", {ROLE_ADMIN}),
    "product_endpoint_detail": ("get", {ROLE_ADMIN}),
    "product_endpoint_set_enabled": ("post", {ROLE_ADMIN}),
    "product_endpoint_rotate_secret": ("post", {ROLE_ADMIN}),
    "delivery_list": ("get", SUPPORT_ADMIN),
    "delivery_detail": ("get", SUPPORT_ADMIN),
    "delivery_replay": ("post", {ROLE_ADMIN}),
    "api_token_list": ("get", {ROLE_ADMIN}),
    "api_token_create": ("post", {ROLE_ADMIN}),
    "api_token_revoke": ("post", {ROLE_ADMIN}),
}
# Pages with their own rules, outside the staff matrix: name -> (method, outcome per visitor).
SPECIAL = {
    "login": ("get", dict.fromkeys(VISITORS, "ok")),
    "logout": ("post", dict.fromkeys(VISITORS, "login")),  # signed out, back to the login
    "healthz": ("get", dict.fromkeys(VISITORS, "ok")),
    # From loopback (the test client's address) or with the bearer token; see test_metrics.py.
    "metrics": ("get", dict.fromkeys(VISITORS, "ok")),
    "customer_login": ("get", dict.fromkeys(VISITORS, "ok")),
    "customer_logout": ("post", dict.fromkeys(VISITORS, "app_login")),
    "customer_home": ("get", {ANON: "app_login", CUSTOMER: "ok", **dict.fromkeys(STAFF, "ok")}),
    # The second sign-in step: signed-in staff only (with nothing to verify: on to the next page).
    "two_factor_verify": ("get", {ANON: "login", CUSTOMER: "login", **dict.fromkeys(STAFF, "ok")}),
    "two_factor_enrol": ("get", {ANON: "login", CUSTOMER: "login", **dict.fromkeys(STAFF, "ok")}),
    # Machine endpoints: no session counts, only a signature or a bearer token.
    "stripe_webhook": ("post", dict.fromkeys(VISITORS, "bad_request")),
    "activity_ingest_api": ("post", dict.fromkeys(VISITORS, "unauthorized")),
    "revocation_confirm_api": ("post", dict.fromkeys(VISITORS, "unauthorized")),
    "access_detail_api": ("get", dict.fromkeys(VISITORS, "unauthorized")),
    "access_changes_api": ("get", dict.fromkeys(VISITORS, "unauthorized")),
    "accounts_batch_api": ("post", dict.fromkeys(VISITORS, "unauthorized")),
    "account_put_api": ("put", dict.fromkeys(VISITORS, "unauthorized")),
    # A signed link from the customer's grace notice: a made-up token is a 400 for anyone.
    "billing_portal": ("get", dict.fromkeys(VISITORS, "bad_request")),
}
ADMIN_SITE_PREFIX = "django-admin/"


def _patterns(resolvers, prefix=""):
    for entry in resolvers:
        if isinstance(entry, URLResolver):
            route = prefix + str(entry.pattern)
            if route.startswith(ADMIN_SITE_PREFIX):
                yield route, "django-admin"
                continue
            yield from _patterns(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name


def test_every_url_pattern_is_declared():
    declared = set(MATRIX) | set(SPECIAL) | {"django-admin"}
    found = {name for _route, name in _patterns(get_resolver().url_patterns)}
    unnamed = [route for route, name in _patterns(get_resolver().url_patterns) if not name]
    assert not unnamed, f"URL patterns without a name cannot be checked: {unnamed}"
    assert found - declared == set(), "add these URLs to the permission matrix"
    assert declared - found == set(), "the matrix names URLs that no longer exist"


@pytest.fixture
def world(db):
    requester = StaffFactory(role=ROLE_SUPPORT, email="requester@janitor.test")
    account = AccountFactory(members=2)
    revoked = AccountFactory(access_status="revoked", is_active=False)
    from accounts.services.revocation import revocation_request
    from accounts.services.tokens import api_token_create

    pending = revocation_request(account=account, requested_by=requester, reason="Fraud")
    flag = FlagFactory(account=AccountFactory(), kind="missing_subscription")
    run = ReconciliationRun.objects.create(status=RunStatus.HALTED, finished_at=timezone.now())
    event = WebhookEventFactory(status="dead")
    dispute = DisputeFactory(account=account, due_by=timezone.now() + timedelta(days=3))
    endpoint = ProductEndpoint.objects.create(name="Shop", url="http://127.0.0.1:9/events")
    delivery = deliveries_create(account=account, event_type=AccessEvent.GRACE_STARTED)[0]
    Delivery.objects.filter(pk=delivery.pk).update(status="dead")
    return {
        "public_id": account.public_id,
        "revoked": revoked.public_id,
        "pk": pending.pk,
        "flag_id": flag.pk,
        "run_id": run.pk,
        "event_pk": event.pk,
        "provider_id": dispute.provider_id,
        "staff": requester.public_id,
        "member": account.team[1].public_id,
        "endpoint_pk": endpoint.pk,
        "delivery_pk": delivery.pk,
        "token_pk": api_token_create(name="matrix", created_by=None)[0].pk,
    }


def _url(name: str, world: dict) -> str:
    kwargs_for = {
        "access_restore": {"public_id": world["revoked"]},
        "revocation_approve": {"pk": world["pk"]},
        "revocation_reject": {"pk": world["pk"]},
        "revocation_retry": {"pk": world["pk"]},
        "revocation_abandon": {"pk": world["pk"]},
        "revocation_confirm_api": {"revocation_id": world["pk"]},
        "webhook_detail": {"pk": world["event_pk"]},
        "webhook_replay": {"pk": world["event_pk"]},
        "product_endpoint_detail": {"pk": world["endpoint_pk"]},
        "product_endpoint_set_enabled": {"pk": world["endpoint_pk"]},
        "product_endpoint_rotate_secret": {"pk": world["endpoint_pk"]},
        "delivery_detail": {"pk": world["delivery_pk"]},
        "delivery_replay": {"pk": world["delivery_pk"]},
        "billing_portal": {"token": "made-up"},
        "staff_two_factor_reset": {"public_id": world["staff"]},
        "api_token_revoke": {"pk": world["token_pk"]},
        "member_set_enabled": {
            "public_id": world["public_id"],
            "member_id": world["member"],
            "action": "disable",
        },
    }
    if name in kwargs_for:
        return reverse(name, kwargs=kwargs_for[name])
    pattern = next(p for p in get_resolver().reverse_dict.getlist(name))
    params = pattern[0][0][1]
    return reverse(name, kwargs={param: world[param] for param in params})


def _visitor(role: str, **client_kwargs) -> Client:
    client = Client(**client_kwargs)
    if role == CUSTOMER:
        client.force_login(AccountFactory().member)
    elif role != ANON:
        client.force_login(StaffFactory(role=role))
    return client


def _outcome(response) -> str:
    status = response.status_code
    location = response.get("Location", "") or response.get("HX-Redirect", "")
    if status == 302 and location.startswith(reverse("login")):
        return "login"
    if status == 302 and location.startswith(reverse("customer_login")):
        return "app_login"
    if status in (302, 204) and location.startswith("/two-factor/"):
        return "two_factor"
    return {403: "forbidden", 401: "unauthorized", 400: "bad_request"}.get(status, "ok")


def _expected(name: str, role: str) -> str:
    if name in SPECIAL:
        return SPECIAL[name][1][role]
    allowed = MATRIX[name][1]
    if role == ANON:
        return "login"
    return "ok" if role in allowed else "forbidden"


CASES = [(name, role) for name in [*MATRIX, *SPECIAL] for role in VISITORS]


@pytest.mark.parametrize(("name", "role"), CASES, ids=[f"{n}-{r}" for n, r in CASES])
def test_url_as_visitor(world, stripe_fake, name, role):
    method = (MATRIX.get(name) or SPECIAL[name])[0]
    response = getattr(_visitor(role), method)(_url(name, world))
    assert response.status_code < 500, response.content[:500]
    # A form refused for missing fields is still "served"; only 400 on the machine endpoints
    # is an outcome of its own.
    outcome = _outcome(response)
    if outcome == "bad_request" and name not in SPECIAL:
        outcome = "ok"
    assert outcome == _expected(name, role), (response.status_code, response.content[:300])


POSTS = [name for name, (method, _allowed) in MATRIX.items() if method == "post"]


@pytest.mark.parametrize("name", POSTS)
def test_every_state_changing_request_needs_the_csrf_token(world, stripe_fake, name):
    allowed = MATRIX[name][1]
    role = ROLE_ADMIN if ROLE_ADMIN in allowed else next(iter(allowed))
    client = _visitor(role, enforce_csrf_checks=True)
    response = client.post(_url(name, world))
    assert response.status_code == 403
    assert b"CSRF" in response.content
    client.get(reverse("overview"))  # the cookie the dashboard's pages set
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    with_token = client.post(_url(name, world), headers={"X-CSRFToken": token})
    assert with_token.status_code != 403


# --- The Django admin site, under django-admin/ --------------------------------------------
# Its patterns are generated per registered model, so they are checked per model rather than
# listed above: every changelist, add and change page, as every visitor. The staff roles hold
# no add/change/delete permission on any model: the admin is read-only to them (a superuser,
# made by hand, administers it), and a model is readable only with its view permission.


def _admin_pages(world_user):
    from django.contrib import admin

    for model in admin.site._registry:
        opts = model._meta
        base = f"admin:{opts.app_label}_{opts.model_name}"
        view_perm = f"{opts.app_label}.view_{opts.model_name}"
        yield view_perm, "changelist", reverse(f"{base}_changelist")
        yield f"{opts.app_label}.add_{opts.model_name}", "add", reverse(f"{base}_add")
        target = world_user if model is type(world_user) else model.objects.first()
        if target is not None:
            yield view_perm, "change", reverse(f"{base}_change", args=[target.pk])


@pytest.mark.parametrize("role", VISITORS)
def test_the_admin_site_is_read_only_to_staff_and_closed_to_others(world, role):
    from accounts.roles import ROLE_PERMISSIONS

    client = _visitor(role)
    target = AccountFactory(email="admin-target@example.com")
    granted = ROLE_PERMISSIONS.get(role, frozenset())
    checked = 0
    for view_perm, page, url in _admin_pages(target):
        response = client.get(url)
        checked += 1
        if role in (ANON, CUSTOMER):
            assert response.status_code == 302, (url, response.status_code)
            assert response["Location"].startswith(reverse("admin:login")), url
            continue
        expected = 200 if page != "add" and view_perm in granted else 403
        assert response.status_code == expected, (role, url, response.status_code)
        if page == "change" and expected == 200:
            # Read-only: the page offers no save button.
            assert b'name="_save"' not in response.content, url
    assert checked >= 20


# --- Two-factor states ------------------------------------------------------------------------
# The tables above run with JANITOR_STAFF_2FA=off (the test settings). Under the production
# default ("admins") and "all", a staff member who must pass a second factor and has not in
# this session reaches nothing above but the sign-in pages: every page and action, and every
# Django admin page, sends them to enrol (no device yet) or verify (a device, not verified).


def _two_factor_visitor(role: str, state: str) -> Client:
    from tests.two_factor_support import authenticator_for, verified_client

    user = StaffFactory(role=role)
    if state == "verified":
        return verified_client(user)
    if state == "unverified":
        authenticator_for(user)
    client = Client()
    client.force_login(user)
    return client


def _state_counts() -> dict:
    from accounts.models import AccessAudit, RevocationRequest, StaffActionAudit
    from reconciliation.models import EvidenceExport, FlagNote

    models = [AccessAudit, RevocationRequest, StaffActionAudit, EvidenceExport, FlagNote]
    return {model.__name__: model.objects.count() for model in models}


TWO_FACTOR_REFUSED = [
    ("admins", ROLE_ADMIN, "no_device"),
    ("admins", ROLE_ADMIN, "unverified"),
    ("admins", ROLE_SUPPORT, "unverified"),  # enrolled though optional: verifies like anyone
    ("all", ROLE_SUPPORT, "no_device"),
    ("all", ROLE_FINANCE, "no_device"),
    ("all", ROLE_FINANCE, "unverified"),
]


@pytest.mark.parametrize(
    ("policy", "role", "state"), TWO_FACTOR_REFUSED, ids=["-".join(c) for c in TWO_FACTOR_REFUSED]
)
def test_staff_without_a_verified_device_reach_no_page_or_action(
    world, stripe_fake, settings, policy, role, state
):
    settings.JANITOR_STAFF_2FA = policy
    client = _two_factor_visitor(role, state)
    target = "/two-factor/verify/" if state == "unverified" else "/two-factor/enrol/"
    before = _state_counts()
    for name, (method, _allowed) in MATRIX.items():
        response = getattr(client, method)(_url(name, world))
        assert _outcome(response) == "two_factor", (name, response.status_code)
        assert response["Location"].startswith(target), name
    for _perm, _page, url in _admin_pages(AccountFactory(email="admin-target@example.com")):
        response = client.get(url)
        assert _outcome(response) == "two_factor", (url, response.status_code)
    assert _state_counts() == before
    # The page they are sent to, and signing in, stay open.
    for url in (target, reverse("login"), reverse("healthz")):
        assert client.get(url).status_code == 200, url


TWO_FACTOR_SERVED = [
    ("admins", ROLE_ADMIN, "verified"),
    ("admins", ROLE_SUPPORT, "no_device"),
    ("admins", ROLE_FINANCE, "no_device"),
    ("all", ROLE_SUPPORT, "verified"),
    ("all", ROLE_FINANCE, "verified"),
    ("off", ROLE_ADMIN, "unverified"),
]
TWO_FACTOR_CASES = [(name, *case) for case in TWO_FACTOR_SERVED for name in MATRIX]


@pytest.mark.parametrize(
    ("name", "policy", "role", "state"),
    TWO_FACTOR_CASES,
    ids=["-".join(c) for c in TWO_FACTOR_CASES],
)
def test_staff_who_passed_or_need_not_get_their_roles_matrix(
    world, stripe_fake, settings, name, policy, role, state
):
    settings.JANITOR_STAFF_2FA = policy
    client = _two_factor_visitor(role, state)
    response = getattr(client, MATRIX[name][0])(_url(name, world))
    assert response.status_code < 500, response.content[:500]
    outcome = _outcome(response)
    if outcome == "bad_request":
        outcome = "ok"
    assert outcome == _expected(name, role), (response.status_code, response.content[:300])
