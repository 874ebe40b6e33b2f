"""The products' API tokens, for Admins: list, create (the raw value shown once), revoke."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.forms import ApiTokenCreateForm, ApiTokenRevokeForm
from accounts.models import ApiToken
from accounts.selectors import api_token_list
from accounts.services.tokens import ApiTokenError, api_token_issue, api_token_revoke_by_staff
from janitor.permissions import staff_required

PAGE_SIZE = 50
TEMPLATE = "accounts/api_tokens.html"


def _render(
    request,
    *,
    form: ApiTokenCreateForm | None = None,
    created: tuple[ApiToken, str] | None = None,
    notice: str = "",
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    page = Paginator(api_token_list(), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "tokens": page,
        "form": form or ApiTokenCreateForm(),
        "revoke_form": ApiTokenRevokeForm(),
        "created": created[0] if created else None,
        # The raw value exists only in this response: only its hash is stored.
        "raw_token": created[1] if created else "",
        "notice": notice,
        "error": error,
    }
    template = TEMPLATE
    if request.htmx and request.htmx.target == "api-tokens":
        template = f"{TEMPLATE}#api-tokens"
    return render(request, template, context, status=status)


@require_GET
@staff_required("accounts.manage_api_tokens")
def api_token_list_view(request) -> HttpResponse:
    return _render(request)


@never_cache  # the response carries the raw token, once
@require_POST
@staff_required("accounts.manage_api_tokens")
def api_token_create_view(request) -> HttpResponse:
    form = ApiTokenCreateForm(request.POST)
    if not form.is_valid():
        return _render(request, form=form, status=400)
    try:
        created = api_token_issue(
            name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"], actor=request.user
        )
    except ApiTokenError as error:
        form.add_error(None, str(error))
        return _render(request, form=form, status=error.status)
    return _render(request, created=created)


@require_POST
@staff_required("accounts.manage_api_tokens")
def api_token_revoke_view(request, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk)
    form = ApiTokenRevokeForm(request.POST)
    error = notice = ""
    if not form.is_valid():
        error = "Say why the token is revoked (for the audit)."
    else:
        try:
            api_token_revoke_by_staff(
                token=token, actor=request.user, reason=form.cleaned_data["reason"]
            )
        except ApiTokenError as exc:
            error = str(exc)
        else:
            notice = f"Revoked {token.name} ({token.prefix}…): it no longer authenticates."
    if request.htmx:
        return _render(request, notice=notice, error=error, status=400 if error else 200)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, notice)
    return redirect("api_token_list")
