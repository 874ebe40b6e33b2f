"""Reads of the access API (GET /api/v1/access/...): one account's or member's access in one
query, and the changes feed products that keep a local copy page through."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import AccessChange, AccessFeedHorizon, AccessStatus, Account, User

logger = logging.getLogger(__name__)

FEED_LIMIT_DEFAULT = 100
FEED_LIMIT_MAX = 1000


def _iso(value: datetime | None) -> str | None:
    """Timezone-aware UTC with a "Z", as in the outbound events."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _aware(value: Any) -> datetime | None:
    # A raw cursor hands SQLite's datetimes back as text; PostgreSQL's are already aware.
    if value is None or isinstance(value, datetime):
        dt = value
    else:
        dt = parse_datetime(str(value))
    if dt is not None and timezone.is_naive(dt):
        dt = timezone.make_aware(dt, UTC)
    return dt


def _grants_access(*, status: str, is_active: bool) -> bool:
    # Account.grants_access, on the values read.
    return is_active and status in (AccessStatus.ACTIVE, AccessStatus.GRACE_PERIOD)


@dataclass(frozen=True)
class AccessAnswer:
    """What GET /api/v1/access/<public_id> answers: an account's access, or a member's (the
    account's, plus the member's own switch)."""

    id: str
    kind: str  # "account" | "member"
    account_pk: int
    account: str
    status: str
    is_active: bool
    grace_ends_at: datetime | None
    version: int
    changed_at: datetime | None
    member_is_active: bool | None = None

    @property
    def grants_access(self) -> bool:
        return _grants_access(status=self.status, is_active=self.is_active)

    @property
    def can_log_in(self) -> bool:
        if self.kind == "member":
            return bool(self.member_is_active) and self.grants_access
        return self.grants_access

    @property
    def etag(self) -> str:
        """Changes exactly when the answer can: every change of the account's access bumps its
        version (accounts.services.access_changes), and a member's own switch is in the tag too.
        The account's row id makes a deleted and re-created id a new tag."""
        if self.kind == "member":
            return f'"m{self.account_pk}.{self.version}.{int(bool(self.member_is_active))}"'
        return f'"a{self.account_pk}.{self.version}"'

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "account": self.account,
            "status": self.status,
            "is_active": self.is_active,
            "grants_access": self.grants_access,
            "grace_ends_at": _iso(self.grace_ends_at),
            "version": self.version,
            "changed_at": _iso(self.changed_at),
        }
        if self.kind == "member":
            data["member_is_active"] = self.member_is_active
        data["can_log_in"] = self.can_log_in
        return data


def _subject_sql() -> str:
    account, user = Account._meta.db_table, User._meta.db_table
    columns = (
        "a.id, a.public_id, a.access_status, a.is_active, a.grace_ends_at, a.access_version, "
        "a.access_changed_at"
    )
    # The first column says member (1) or account (0). An account and its first member may share
    # an id (someone who pays for themselves): the member answers, since it says more (its own
    # switch as well as the account's access).
    return (
        f"SELECT 1, u.public_id, u.is_active, {columns} FROM {user} u "
        f"JOIN {account} a ON a.id = u.account_id WHERE u.public_id = %s AND NOT u.is_staff "
        f"UNION ALL SELECT 0, a.public_id, NULL, {columns} FROM {account} a "
        "WHERE a.public_id = %s"
    )


_SUBJECT_SQL = _subject_sql()


class AccessIdAmbiguous(Exception):
    """The id is a member's of one account and, as well, another account's own id."""


ACCESS_KINDS = ("member", "account")


def access_answer_get(*, public_id: str, kind: str | None = None) -> AccessAnswer | None:
    """The access of the member or account with `public_id`, or None. One query, on the
    unique public_id indexes.

    When a member and an account both have the id, and it is the member's own account (someone
    who pays for themselves), the member answers: it says more. When the member belongs to
    another account, neither can be assumed (a product whose user and team ids are both small
    numbers would be told a member of one team may sign in when it asked about another team):
    AccessIdAmbiguous, unless `kind` ("member" or "account") says which is meant.
    """
    if len(public_id) > 64:  # the column's length: nothing longer exists
        return None
    with connection.cursor() as cursor:
        cursor.execute(_SUBJECT_SQL, [public_id, public_id])
        rows = cursor.fetchall()
    if kind is not None:
        rows = [r for r in rows if bool(r[0]) == (kind == "member")]
    if not rows:
        return None
    if len(rows) > 1 and rows[0][3] != rows[1][3]:  # column 3: the account's primary key
        raise AccessIdAmbiguous(public_id)
    row = max(rows, key=lambda r: r[0])
    is_member, subject_id, member_active, pk, account_id, status, active, grace, version, at = row
    return AccessAnswer(
        id=subject_id,
        kind="member" if is_member else "account",
        account_pk=pk,
        account=account_id,
        status=status,
        is_active=bool(active),
        grace_ends_at=_aware(grace),
        version=int(version),
        changed_at=_aware(at),
        member_is_active=bool(member_active) if is_member else None,
    )


# --- The changes feed -------------------------------------------------------------------------


class FeedCursorInvalid(ValueError):
    """A changed_since the feed did not hand out."""


class FeedCursorExpired(Exception):
    """A changed_since from before the retention purge's horizon (changes after it were
    deleted, so the next page could not hold all of them), or one this database never handed
    out (past its horizon): either way the product reads its accounts afresh."""


class FeedNeedsRestamp(Exception):
    """The feed's stored positions are past every transaction this database has run: it was
    restored from a logical dump into another cluster, whose transaction ids count from lower.
    No position can be served until `manage.py access_feed_restamp` re-stamps them."""


_CURSOR_RE = re.compile(r"(0|[1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,18})")


@dataclass(frozen=True, order=True)
class FeedPosition:
    """Where a product is in the feed: after the change (txid, id)."""

    txid: int = 0
    id: int = 0

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.txid}.{self.id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> FeedPosition:
        """Read a cursor the feed handed out; FeedCursorInvalid for anything else."""
        problem = "changed_since is not a cursor this API handed out: send next_cursor as given"
        if not cursor or len(cursor) > 64:
            raise FeedCursorInvalid(f"{problem}.")
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (binascii.Error, ValueError):
            raise FeedCursorInvalid(f"{problem}.") from None
        match = _CURSOR_RE.fullmatch(text)
        if match is None:
            raise FeedCursorInvalid(f"{problem}.")
        txid, change_id = int(match.group(1)), int(match.group(2))
        if txid >= 2**63 or change_id >= 2**63:
            raise FeedCursorInvalid(f"{problem}.")
        return cls(txid, change_id)


@dataclass(frozen=True)
class FeedPage:
    changes: list[dict[str, Any]]
    next_cursor: str
    has_more: bool


# The feed's horizon on PostgreSQL: the oldest transaction id still running in this database,
# or the next one to be handed out when none is. Transaction ids are cluster-wide, so the
# snapshot's own xmin (pg_snapshot_xmin) would also wait for transactions of every other
# database on the server (another application's, a test run's); backend_xid tells them apart.
# xid is 32 bits and wraps, txid is the 64-bit xid8: each running xid is placed by its distance
# below the snapshot's xmax (one handed out after the snapshot, "above" xmax, counts as xmax).
_HORIZON_SQL = """
SELECT s.xmax - COALESCE(MAX(CASE WHEN r.back < 2147483648 THEN r.back ELSE 0 END), 0)
FROM (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax) s
LEFT JOIN LATERAL (
    SELECT ((s.xmax % 4294967296) - a.backend_xid::text::bigint + 4294967296) % 4294967296
        AS back
    FROM pg_stat_activity a
    WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL
) r ON true
GROUP BY s.xmax
"""


def _feed_horizon() -> int:
    with connection.cursor() as cursor:
        if connection.in_atomic_block:
            # pg_stat_activity is read once per transaction and then kept: a second page in
            # the same transaction must not work from the first one's list.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(_HORIZON_SQL)
        return int(cursor.fetchone()[0])


def access_feed_horizon() -> FeedPosition | None:
    """The last change the retention purge deleted, or None when it has deleted none."""
    row = AccessFeedHorizon.objects.values_list("txid", "change_id").first()
    return FeedPosition(*row) if row else None


def _feed_change(row: tuple[Any, ...]) -> dict[str, Any]:
    """One change as the feed serves it: the account's access as of that version. A change
    written before changes kept their state is served with the account's current state and
    current version (never an old version with a newer state, which a product would keep and
    then let an older, delayed event overwrite)."""
    _txid, _id, version, at, event, account, status, is_active, grace, *current = row
    if status is None:
        version, status, is_active, grace = current
    return {
        "account": account,
        "version": version,
        "event": event,
        "at": _iso(at),
        "status": status,
        "is_active": is_active,
        "grants_access": _grants_access(status=status, is_active=is_active),
        "grace_ends_at": _iso(grace),
    }


def access_changes_page(*, after: FeedPosition | None, limit: int = FEED_LIMIT_DEFAULT) -> FeedPage:
    """The changes after `after` (None: from the oldest kept), in (txid, id) order, at most
    `limit`. FeedCursorExpired when `after` is before the retention purge's horizon.

    Why a horizon on PostgreSQL: ids (and txids) are handed out when a transaction writes, but
    rows become visible when it commits, in another order. Say T1 takes txid 100 and writes
    change id 8, while T2 took txid 101, wrote id 7 and committed first. A reader ordering by id
    that served id 7 and moved its cursor past it would never see id 8 once T1 commits. So the
    feed orders by (txid, id) and serves only txids below a horizon: the oldest transaction still
    running in this database, read by a first statement (_feed_horizon) before the rows are read
    by a second one. Every txid of this database below it had ended when the horizon was read,
    so the second statement's later snapshot sees all of its rows (or they were rolled back);
    no transaction can add another below it, since a new one takes a txid above every one
    handed out. T2's row waits until T1 has ended, and is then served after T1's. This is the
    contract's txid < pg_snapshot_xmin(pg_current_snapshot()) narrowed to this database's
    transactions (never lower, so it serves no less; it needs backend_xid of pg_stat_activity,
    visible for sessions of the same role, and Janitor uses no prepared transactions). The
    price: the feed lags behind its slowest open writing transaction in this database (a long
    import in one transaction holds it until it commits).

    SQLite serialises writers (txid is 0 everywhere), so the order is simply the id's. One
    query on SQLite, two on PostgreSQL, and one more when resuming from a cursor: the purge
    horizon, read after the rows. A purge committed before the rows were read is then seen by
    the horizon's read too, so a page with a gap is never served; one committed in between
    costs the product a resync it did not strictly need. A cursor exactly at the horizon has
    missed nothing (it was handed out with the last purged change, everything after is kept)."""
    if not 1 <= limit <= FEED_LIMIT_MAX:
        raise ValueError(f"limit must be 1 to {FEED_LIMIT_MAX}.")
    # Without a cursor the feed starts at the purge's horizon: every change kept is after it
    # (the purge deletes whole prefixes), and a product that reads an empty feed gets a cursor
    # that is not before it (one at (0, 0) would be refused at once: a resync on every poll).
    start = after or access_feed_horizon() or FeedPosition()
    # A row comparison, so the (txid, id) index starts its scan right after the cursor even
    # inside one transaction's thousands of changes (txid >= t AND (txid > t OR id > i) would
    # read and drop every earlier change of transaction t first).
    table = AccessChange._meta.db_table
    qs = AccessChange.objects.filter(
        RawSQL(
            f'("{table}"."txid", "{table}"."id") > (%s, %s)',
            [start.txid, start.id],
            output_field=BooleanField(),
        )
    )
    if connection.vendor == "postgresql":
        # Its own statement, before the rows' (see above): not a subquery of the same one.
        horizon_txid = _feed_horizon()
        if after is None and start.txid >= horizon_txid:
            # The purge's horizon came from another cluster's count (a logical restore): the
            # cursor handed out from it would be refused at once, on every poll.
            logger.error(
                "the access feed's purge horizon is past this database's transactions: run "
                "manage.py access_feed_restamp (after a restore from a logical dump)"
            )
            raise FeedNeedsRestamp
        if after is not None and after.txid >= horizon_txid:
            # No cursor this database handed out can be at or past its horizon (every change
            # served was below it, and it only grows): one from another database, or from
            # before a restore to a cluster that counts transactions from lower. Served as it
            # is, it would wait for ever with nothing served: the product reads afresh.
            raise FeedCursorExpired
        qs = qs.filter(txid__lt=horizon_txid)
    # Tuples, not model instances: a page of 1,000 is built in a few milliseconds.
    rows = list(
        qs.order_by("txid", "id").values_list(
            "txid",
            "id",
            "version",
            "at",
            "event_type",
            "account__public_id",
            "status",
            "is_active",
            "grace_ends_at",
            "account__access_version",
            "account__access_status",
            "account__is_active",
            "account__grace_ends_at",
        )[: limit + 1]
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    if after is not None:
        horizon = access_feed_horizon()
        if horizon is not None and after < horizon:
            raise FeedCursorExpired
    position = FeedPosition(rows[-1][0], rows[-1][1]) if rows else start
    changes = [_feed_change(row) for row in rows]
    return FeedPage(changes=changes, next_cursor=position.encode(), has_more=has_more)
