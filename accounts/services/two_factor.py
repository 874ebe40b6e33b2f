"""Writes for staff two-factor sign-in: enrolment, verification, backup codes, an Admin's reset.

Devices are django-otp's: one TOTP device (an authenticator app) and one static device holding
single-use backup codes. Who must use them is accounts.selectors.two_factor_required.
"""

from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import StaffActionAudit, StaffActionKind, User
from janitor.errors import JanitorError

TOTP_DEVICE_NAME = "Authenticator app"
BACKUP_DEVICE_NAME = "Backup codes"
BACKUP_CODE_COUNT = 10


class TwoFactorError(JanitorError):
    """A two-factor action that cannot be done; the message says why, for the page."""


def two_factor_enrol_start(*, user: User) -> TOTPDevice:
    """The user's unconfirmed TOTP device, made now if there is none (a fresh secret)."""
    if not user.is_staff:
        raise TwoFactorError("Two-factor sign-in is for staff accounts.")
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        raise TwoFactorError("An authenticator is enrolled already; an Admin can reset it.")
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    return device or TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


@transaction.atomic
def two_factor_enrol_confirm(*, request: HttpRequest, user: User, token: str) -> list[str]:
    """Confirm the unconfirmed TOTP device with a code from the app, mark this session verified
    and return fresh backup codes (shown once). Wrong code: TwoFactorError, nothing stored."""
    device = (
        TOTPDevice.objects.select_for_update()
        .filter(user=user, confirmed=False)
        .order_by("-id")
        .first()
    )
    if device is None:
        raise TwoFactorError("Start the enrolment again: there is no authenticator to confirm.")
    if not device.verify_token(token.strip()):
        raise TwoFactorError("That code is not right. Check the app's clock and try again.")
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    codes = two_factor_backup_codes_replace(user=user)
    otp_login(request, device)
    return codes


def two_factor_backup_codes_replace(*, user: User) -> list[str]:
    """New single-use backup codes; the old ones stop working. Returns them (shown once)."""
    with transaction.atomic():
        device, _ = StaticDevice.objects.get_or_create(
            user=user, name=BACKUP_DEVICE_NAME, defaults={"confirmed": True}
        )
        device.token_set.all().delete()
        codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
    return codes


def two_factor_verify(*, request: HttpRequest, user: User, token: str) -> bool:
    """Check a code from the app (6 digits) or a backup code (8 characters, used up by this
    check); on a match, mark this session verified. Each device throttles its own failures,
    so only the kind of device the code is for is asked."""
    token = token.strip().replace(" ", "")
    from_app = len(token) == 6 and token.isascii() and token.isdigit()
    devices = (
        TOTPDevice.objects.filter(user=user, confirmed=True)
        if from_app
        else StaticDevice.objects.filter(user=user, confirmed=True)
    )
    for device in devices:
        if device.verify_token(token if from_app else token.lower()):
            otp_login(request, device)
            return True
    return False


@transaction.atomic
def two_factor_reset(*, target: User, actor: User, reason: str) -> StaffActionAudit:
    """An Admin removes another staff member's devices (a lost phone), ends their sessions and
    audits it. They enrol again at their next sign-in."""
    if not reason.strip():
        raise TwoFactorError("Say why the devices are reset (e.g. the ticket of the lost phone).")
    if target.pk == actor.pk:
        raise TwoFactorError("Another Admin must reset your devices.")
    if not target.is_staff:
        raise TwoFactorError("Only staff accounts have two-factor devices.")
    totp_removed, _ = TOTPDevice.objects.filter(user=target).delete()
    static = StaticDevice.objects.filter(user=target)
    codes_removed = StaticToken.objects.filter(device__in=static).count()
    static.delete()
    # A new auth hash: every session of theirs ends, verified or not, wherever it is.
    User.objects.filter(pk=target.pk).update(session_version=F("session_version") + 1)
    return StaffActionAudit.objects.create(
        kind=StaffActionKind.TWO_FACTOR_RESET,
        subject=target,
        at=timezone.now(),
        actor=actor.email,
        actor_user=actor,
        reason=reason.strip(),
        details={"authenticators_removed": totp_removed, "backup_codes_removed": codes_removed},
    )
