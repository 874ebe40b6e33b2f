"""Privacy actions: an Admin erases a customer's personal data on request (confirmed, audited)."""

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from accounts.models import Account
from janitor.permissions import staff_required
from reconciliation.services.privacy import ErasureError, account_erase


class AccountEraseForm(forms.Form):
    reason = forms.CharField(max_length=2000, help_text="The request's reference.")
    confirm_email = forms.CharField(max_length=254, help_text="Type the account's email.")

    def __init__(self, *args, account: Account, **kwargs):
        super().__init__(*args, **kwargs)
        self.account = account

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A reason is required.")
        return reason

    def clean_confirm_email(self):
        typed = self.cleaned_data["confirm_email"].strip()
        if typed.lower() != self.account.email.lower():
            raise forms.ValidationError("Type the account's email exactly to confirm.")
        return typed


@require_POST
@staff_required("accounts.erase_customer")
def account_erase_view(request, public_id: str):
    account = get_object_or_404(Account, public_id=public_id)
    form = AccountEraseForm(request.POST, account=account)
    if not form.is_valid():
        errors = [str(e) for field_errors in form.errors.values() for e in field_errors]
        messages.error(request, "Not erased: " + " ".join(errors))
        return redirect("account_detail", public_id=public_id)
    try:
        account_erase(account=account, actor=request.user, reason=form.cleaned_data["reason"])
    except ErasureError as error:
        messages.error(request, f"Not erased: {error}")
        return redirect("account_detail", public_id=public_id)
    messages.success(
        request,
        f"Personal data of {public_id} erased; its audit trail stays. The erasure is audited.",
    )
    return redirect("account_detail", public_id=public_id)
