"""Two-factor sign-in in real Chromium: an Admin enrols an authenticator after the password,
then signs in again with the password and a code from the app."""

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.roles import ROLE_ADMIN
from tests.factories import StaffFactory


def _code(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """What the app shows (steps_ahead=1: the next 30 s window, inside the device's
    tolerance, since a code already used in this window is refused)."""
    value = totp(
        device.bin_key,
        step=device.step,
        t0=device.t0,
        digits=device.digits,
        drift=device.drift + steps_ahead,
    )
    return f"{value:0{device.digits}d}"


@pytest.mark.django_db(transaction=True)
def test_an_admin_enrols_then_signs_in_with_a_code(page, live_server, login_as, settings):
    settings.JANITOR_STAFF_2FA = "admins"
    admin = StaffFactory(role=ROLE_ADMIN, email="admin@janitor.test")

    login_as(page, admin)
    assert "/two-factor/enrol/" in page.url
    page.get_by_test_id("start-enrolment").click()
    page.get_by_test_id("qr-code").locator("svg").wait_for()
    device = TOTPDevice.objects.get(user=admin, confirmed=False)
    shown_key = page.get_by_test_id("totp-secret").inner_text()
    assert len(shown_key) == 32  # base32 of the 20-byte key, for typing in by hand
    page.fill("input[name=token]", _code(device))
    page.get_by_test_id("confirm-enrolment").click()
    codes = page.get_by_test_id("backup-codes").locator("code").all_inner_texts()
    assert len(codes) == 10
    assert set(codes) == set(StaticToken.objects.values_list("token", flat=True))
    page.get_by_test_id("continue").click()
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text() == "Overview"

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state("networkidle")
    login_as(page, admin)
    assert "/two-factor/verify/" in page.url
    page.fill("input[name=token]", "000000")
    page.get_by_test_id("verify").click()
    assert "not right" in page.locator("[role=alert]").inner_text()
    device.refresh_from_db()
    device.throttle_reset()  # the wrong code makes the device wait a second
    page.fill("input[name=token]", _code(device, steps_ahead=1))
    page.get_by_test_id("verify").click()
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text() == "Overview"
    page.goto(f"{live_server.url}/staff/two-factor/")
    assert page.locator("h1").inner_text() == "Staff two-factor"
