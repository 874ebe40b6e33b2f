"""Reads for the Deliveries and product Endpoints pages and the overview's count."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import Count, Prefetch, QuerySet
from django.http import QueryDict
from django.shortcuts import get_object_or_404

from janitor.text import database_id
from products.models import (
    AccessEvent,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointChange,
    ProductEndpoint,
)

LIST_FIELDS = (
    "id",
    "webhook_id",
    "event_type",
    "account_version",
    "status",
    "attempts",
    "created_at",
    "next_attempt_at",
    "last_attempt_at",
    "last_status_code",
    "last_error",
    "delivered_at",
    "endpoint__id",
    "endpoint__name",
    "account__id",
    "account__public_id",
    "account__email",
)


@dataclass(frozen=True)
class DeliveryFilters:
    status: str = ""
    endpoint: int | None = None
    event_type: str = ""
    account: str = ""  # an account's public id

    @classmethod
    def from_query(cls, query: QueryDict) -> DeliveryFilters:
        status = query.get("status", "").strip()
        event_type = query.get("event_type", "").strip()
        endpoint_raw = query.get("endpoint", "").strip()
        return cls(
            status=status if status in DeliveryStatus.values else "",
            endpoint=database_id(endpoint_raw),
            event_type=event_type if event_type in AccessEvent.values else "",
            account=query.get("account", "").strip()[:64],
        )

    def query_string(self) -> str:
        pairs = [
            ("status", self.status),
            ("endpoint", str(self.endpoint or "")),
            ("event_type", self.event_type),
            ("account", self.account),
        ]
        return urlencode([(k, v) for k, v in pairs if v])


def delivery_list(*, filters: DeliveryFilters) -> QuerySet[Delivery]:
    """Newest first, without the payload (a list never shows it)."""
    deliveries = (
        Delivery.objects.select_related("endpoint", "account")
        .only(*LIST_FIELDS)
        .order_by("-created_at", "-id")
    )
    if filters.status:
        deliveries = deliveries.filter(status=filters.status)
    if filters.endpoint:
        deliveries = deliveries.filter(endpoint_id=filters.endpoint)
    if filters.event_type:
        deliveries = deliveries.filter(event_type=filters.event_type)
    if filters.account:
        deliveries = deliveries.filter(account__public_id=filters.account)
    return deliveries


def delivery_get(*, pk: int) -> Delivery:
    """One delivery with its endpoint, account and attempts (newest first)."""
    return get_object_or_404(
        Delivery.objects.select_related("endpoint", "account", "superseded_by").prefetch_related(
            Prefetch("attempt_rows", queryset=DeliveryAttempt.objects.order_by("-at", "-id"))
        ),
        pk=pk,
    )


@dataclass(frozen=True)
class DeliveryCounts:
    pending: int
    failing: int
    dead: int

    @property
    def troubled(self) -> int:
        return self.failing + self.dead


def delivery_counts() -> DeliveryCounts:
    """Open and dead deliveries (the overview's count, the Deliveries page's summary)."""
    by_status = dict(
        Delivery.objects.filter(
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILING, DeliveryStatus.DEAD]
        )
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return DeliveryCounts(
        pending=by_status.get(DeliveryStatus.PENDING, 0),
        failing=by_status.get(DeliveryStatus.FAILING, 0),
        dead=by_status.get(DeliveryStatus.DEAD, 0),
    )


@dataclass
class EndpointRow:
    endpoint: ProductEndpoint
    pending: int = 0
    failing: int = 0
    dead: int = 0


def endpoint_list() -> list[EndpointRow]:
    """Every endpoint with its waiting, failing and dead deliveries (two queries)."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for endpoint_id, status, n in (
        Delivery.objects.filter(
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILING, DeliveryStatus.DEAD]
        )
        .order_by()
        .values_list("endpoint_id", "status")
        .annotate(n=Count("id"))
    ):
        counts[endpoint_id][status] = n
    return [
        EndpointRow(endpoint=endpoint, **counts.get(endpoint.pk, {}))
        for endpoint in ProductEndpoint.objects.select_related("token", "created_by").order_by(
            "name"
        )
    ]


def endpoint_get(*, pk: int) -> ProductEndpoint:
    return get_object_or_404(ProductEndpoint.objects.select_related("token", "created_by"), pk=pk)


def endpoint_choices() -> list[tuple[int, str]]:
    return list(ProductEndpoint.objects.order_by("name").values_list("id", "name"))


def endpoint_changes(*, endpoint: ProductEndpoint, limit: int = 20) -> list[EndpointChange]:
    """The endpoint's latest changes, newest first."""
    return list(endpoint.changes.order_by("-at", "-id")[:limit])
