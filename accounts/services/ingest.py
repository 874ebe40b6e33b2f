"""The product's activity reports (POST /api/v1/activity): a batch validated item by item,
stored all or nothing, repeats recognised by the product's own event ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Account, ActivityKind, ActivityLog, ApiToken, User
from accounts.services.activity import PATH_MAX, USER_AGENT_MAX, valid_ip
from janitor.errors import ErrorKind, JanitorError

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

    def __init__(self, message: str, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


@dataclass
class IngestResult:
    received: int
    stored: int
    duplicates: int
    errors: list[dict] = field(default_factory=list)


_KINDS = frozenset(ActivityKind.values)


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_time(value, now: datetime) -> tuple[datetime | None, str | None]:
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


def _validate_item(index: int, item, now: datetime) -> tuple[dict | None, dict | None]:
    """(clean values, None) or (None, error entry) for one event."""
    if not isinstance(item, dict):
        return None, {"index": index, "id": None, "errors": {"event": "must be a JSON object"}}
    errors: dict[str, str] = {}
    event_id = item.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        errors["id"] = "required: the product's own id for this event (a string)"
    elif len(event_id) > CLIENT_EVENT_ID_MAX:
        errors["id"] = f"longer than {CLIENT_EVENT_ID_MAX} characters"
    account = item.get("account")
    if not isinstance(account, str) or not account.strip():
        errors["account"] = "required: the account's public id"
    occurred_at, time_error = _parse_time(item.get("occurred_at"), now)
    if time_error:
        errors["occurred_at"] = time_error
    kind = item.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        errors["kind"] = f"must be one of {', '.join(sorted(_KINDS))}"
    path = item.get("path", "")
    if path is None:
        path = ""
    if not isinstance(path, str):
        errors["path"] = "must be a string"
    ip = item.get("ip")
    ip_clean = None
    if ip not in (None, ""):
        ip_clean = valid_ip(ip) if isinstance(ip, str) else None
        if ip_clean is None:
            errors["ip"] = "not an IPv4 or IPv6 address"
    user_agent = item.get("user_agent", "")
    if user_agent is None:
        user_agent = ""
    if not isinstance(user_agent, str):
        errors["user_agent"] = "must be a string"
    for name, value in (
        ("id", event_id),
        ("account", account),
        ("path", path),
        ("user_agent", user_agent),
    ):
        # PostgreSQL text cannot hold NUL or a lone surrogate; say so instead of a 500.
        if isinstance(value, str) and "\x00" in value:
            errors[name] = "contains a NUL character"
        elif isinstance(value, str) and not _encodable(value):
            errors[name] = "is not valid Unicode (a lone surrogate)"
    if errors:
        safe_id = (
            event_id
            if isinstance(event_id, str) and "\x00" not in event_id and _encodable(event_id)
            else None
        )
        return None, {"index": index, "id": safe_id, "errors": errors}
    return {
        "id": event_id,
        "account": account,
        "occurred_at": occurred_at,
        "kind": kind,
        # Long paths and user agents are cut, not refused: they are still proof of usage.
        "path": path[:PATH_MAX],
        "ip": ip_clean,
        "user_agent": user_agent[:USER_AGENT_MAX],
    }, None


def activity_ingest(*, token: ApiToken, events) -> IngestResult:
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
    clean: list[tuple[int, dict]] = []
    errors: list[dict] = []
    seen_ids: set[str] = set()
    for index, item in enumerate(events):
        values, error = _validate_item(index, item, now)
        if error is not None:
            errors.append(error)
            continue
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
