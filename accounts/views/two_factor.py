"""Staff two-factor pages: enrol an authenticator, verify after the password, Admins reset."""

import base64

import segno
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import TwoFactorCodeForm, TwoFactorEnrolActionForm, TwoFactorResetForm
from accounts.models import User
from accounts.selectors import staff_two_factor_list, two_factor_enrolled
from accounts.services.two_factor import (
    TwoFactorError,
    two_factor_backup_codes_replace,
    two_factor_enrol_confirm,
    two_factor_enrol_start,
    two_factor_reset,
    two_factor_verify,
)
from janitor.permissions import staff_required


def _next_url(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("overview")


def _staff_signed_in(request):
    """The two-factor pages are for signed-in staff; others go to the staff login."""
    user = request.user
    if not user.is_authenticated or not user.is_staff:
        return redirect_to_login(request.get_full_path())
    return None


@never_cache
@require_http_methods(["GET", "POST"])
def two_factor_verify_view(request):
    """The second step of sign-in, after the password (the login view is unchanged)."""
    refused = _staff_signed_in(request)
    if refused:
        return refused
    if request.user.is_verified() or not two_factor_enrolled(user=request.user):
        return HttpResponseRedirect(_next_url(request))
    form = TwoFactorCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if two_factor_verify(request=request, user=request.user, token=form.cleaned_data["token"]):
            return HttpResponseRedirect(_next_url(request))
        form.add_error("token", "That code is not right (or was used already). Try again.")
    status = 400 if form.errors else 200
    return render(
        request,
        "accounts/two_factor_verify.html",
        {"form": form, "next": request.POST.get("next") or request.GET.get("next", "")},
        status=status,
    )


def _enrol_context(request, *, device, form=None) -> dict:
    return {
        "device": device,
        "form": form or TwoFactorCodeForm(),
        "qr_svg": segno.make(device.config_url, error="m").svg_inline(scale=4, border=2),
        "secret": base64.b32encode(device.bin_key).decode(),
        "next": request.POST.get("next") or request.GET.get("next", ""),
    }


@never_cache  # the page shows a secret key, and backup codes once
@require_http_methods(["GET", "POST"])
def two_factor_enrol_view(request):
    """Set up an authenticator: a secret as a QR code, confirmed by one code from the app;
    then the backup codes, shown once. With a device already: only new backup codes, and
    only from a verified session."""
    refused = _staff_signed_in(request)
    if refused:
        return refused
    user = request.user
    enrolled = two_factor_enrolled(user=user)
    if enrolled and not user.is_verified():
        return redirect(f"{reverse('two_factor_verify')}?next={reverse('two_factor_enrol')}")
    action = (
        TwoFactorEnrolActionForm(request.POST).action_name() if request.method == "POST" else ""
    )
    if action == "backup_codes" and enrolled:
        codes = two_factor_backup_codes_replace(user=user)
        return render(request, "accounts/two_factor_codes.html", {"codes": codes, "next": ""})
    if enrolled:
        return render(request, "accounts/two_factor_enrol.html", {"enrolled": True})
    if request.method == "GET":
        return render(request, "accounts/two_factor_enrol.html", {"next": _next_url(request)})
    try:
        device = two_factor_enrol_start(user=user)
    except TwoFactorError as error:
        messages.error(request, str(error))
        return redirect("two_factor_enrol")
    if action != "confirm":
        return render(
            request, "accounts/two_factor_enrol.html", _enrol_context(request, device=device)
        )
    form = TwoFactorCodeForm(request.POST)
    if form.is_valid():
        try:
            codes = two_factor_enrol_confirm(
                request=request, user=user, token=form.cleaned_data["token"]
            )
        except TwoFactorError as error:
            form.add_error("token", str(error))
        else:
            context = {"codes": codes, "next": _next_url(request)}
            return render(request, "accounts/two_factor_codes.html", context)
    return render(
        request,
        "accounts/two_factor_enrol.html",
        _enrol_context(request, device=device, form=form),
        status=400,
    )


@staff_required("accounts.reset_two_factor")
def staff_two_factor_list_view(request):
    return render(
        request,
        "accounts/staff_two_factor.html",
        {"rows": staff_two_factor_list(), "form": TwoFactorResetForm()},
    )


@require_POST
@staff_required("accounts.reset_two_factor")
def staff_two_factor_reset_view(request, public_id: str):
    target = get_object_or_404(User, public_id=public_id, is_staff=True)
    form = TwoFactorResetForm(request.POST)
    if not form.is_valid():
        # An ErrorList iterates its messages as str; django-stubs says ValidationError too.
        messages.error(
            request,
            "Say why the devices are reset: " + " ".join(form.errors.get("reason", [])),  # type: ignore[arg-type]
        )
        return redirect("staff_two_factor_list")
    try:
        two_factor_reset(target=target, actor=request.user, reason=form.cleaned_data["reason"])
    except TwoFactorError as error:
        messages.error(request, str(error))
        return redirect("staff_two_factor_list")
    messages.success(
        request,
        f"Two-factor devices of {target.email} removed and their sessions ended: "
        "they enrol again at their next sign-in.",
    )
    return redirect("staff_two_factor_list")
