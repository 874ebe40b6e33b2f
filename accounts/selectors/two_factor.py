"""Reads for staff two-factor sign-in: who must pass it, who has, and the Admins' list."""

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Exists, OuterRef
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from accounts.roles import ROLE_ADMIN


def two_factor_required(*, user: User) -> bool:
    """Whether this signed-in user must pass a second factor (settings.JANITOR_STAFF_2FA)."""
    policy = settings.JANITOR_STAFF_2FA
    if policy == "off" or not user.is_staff:
        return False
    if policy == "all" or user.is_superuser:
        return True
    return user.staff_role == ROLE_ADMIN


def two_factor_enrolled(*, user: User) -> bool:
    """Whether the user has a confirmed authenticator (or backup codes) to verify with: one
    query for both device kinds (the middleware asks on every page of an unverified staff
    member; django_otp's devices_for_user costs a query per kind)."""
    return User.objects.filter(
        Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True))
        | Exists(StaticDevice.objects.filter(user=OuterRef("pk"), confirmed=True)),
        pk=user.pk,
    ).exists()


@dataclass
class StaffTwoFactorRow:
    user: User
    role: str
    enrolled: bool
    required: bool
    backup_codes_left: int


def staff_two_factor_list() -> list[StaffTwoFactorRow]:
    """Every staff member with their two-factor state, in three queries."""
    staff = (
        User.objects.filter(is_staff=True)
        .prefetch_related("groups")
        .annotate(
            has_totp=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)),
        )
        .order_by("email")
    )
    codes = dict(
        StaticDevice.objects.filter(user__is_staff=True)
        .values_list("user_id")
        .annotate(left=Count("token_set"))
    )
    return [
        StaffTwoFactorRow(
            user=member,
            role=member.staff_role,
            enrolled=member.has_totp,
            required=two_factor_required(user=member),
            backup_codes_left=codes.get(member.pk, 0),
        )
        for member in staff
    ]
