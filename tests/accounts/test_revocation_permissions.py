"""Every revocation URL and action, for every kind of visitor: the expected status, CSRF on POST."""

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from accounts.models import AccessStatus, RevocationRequest, RevocationStatus
from accounts.roles import ROLE_ADMIN, ROLE_FINANCE, ROLE_SUPPORT
from accounts.services.access_status import access_status_change
from accounts.services.revocation import revocation_request
from tests.factories import AccountFactory, StaffFactory

ROLES = ["anonymous", "customer", ROLE_SUPPORT, ROLE_FINANCE, ROLE_ADMIN]


@pytest.fixture
def world(db):
    """A customer with a pending request (by a requester who is none of the visitors),
    a revoked customer, and a customer with a failed request."""
    requester = StaffFactory(role=ROLE_SUPPORT, email="requester@janitor.test")
    target = AccountFactory()
    pending = revocation_request(account=target, requested_by=requester, reason="Fraud")
    revoked = AccountFactory()
    for status in (AccessStatus.REVOKED_PENDING, AccessStatus.REVOKED):
        access_status_change(account=revoked, to_status=status, actor="a@b.c", reason="x")
    failing = AccountFactory()
    failed = revocation_request(account=failing, requested_by=requester, reason="Fraud")
    RevocationRequest.objects.filter(pk=failed.pk).update(status=RevocationStatus.FAILED)
    fresh = AccountFactory()
    return {
        "target": target,
        "pending": pending,
        "revoked": revoked,
        "failed": failed,
        "fresh": fresh,
    }


def _visitor(role: str, **client_kwargs) -> Client:
    client = Client(**client_kwargs)
    if role == "customer":
        client.force_login(AccountFactory().member)
    elif role != "anonymous":
        client.force_login(StaffFactory(role=role))
    return client


def _requests(world):
    """(name, method, url, data, roles allowed)."""
    target, revoked = world["target"].public_id, world["revoked"].public_id
    everyone = {ROLE_SUPPORT, ROLE_FINANCE, ROLE_ADMIN}
    return [
        ("panel", "get", reverse("account_access_actions", args=[target]), {}, everyone),
        ("revocations", "get", reverse("revocation_list"), {}, everyone),
        ("audit", "get", reverse("audit_list"), {}, everyone),
        ("audit csv", "get", reverse("audit_list"), {"format": "csv"}, {ROLE_FINANCE, ROLE_ADMIN}),
        (
            "request",
            "post",
            reverse("revocation_request_create", args=[world["fresh"].public_id]),
            {"reason": "Fraud"},
            everyone,
        ),
        (
            "restore",
            "post",
            reverse("access_restore", args=[revoked]),
            {"reason": "ok"},
            {ROLE_ADMIN},
        ),
        (
            "approve",
            "post",
            reverse("revocation_approve", args=[world["pending"].pk]),
            {"comment": "ok"},
            {ROLE_ADMIN},
        ),
        (
            "reject",
            "post",
            reverse("revocation_reject", args=[world["pending"].pk]),
            {"comment": "no"},
            {ROLE_ADMIN},
        ),
        ("retry", "post", reverse("revocation_retry", args=[world["failed"].pk]), {}, {ROLE_ADMIN}),
    ]


READS = ["panel", "revocations", "audit", "audit csv"]
WRITES = ["request", "restore", "approve", "reject", "retry"]
ACTIONS = READS + WRITES


@pytest.mark.smoke
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", ACTIONS)
def test_every_url_gives_the_expected_status(world, role, action):
    name, method, url, data, allowed = next(r for r in _requests(world) if r[0] == action)
    response = getattr(_visitor(role), method)(url, data)
    if role == "anonymous":
        assert response.status_code == 302
        assert response.url.startswith(reverse("login") + "?next=")
    elif role in allowed:
        assert response.status_code == (200 if method == "get" else 302), response.content[:300]
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("action", WRITES)
def test_every_post_enforces_csrf(world, action):
    name, method, url, data, allowed = next(r for r in _requests(world) if r[0] == action)
    client = _visitor(ROLE_ADMIN, enforce_csrf_checks=True)
    before = _state(world)
    assert client.post(url, data).status_code == 403
    assert _state(world) == before
    client.get(reverse("revocation_list"))  # sets the CSRF cookie
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    assert client.post(url, data, headers={"X-CSRFToken": token}).status_code == 302
    assert _state(world) != before


def _state(world):
    return (
        sorted(RevocationRequest.objects.values_list("pk", "status")),
        world["revoked"].__class__.objects.get(pk=world["revoked"].pk).access_status,
    )


@pytest.mark.parametrize("action", WRITES)
def test_actions_refuse_get(world, action):
    name, method, url, data, allowed = next(r for r in _requests(world) if r[0] == action)
    assert _visitor(ROLE_ADMIN).get(url).status_code == 405
