"""Reads for an account's access panel, revocations and the access audit trail: a fixed
number of queries."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TypeVar

from django.db.models import Model, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.models import AccessAudit, Account, RevocationRequest, RevocationStatus, User
from accounts.services.revocation import OPEN_STATUSES
from products.models import SessionRevocation


def _session_revocations() -> "Prefetch[str, QuerySet[SessionRevocation], str]":
    """The products a revocation's step 2 asked to end sessions, by name, with their events."""
    return Prefetch(
        "session_revocations",
        queryset=SessionRevocation.objects.select_related("endpoint", "delivery").order_by(
            "endpoint__name", "pk"
        ),
    )


@dataclass
class AccessPanel:
    account: Account
    open_request: RevocationRequest | None
    last_request: RevocationRequest | None


def access_panel_get(*, public_id: str) -> AccessPanel:
    account = get_object_or_404(Account, public_id=public_id)
    requests = list(
        RevocationRequest.objects.filter(account=account)
        .select_related("requested_by", "decided_by")
        .prefetch_related(_session_revocations())
        .order_by("-created_at", "-id")[:5]
    )
    open_request = next((r for r in requests if r.status in OPEN_STATUSES), None)
    last_request = next((r for r in requests if r.status not in OPEN_STATUSES), None)
    return AccessPanel(account, open_request, last_request)


_M = TypeVar("_M", bound=Model)


def _with_people(qs: QuerySet[_M]) -> QuerySet[_M]:
    return qs.select_related("account", "requested_by", "decided_by")


def revocation_open_list() -> list[RevocationRequest]:
    """Requests waiting for a decision, running, or failed (retryable): oldest first, each with
    the products its step 2 asked to end sessions (`session_revocations`, by name)."""
    return list(
        _with_people(RevocationRequest.objects.filter(status__in=OPEN_STATUSES))
        .prefetch_related(_session_revocations())
        .order_by("created_at", "id")
    )


# Requests that are over: carried out, refused, or given up with the access put back.
CLOSED_STATUSES = (
    RevocationStatus.COMPLETED,
    RevocationStatus.REJECTED,
    RevocationStatus.ABANDONED,
)


def revocation_history_list() -> QuerySet[RevocationRequest]:
    """Requests that are over (completed, rejected, abandoned) with their outcomes, newest
    first (paginate it)."""
    return _with_people(RevocationRequest.objects.filter(status__in=CLOSED_STATUSES)).order_by(
        "-decided_at", "-id"
    )


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def access_audit_list(
    *,
    account: str = "",
    actor: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
) -> QuerySet[AccessAudit]:
    """The access audit, newest first, filtered; dates are whole UTC days, both inclusive."""
    qs = AccessAudit.objects.select_related("account", "actor_user", "approver")
    if account:
        # The account's public id or email, or one of its members' (a member names the
        # account): the accounts first, then the audit by account id (no join, no DISTINCT).
        named = set(
            Account.objects.filter(Q(public_id=account) | Q(email__iexact=account)).values_list(
                "pk", flat=True
            )
        )
        named |= set(
            User.objects.filter(Q(public_id=account) | Q(email__iexact=account))
            .exclude(account__isnull=True)
            .values_list("account_id", flat=True)
        )
        qs = qs.filter(account_id__in=named)
    if actor:
        qs = qs.filter(actor__icontains=actor)
    if date_from:
        qs = qs.filter(at__gte=_day_start(date_from))
    if date_to and date_to < date.max:  # the last day there is means "no upper bound"
        qs = qs.filter(at__lt=_day_start(date_to + timedelta(days=1)))
    return qs.order_by("-at", "-id")
