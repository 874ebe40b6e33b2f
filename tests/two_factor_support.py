"""Helpers for the two-factor tests: a confirmed authenticator, its current code, a verified
test-client session (what the verify page leaves behind)."""

from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice


def authenticator_for(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def current_code(device: TOTPDevice) -> str:
    """What the user's app shows now, computed from the device's key as the app does."""
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    return f"{code:0{device.digits}d}"


def verified_client(user, device: TOTPDevice | None = None, **client_kwargs) -> Client:
    """A client signed in as `user` whose session passed `device` (made if not given)."""
    client = Client(**client_kwargs)
    client.force_login(user)
    device = device or authenticator_for(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client
