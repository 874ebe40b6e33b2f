"""Member actions on an account page: disable or enable one person (audited)."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from accounts.forms import MemberChangeForm
from accounts.models import User
from accounts.services.members import MemberError, member_set_enabled
from janitor.permissions import staff_required

ACTIONS = {"disable": False, "enable": True}


@require_POST
@staff_required("accounts.manage_members")
def member_set_enabled_view(request, public_id: str, member_id: str, action: str):
    if action not in ACTIONS:
        raise Http404("Unknown member action: use enable or disable.")
    member = get_object_or_404(
        User, public_id=member_id, account__public_id=public_id, is_staff=False
    )
    form = MemberChangeForm(request.POST)
    if not form.is_valid():
        errors = [str(e) for field_errors in form.errors.values() for e in field_errors]
        messages.error(request, f"{member.email} not changed: " + " ".join(errors))
        return redirect("account_detail", public_id=public_id)
    try:
        audit = member_set_enabled(
            member=member,
            enabled=ACTIONS[action],
            actor=request.user,
            reason=form.cleaned_data["reason"],
        )
    except MemberError as error:
        messages.error(request, f"{member.email} not changed: {error}")
        return redirect("account_detail", public_id=public_id)
    if ACTIONS[action]:
        messages.success(request, f"{member.email} enabled: they can sign in again.")
    else:
        ended = audit.details.get("sessions_ended", 0)
        messages.success(
            request, f"{member.email} disabled: {ended} session(s) ended, sign-in refused."
        )
    return redirect("account_detail", public_id=public_id)
