"""The Deliveries page: outbound access events per endpoint, their payload and attempts,
replay."""

import json

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from janitor.permissions import staff_required
from products.models import OPEN_DELIVERY_STATUSES, AccessEvent, DeliveryStatus
from products.selectors.deliveries import (
    DeliveryFilters,
    delivery_counts,
    delivery_get,
    delivery_list,
    endpoint_choices,
)
from products.services.delivery import (
    REPLAYABLE_STATUSES,
    DeliveryError,
    DeliveryGone,
    delivery_deadline,
    delivery_replay,
)

PAGE_SIZE = 50
VIEW_PERM = "products.view_deliveries"
REPLAY_PERM = "products.replay_deliveries"


@require_GET
@staff_required(VIEW_PERM)
def delivery_list_view(request):
    filters = DeliveryFilters.from_query(request.GET)
    page = Paginator(delivery_list(filters=filters), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": filters,
        "filter_query": filters.query_string(),
        "counts": delivery_counts(),
        "statuses": DeliveryStatus.choices,
        "event_types": AccessEvent.choices,
        "endpoints": endpoint_choices(),
    }
    template = "products/delivery_list.html"
    if request.htmx and request.htmx.target == "deliveries":
        template += "#deliveries"
    return render(request, template, context)


@require_GET
@staff_required(VIEW_PERM)
def delivery_detail_view(request, pk: int):
    delivery = delivery_get(pk=pk)
    template = "products/delivery_detail.html"
    if request.htmx and request.htmx.target == "delivery-status":
        template += "#delivery-status"  # polled while the delivery waits or retries
    return render(
        request,
        template,
        {
            "delivery": delivery,
            "payload_pretty": json.dumps(delivery.payload, indent=2, sort_keys=True),
            "deadline": delivery_deadline(delivery=delivery),
            "open": delivery.status in OPEN_DELIVERY_STATUSES,
            "can_replay": request.user.has_perm(REPLAY_PERM),
            "replayable": delivery.status in REPLAYABLE_STATUSES,
        },
    )


@require_POST
@staff_required(VIEW_PERM, REPLAY_PERM)
def delivery_replay_view(request, pk: int):
    delivery = delivery_get(pk=pk)
    url = reverse("delivery_detail", kwargs={"pk": pk})
    try:
        delivery_replay(delivery=delivery, actor=request.user.email, actor_user=request.user)
    except DeliveryGone as error:
        messages.error(request, str(error))
        url = reverse("delivery_list")
    except DeliveryError as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            f"{delivery.webhook_id} queued again for {delivery.endpoint.name} (same webhook-id).",
        )
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
