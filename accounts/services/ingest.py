"""The product's activity reports (POST /api/v1/activity): a batch validated item by item,
stored all or nothing, repeats recognised by the product's own event ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Account, ActivityKind, ActivityLog, ApiToken, User
from accounts.services.activity import PATH_MAX, USER_AGENT_MAX, valid_ip
from janitor.errors import ErrorKind, JanitorError
from janitor.text import text_unstorable

CLIENT_EVENT_ID_MAX = 128
# Per event, generously: a long path and user agent plus JSON punctuation fit in 2 KiB.
BYTES_PER_EVENT = 2048
# A product's clock may run a little ahead of ours; anything further is junk, not evidence.
FUTURE_SKEW = timedelta(minutes=5)


def ingest_max_bytes() -> int:
    return settings.JANITOR_ACTIVITY_MAX_BATCH * BYTES_PER_EVENT


class ActivityBatchTooLarge(JanitorError):
    """More events than one batch may hold."""

    kind = ErrorKind.TOO_LARGE


class ActivityBatchInvalid(JanitorError):
    """The batch (or some of its items) failed validation; nothing was stored."""

    kind = ErrorKind.INVALID

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


@dataclass
class IngestResult:
    received: int
    stored: int
    duplicates: int
    errors: list[dict[str, Any]] = field(default_factory=list)


_KINDS = frozenset(ActivityKind.values)


def _parse_time(value: object, now: datetime) -> tuple[datetime | None, str | None]:
    if not isinstance(value, str) or not value:
        return None, "required: an ISO 8601 time with a timezone"
    try:
        parsed = datetime.fromisoformat(value)  # 3.11 reads "Z" and offsets
    except ValueError:
        return None, "not an ISO 8601 time"
    if parsed.tzinfo is None:
        return None, "needs a timezone (e.g. 2026-11-20T14:03:00Z)"
    try:
        parsed.astimezone(UTC)  # e.g. 0001-01-01T00:00+14:00 is before year 1 in UTC
    except OverflowError:
        return None, "is out of range"
    if parsed > now + FUTURE_SKEW:
        return None, "is in the future"
    return parsed, None


def _event_id(value: object, now: datetime) -> tuple[object, str | None]:
    if not isinstance(value, str) or not value.strip():
        return value, "required: the product's own id for this event (a string)"
    if len(value) > CLIENT_EVENT_ID_MAX:
        return value, f"longer than {CLIENT_EVENT_ID_MAX} characters"
    return value, None


def _account(value: object, now: datetime) -> tuple[object, str | None]:
    if not isinstance(value, str) or not value.strip():
        return value, "required: the account's public id"
    return value, None


def _kind(value: object, now: datetime) -> tuple[object, str | None]:
    if not isinstance(value, str) or value not in _KINDS:
        return value, f"must be one of {', '.join(sorted(_KINDS))}"
    return value, None


def _cut_text(limit: int) -> Callable[[object, datetime], tuple[object, str | None]]:
    """An optional string, cut (not refused) past `limit`: a long path or user agent is still
    proof of usage."""

    def check(value: object, now: datetime) -> tuple[object, str | None]:
        if value is None:
            return "", None
        if not isinstance(value, str):
            return value, "must be a string"
        return value[:limit], None

    return check


def _ip(value: object, now: datetime) -> tuple[object, str | None]:
    if value in (None, ""):
        return None, None
    clean = valid_ip(value) if isinstance(value, str) else None
    return clean, None if clean is not None else "not an IPv4 or IPv6 address"


# field -> (its check, whether the raw value must be storable text, its default when absent).
# A check takes (raw value, now) and returns (clean value, error or None).
FIELDS: dict[str, tuple[Callable[[object, datetime], tuple[object, str | None]], bool, object]] = {
    "id": (_event_id, True, None),
    "account": (_account, True, None),
    "occurred_at": (_parse_time, False, None),
    "kind": (_kind, False, None),
    "path": (_cut_text(PATH_MAX), True, ""),
    "ip": (_ip, False, None),
    "user_agent": (_cut_text(USER_AGENT_MAX), True, ""),
}


def _validate_item(
    index: int, item: object, now: datetime
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(clean values, None) or (None, error entry) for one event, field by field (FIELDS)."""
    if not isinstance(item, dict):
        return None, {"index": index, "id": None, "errors": {"event": "must be a JSON object"}}
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, (check, text, default) in FIELDS.items():
        raw = item.get(name, default)
        clean[name], error = check(raw, now)
        error = (text_unstorable(raw) if text else None) or error
        if error:
            errors[name] = error
    if errors:
        event_id = item.get("id")
        safe_id = event_id if isinstance(event_id, str) and not text_unstorable(event_id) else None
        return None, {"index": index, "id": safe_id, "errors": errors}
    return clean, None


def activity_ingest(*, token: ApiToken, events: object) -> IngestResult:
    """Store a product's batch of events, all or none.

    Any invalid item rejects the whole batch (ActivityBatchInvalid lists every bad item), so a
    product fixes and resends one batch instead of tracking which half landed. A retried batch
    is deduplicated on (token, client event id) by the database's unique index.
    """
    if not isinstance(events, list):
        raise ActivityBatchInvalid('The body must be {"events": [...]}.')
    if len(events) > settings.JANITOR_ACTIVITY_MAX_BATCH:
        raise ActivityBatchTooLarge(
            f"{len(events)} events: at most {settings.JANITOR_ACTIVITY_MAX_BATCH} per batch."
        )
    if not events:
        raise ActivityBatchInvalid("The batch holds no events.")
    now = timezone.now()
    clean: list[tuple[int, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen_ids: set[str] = set()
    for index, item in enumerate(events):
        values, error = _validate_item(index, item, now)
        if error is not None:
            errors.append(error)
            continue
        assert values is not None  # _validate_item returns values or an error, never neither
        if values["id"] in seen_ids:
            errors.append(
                {"index": index, "id": values["id"], "errors": {"id": "repeated in this batch"}}
            )
            continue
        seen_ids.add(values["id"])
        clean.append((index, values))

    public_ids = {values["account"] for _, values in clean}
    accounts = _members_by_public_id(public_ids)
    for index, values in clean:
        if values["account"] not in accounts:
            errors.append(
                {
                    "index": index,
                    "id": values["id"],
                    "errors": {
                        "account": "no such account: a member's public id, or the public id "
                        "of an account with one member"
                    },
                }
            )
    if errors:
        errors.sort(key=lambda e: e["index"])
        raise ActivityBatchInvalid(
            f"{len(errors)} of {len(events)} events are invalid; nothing was stored.", errors
        )

    source = str(token.pk)
    rows = [
        ActivityLog(
            member_id=accounts[values["account"]],
            occurred_at=values["occurred_at"],
            kind=values["kind"],
            path=values["path"],
            ip_address=values["ip"],
            user_agent=values["user_agent"],
            source=source,
            client_event_id=values["id"],
        )
        for _, values in clean
    ]
    with transaction.atomic():
        # Counted only to tell the product how many were repeats; the unique index decides.
        already = ActivityLog.objects.filter(
            source=source, client_event_id__in=list(seen_ids)
        ).count()
        ActivityLog.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    return IngestResult(received=len(events), stored=len(rows) - already, duplicates=already)


def _members_by_public_id(public_ids: set[str]) -> dict[str, int]:
    """public id -> the member who did it: a member's own public id, or an account's when the
    account has exactly one member (someone who pays for themselves). Two queries.

    An id that is a member's and also another account's (two id spaces that overlap in the
    product) names nobody: the event is refused rather than filed under the wrong account.
    """
    from django.db.models import Count, Min

    members = {
        public_id: (member_id, account_id)
        for public_id, member_id, account_id in User.objects.filter(
            public_id__in=public_ids, is_staff=False, account__isnull=False
        ).values_list("public_id", "id", "account_id")
    }
    found: dict[str, int] = {}
    for public_id, n, member_id, account_id in (
        Account.objects.filter(public_id__in=public_ids)
        .annotate(n=Count("members"), member_id=Min("members__id"))
        .values_list("public_id", "n", "member_id", "pk")
    ):
        member = members.pop(public_id, None)
        if member is not None:
            if member[1] == account_id:
                found[public_id] = member[0]  # the account's own member: the same person
            continue  # a member of one account, and another account: ambiguous
        if n == 1:
            found[public_id] = member_id
    found.update({public_id: member_id for public_id, (member_id, _) in members.items()})
    return found
