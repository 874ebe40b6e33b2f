"""The product Endpoints pages (Admins): list and add, change, disable or enable, rotate the
signing secret."""

from django.contrib import messages
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from janitor.permissions import staff_required
from products.forms import EndpointForm
from products.selectors.deliveries import endpoint_changes, endpoint_get, endpoint_list
from products.services.endpoints import (
    EndpointError,
    endpoint_create,
    endpoint_secret_rotate,
    endpoint_set_enabled,
    endpoint_update,
)

MANAGE_PERM = "products.manage_endpoints"


def _back_to(request, url: str):
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_http_methods(["GET", "POST"])
@staff_required(MANAGE_PERM)
def endpoint_list_view(request):
    """Every endpoint with its waiting and failing deliveries, and the form to add one."""
    form = EndpointForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                endpoint = endpoint_create(actor=request.user, **form.cleaned_data)
            except EndpointError as error:
                form.add_error(None, str(error))
            else:
                messages.success(
                    request,
                    f"{endpoint.name} added. Give the product its signing secret, shown below.",
                )
                return redirect("product_endpoint_detail", pk=endpoint.pk)
        status = 400
    return render(
        request,
        "products/endpoint_list.html",
        {"rows": endpoint_list(), "form": form},
        status=status,
    )


@require_http_methods(["GET", "POST"])
@staff_required(MANAGE_PERM)
def endpoint_detail_view(request, pk: int):
    endpoint = endpoint_get(pk=pk)
    initial = {
        "name": endpoint.name,
        "url": endpoint.url,
        "holds_sessions": endpoint.holds_sessions,
        "token": endpoint.token_id,
    }
    form = EndpointForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                endpoint_update(endpoint=endpoint, actor=request.user, **form.cleaned_data)
            except EndpointError as error:
                form.add_error(None, str(error))
            else:
                messages.success(request, f"{form.cleaned_data['name']} saved.")
                return redirect("product_endpoint_detail", pk=pk)
        status = 400
    return render(
        request,
        "products/endpoint_detail.html",
        {"endpoint": endpoint, "form": form, "changes": endpoint_changes(endpoint=endpoint)},
        status=status,
    )


@require_POST
@staff_required(MANAGE_PERM)
def endpoint_set_enabled_view(request, pk: int):
    endpoint = endpoint_get(pk=pk)
    wanted = request.POST.get("enabled", "")
    if wanted not in {"true", "false"}:
        return HttpResponseBadRequest("Say enabled=true or enabled=false.")
    try:
        endpoint = endpoint_set_enabled(
            endpoint=endpoint, enabled=wanted == "true", actor=request.user
        )
    except EndpointError as error:
        messages.error(request, str(error))
    else:
        if endpoint.is_enabled:
            messages.success(request, f"{endpoint.name} enabled: waiting events go out now.")
        else:
            messages.success(
                request,
                f"{endpoint.name} disabled: it gets no new events; waiting ones are held.",
            )
    return _back_to(request, reverse("product_endpoint_detail", kwargs={"pk": pk}))


@require_POST
@staff_required(MANAGE_PERM)
def endpoint_secret_rotate_view(request, pk: int):
    endpoint = endpoint_secret_rotate(endpoint=endpoint_get(pk=pk), actor=request.user)
    messages.warning(
        request,
        f"New signing secret for {endpoint.name}: events are signed with it from now on. "
        "Give it to the product; until then it refuses them (they are retried).",
    )
    return _back_to(request, reverse("product_endpoint_detail", kwargs={"pk": pk}))
