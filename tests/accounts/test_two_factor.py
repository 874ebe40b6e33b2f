"""Two-factor sign-in for staff: enrolment, the verify step after the password, single-use
backup codes, the policy switch, the Django admin, and an Admin's audited reset."""

import re

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import StaffActionAudit, StaffActionKind, User
from accounts.roles import ROLE_ADMIN, ROLE_FINANCE, ROLE_SUPPORT
from accounts.services.two_factor import BACKUP_CODE_COUNT, two_factor_backup_codes_replace
from tests.factories import PASSWORD, StaffFactory
from tests.two_factor_support import authenticator_for, current_code, verified_client

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

ENROL, VERIFY = "/two-factor/enrol/", "/two-factor/verify/"


@pytest.fixture(autouse=True)
def _admins_policy(settings):
    settings.JANITOR_STAFF_2FA = "admins"  # the production default (the test settings: off)
    return settings


def _password_login(user) -> Client:
    """Through the real staff login form, as a person would."""
    client = Client()
    response = client.post(reverse("login"), {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    return client


def test_an_admin_without_a_device_is_sent_to_enrol_then_enrols(admin_user):
    client = _password_login(admin_user)
    response = client.get(reverse("overview"))
    assert response.status_code == 302 and response["Location"].startswith(ENROL)

    page = client.post(ENROL, {"action": "start", "next": "/"})
    assert page.status_code == 200
    assert b"<svg" in page.content and b'data-testid="qr-code"' in page.content
    assert "no-store" in page["Cache-Control"]  # a secret key on the page
    device = TOTPDevice.objects.get(user=admin_user)
    assert not device.confirmed
    assert device.config_url.startswith("otpauth://totp/Janitor")

    # Starting again keeps the same secret (the QR code already scanned stays good).
    client.post(ENROL, {"action": "start"})
    assert TOTPDevice.objects.filter(user=admin_user).count() == 1

    done = client.post(ENROL, {"action": "confirm", "token": current_code(device), "next": "/"})
    assert done.status_code == 200
    codes = re.findall(rb"<li><code>([a-z2-7]+)</code></li>", done.content)
    assert len(codes) == BACKUP_CODE_COUNT
    device.refresh_from_db()
    assert device.confirmed
    assert StaticToken.objects.filter(device__user=admin_user).count() == BACKUP_CODE_COUNT
    assert client.get(reverse("overview")).status_code == 200


def test_a_wrong_enrolment_code_confirms_nothing(admin_user):
    client = _password_login(admin_user)
    client.post(ENROL, {"action": "start"})
    response = client.post(ENROL, {"action": "confirm", "token": "000000"})
    assert response.status_code == 400
    assert not TOTPDevice.objects.filter(user=admin_user, confirmed=True).exists()
    assert not StaticDevice.objects.filter(user=admin_user).exists()
    assert client.get(reverse("overview"))["Location"].startswith(ENROL)


def test_an_enrolled_admin_verifies_after_the_password(admin_user):
    device = authenticator_for(admin_user)
    client = _password_login(admin_user)
    response = client.get(reverse("revocation_list"))
    assert response.status_code == 302
    assert response["Location"] == f"{VERIFY}?next=%2Frevocations%2F"
    # The enrol page does not let a second authenticator in past the first one.
    assert client.post(ENROL, {"action": "start"})["Location"].startswith(VERIFY)
    assert TOTPDevice.objects.filter(user=admin_user).count() == 1

    refused = client.post(VERIFY, {"token": "123456", "next": "/revocations/"})
    assert refused.status_code == 400
    assert client.get(reverse("revocation_list")).status_code == 302

    device.refresh_from_db()
    device.throttle_reset()  # the failure above makes the device wait a second
    ok = client.post(VERIFY, {"token": current_code(device), "next": "/revocations/"})
    assert ok.status_code == 302 and ok["Location"] == "/revocations/"
    assert client.get(reverse("revocation_list")).status_code == 200


def test_failures_throttle_the_device(admin_user):
    device = authenticator_for(admin_user)
    client = _password_login(admin_user)
    assert client.post(VERIFY, {"token": "000000"}).status_code == 400
    # Right code, but straight after a failure: refused until the delay has passed.
    assert client.post(VERIFY, {"token": current_code(device)}).status_code == 400
    device.refresh_from_db()
    assert device.throttling_failure_count == 1


def test_verify_refuses_an_offsite_next(admin_user):
    device = authenticator_for(admin_user)
    client = _password_login(admin_user)
    response = client.post(VERIFY, {"token": current_code(device), "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == reverse("overview")


def test_a_backup_code_signs_in_once(admin_user):
    authenticator_for(admin_user)
    codes = two_factor_backup_codes_replace(user=admin_user)
    first = _password_login(admin_user)
    assert first.post(VERIFY, {"token": codes[0].upper()}).status_code == 302
    assert first.get(reverse("overview")).status_code == 200
    assert StaticToken.objects.filter(device__user=admin_user).count() == BACKUP_CODE_COUNT - 1

    second = _password_login(admin_user)
    assert second.post(VERIFY, {"token": codes[0]}).status_code == 400
    assert second.get(reverse("overview")).status_code == 302


def test_new_backup_codes_replace_the_old_ones(admin_user):
    device = authenticator_for(admin_user)
    old = two_factor_backup_codes_replace(user=admin_user)
    client = verified_client(admin_user, device)
    page = client.post(ENROL, {"action": "backup_codes"})
    new = [c.decode() for c in re.findall(rb"<li><code>([a-z2-7]+)</code></li>", page.content)]
    assert len(new) == BACKUP_CODE_COUNT
    stored = StaticToken.objects.filter(device__user=admin_user)
    tokens = set(stored.values_list("token", flat=True))
    assert tokens == set(new) and not tokens & set(old)


@pytest.mark.parametrize(
    ("policy", "role", "must_enrol"),
    [
        ("admins", ROLE_ADMIN, True),
        ("admins", ROLE_SUPPORT, False),
        ("admins", ROLE_FINANCE, False),
        ("all", ROLE_SUPPORT, True),
        ("all", ROLE_FINANCE, True),
        ("off", ROLE_ADMIN, False),
    ],
)
def test_the_policy_decides_who_must_enrol(settings, policy, role, must_enrol):
    settings.JANITOR_STAFF_2FA = policy
    client = Client()
    client.force_login(StaffFactory(role=role))
    response = client.get(reverse("overview"))
    if must_enrol:
        assert response.status_code == 302 and response["Location"].startswith(ENROL)
    else:
        assert response.status_code == 200


def test_support_who_enrolled_anyway_must_verify(support_user):
    authenticator_for(support_user)
    client = Client()
    client.force_login(support_user)
    assert client.get(reverse("review_queue"))["Location"].startswith(VERIFY)


def test_a_superuser_must_enrol_under_the_admins_policy(db):
    superuser = User.objects.create_superuser("root@janitor.test", PASSWORD)
    client = Client()
    client.force_login(superuser)
    response = client.get("/django-admin/")
    assert response.status_code == 302 and response["Location"].startswith(ENROL)


def test_the_django_admin_needs_the_second_factor_too(admin_user):
    device = authenticator_for(admin_user)
    # The admin's own login form takes the password only: the next page asks for the code.
    client = Client()
    response = client.post(
        "/django-admin/login/?next=/django-admin/",
        {"username": admin_user.email, "password": PASSWORD, "next": "/django-admin/"},
    )
    assert response.status_code == 302
    page = client.get("/django-admin/accounts/user/")
    assert page.status_code == 302 and page["Location"].startswith(VERIFY)
    verified = verified_client(admin_user, device)
    assert verified.get("/django-admin/accounts/user/").status_code == 200


def test_htmx_requests_are_redirected_by_header(admin_user):
    client = Client()
    client.force_login(admin_user)
    response = client.get(reverse("review_queue"), headers={"HX-Request": "true"})
    assert response.status_code == 204 and response["HX-Redirect"].startswith(ENROL)


def test_customers_and_anonymous_visitors_are_not_asked(customer):
    anon = Client().get(VERIFY)
    assert anon.status_code == 302 and anon["Location"].startswith(reverse("login"))
    client = Client()
    client.force_login(customer)
    assert client.get(reverse("customer_home")).status_code == 200
    assert client.get(ENROL)["Location"].startswith(reverse("login"))
    assert not TOTPDevice.objects.exists()


# --- An Admin resets another staff member's devices ------------------------------------------


@pytest.fixture
def lost_phone(admin_user):
    """admin@ lost their phone: an authenticator and backup codes on file."""
    authenticator_for(admin_user)
    two_factor_backup_codes_replace(user=admin_user)
    return admin_user


def _reset(client, user, reason="Lost phone, ticket OPS-42, identity checked by video call"):
    return client.post(reverse("staff_two_factor_reset", args=[user.public_id]), {"reason": reason})


def test_an_admin_resets_another_admins_devices_audited(lost_phone, second_admin):
    lost_session = verified_client(lost_phone, TOTPDevice.objects.get(user=lost_phone))
    version = lost_phone.session_version
    client = verified_client(second_admin)
    page = client.get(reverse("staff_two_factor_list"))
    assert page.status_code == 200 and lost_phone.email.encode() in page.content

    response = _reset(client, lost_phone)
    assert response.status_code == 302

    assert not TOTPDevice.objects.filter(user=lost_phone).exists()
    assert not StaticDevice.objects.filter(user=lost_phone).exists()
    lost_phone.refresh_from_db()
    assert lost_phone.session_version == version + 1
    audit = StaffActionAudit.objects.get()
    assert audit.kind == StaffActionKind.TWO_FACTOR_RESET
    assert (audit.subject, audit.actor_user, audit.actor) == (
        lost_phone,
        second_admin,
        second_admin.email,
    )
    assert "OPS-42" in audit.reason
    assert audit.details == {"authenticators_removed": 1, "backup_codes_removed": BACKUP_CODE_COUNT}
    # Their old session is gone; signing in again leads to enrolment.
    assert lost_session.get(reverse("overview"))["Location"].startswith(reverse("login"))
    assert _password_login(lost_phone).get(reverse("overview"))["Location"].startswith(ENROL)


def test_an_admin_cannot_reset_their_own_devices(lost_phone):
    client = verified_client(lost_phone, TOTPDevice.objects.get(user=lost_phone))
    response = _reset(client, lost_phone)
    assert response.status_code == 302
    assert TOTPDevice.objects.filter(user=lost_phone).count() == 1
    assert StaffActionAudit.objects.count() == 0


def test_a_reset_needs_a_reason(lost_phone, second_admin):
    response = _reset(verified_client(second_admin), lost_phone, reason="   ")
    assert response.status_code == 302
    assert TOTPDevice.objects.filter(user=lost_phone).count() == 1
    assert StaffActionAudit.objects.count() == 0


@pytest.mark.parametrize("role", [ROLE_SUPPORT, ROLE_FINANCE])
def test_only_admins_reset_devices(lost_phone, role):
    client = Client()
    client.force_login(StaffFactory(role=role))
    assert _reset(client, lost_phone).status_code == 403
    assert client.get(reverse("staff_two_factor_list")).status_code == 403
    assert TOTPDevice.objects.filter(user=lost_phone).count() == 1
    assert StaffActionAudit.objects.count() == 0


def test_an_unverified_admin_cannot_reset(lost_phone, second_admin):
    authenticator_for(second_admin)
    client = Client()
    client.force_login(second_admin)
    response = _reset(client, lost_phone)
    assert response.status_code == 302 and response["Location"] == VERIFY
    assert TOTPDevice.objects.filter(user=lost_phone).count() == 1
    assert StaffActionAudit.objects.count() == 0


def test_the_staff_list_reads_in_a_fixed_number_of_queries(
    second_admin, django_assert_max_num_queries
):
    for role in (ROLE_ADMIN, ROLE_SUPPORT, ROLE_FINANCE) * 5:
        authenticator_for(StaffFactory(role=role))
    client = verified_client(second_admin)
    with django_assert_max_num_queries(12):
        assert client.get(reverse("staff_two_factor_list")).status_code == 200
