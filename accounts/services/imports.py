"""Bringing a product's users in from CSV: validate every line, then upsert all or nothing.

The file is streamed: it is read a batch of lines at a time, and what must be remembered across
the whole file (the ids and emails seen so far, each account's first line, customer ids) lives
in three temporary tables of the import's own transaction, not in memory. So memory stays flat
whatever the file's size, and no statement names more than a batch of values (SQLite refuses
more than 32,766). Every line is checked before anything is written; if any line is refused,
the transaction is rolled back and the reasons are reported by line number (the first
REFUSED_SHOWN of them, and how many in all). Figures and what made it fast:
docs/benchmarks/import.md.
"""

from __future__ import annotations

import csv
import io
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Model

from accounts.models import (
    PUBLIC_ID_RULE,
    AccessAudit,
    AccessStatus,
    Account,
    User,
    public_id_is_valid,
)
from janitor.text import text_unstorable

IMPORT_COLUMNS = ("public_id", "email", "name", "is_active", "stripe_customer_id")
# Optional: rows sharing an account_id are the members of one account (a team); account_name
# names it. Without account_id every row is an account of its own, with one member.
OPTIONAL_COLUMNS = ("account_id", "account_name")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}
IMPORT_ACTOR = "system:import"
BATCH_SIZE = 1000
# The columns' own limits (accounts.models): a longer value is refused with its line number.
EMAIL_MAX = 254
CUSTOMER_ID_MAX = 255
LINE_MAX_BYTES = 1024 * 1024
# A refused file lists at most this many reasons (the count covers every refused line).
REFUSED_SHOWN = 1000

_ROWS = "janitor_import_rows"
_GROUPS = "janitor_import_groups"
_CUSTOMERS = "janitor_import_customers"


@dataclass
class ImportRow:
    line: int
    public_id: str
    email: str
    name: str
    is_active: bool
    stripe_customer_id: str
    account_id: str = ""
    account_name: str = ""

    @property
    def key(self) -> str:
        """The public id of the row's account."""
        return self.account_id or self.public_id


@dataclass
class AccountGroup:
    """One account of the file: its public id, and the rows of its members."""

    public_id: str
    rows: list[ImportRow]
    name: str
    is_active: bool
    stripe_customer_id: str

    @property
    def email(self) -> str:
        return self.rows[0].email  # the first member's email is the billing contact's


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    accounts_created: int = 0
    # (line number, reason), the first REFUSED_SHOWN by line; refused_count counts them all.
    refused: list[tuple[int, str]] = field(default_factory=list)
    refused_count: int = 0
    # Lines whose is_active differs from the access Janitor already manages: left as they are.
    access_kept: list[tuple[int, str]] = field(default_factory=list)
    # Every account the file named (primary keys, 8 bytes each): subscriptions waiting for
    # them are linked after the import.
    account_pks: array[int] = field(default_factory=lambda: array("q"))

    @property
    def applied(self) -> bool:
        return not self.refused_count

    def refuse(self, line: int, reason: str) -> None:
        self.refused_count += 1
        self.refused.append((line, reason))
        if len(self.refused) > 2 * REFUSED_SHOWN:
            # Reasons come batch by batch in line order: the first ones by line are kept.
            self.refused = sorted(self.refused)[:REFUSED_SHOWN]


class ImportFileInvalid(Exception):
    """The file cannot be read past `line` (not UTF-8, not CSV)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def csv_lines_decoded(stream: IO[bytes]) -> Iterator[str]:
    """The file's lines as text, decoded one line at a time so a byte that is not UTF-8 is
    reported with its line number. A leading byte-order mark is dropped. A line longer than
    LINE_MAX_BYTES (a row is a few hundred bytes) stops the reading: memory stays bounded even
    for a file that is one endless line."""
    number = 0
    while raw := stream.readline(LINE_MAX_BYTES + 1):
        number += 1
        if len(raw) > LINE_MAX_BYTES:
            raise ImportFileInvalid(number, f"longer than {LINE_MAX_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFileInvalid(
                number, f"not UTF-8 ({exc.reason} at byte {exc.start} of the line)"
            ) from None
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield text


# --- Reading and checking ------------------------------------------------------------------


def _parse_record(record: dict[str | None, Any], line: int) -> ImportRow | str:
    """One CSV record as a row, or the reason it is refused (checks of the line alone)."""
    if None in record:  # more cells than headers
        return "more cells than the header has columns"
    values = {key: (record.get(key) or "").strip() for key in (*IMPORT_COLUMNS, *OPTIONAL_COLUMNS)}
    for key, value in values.items():
        problem = text_unstorable(value)
        if problem:
            return f"{key} {problem}"
    public_id, email = values["public_id"], values["email"].lower()
    active_raw = values["is_active"].lower()
    account_id = values["account_id"]
    if not public_id:
        return "public_id is empty"
    if not public_id_is_valid(public_id):
        # Ids end up in URLs, file names and download headers: refuse, never rewrite.
        return f"public_id {public_id!r} is not allowed: use {PUBLIC_ID_RULE}"
    if account_id and not public_id_is_valid(account_id):
        return f"account_id {account_id!r} is not allowed: use {PUBLIC_ID_RULE}"
    try:
        validate_email(email)
    except ValidationError:
        return f"email {values['email']!r} is not a valid address"
    if len(email) > EMAIL_MAX:
        return f"email is longer than {EMAIL_MAX} characters"
    if active_raw not in _TRUE | _FALSE:
        return f"is_active {values['is_active']!r} is not true/false"
    customer = values["stripe_customer_id"]
    if customer and not customer.startswith("cus_"):
        return f"stripe_customer_id {customer!r} does not start with cus_"
    if len(customer) > CUSTOMER_ID_MAX:
        return f"stripe_customer_id is longer than {CUSTOMER_ID_MAX} characters"
    if len(values["name"]) > 200 or len(values["account_name"]) > 200:
        return "name is longer than 200 characters"
    return ImportRow(
        line,
        public_id,
        email,
        values["name"],
        active_raw in _TRUE,
        customer,
        account_id,
        values["account_name"],
    )


def _records(
    lines: Iterable[str], report: ImportReport, batch_size: int
) -> Iterator[list[ImportRow]]:
    """The file's rows that pass the checks of their own line, a batch at a time. Lines that
    fail them are refused on the report; a file that cannot be read further stops here."""
    reader = csv.DictReader(iter(lines))
    try:
        fieldnames = reader.fieldnames
        missing = [c for c in IMPORT_COLUMNS if c not in (fieldnames or [])]
        if missing:
            report.refuse(1, f"header lacks column(s): {', '.join(missing)}")
            return
        batch: list[ImportRow] = []
        for record in reader:
            parsed = _parse_record(record, reader.line_num)
            if isinstance(parsed, str):
                report.refuse(reader.line_num, parsed)
                continue
            batch.append(parsed)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    except ImportFileInvalid as exc:
        report.refuse(exc.line, f"{exc.reason}; reading stopped here")
    except csv.Error as exc:
        report.refuse(reader.line_num + 1, f"not readable as CSV ({exc}); reading stopped here")


def _any(column: str, values: list[Any]) -> tuple[str, list[Any]]:
    """`column` is one of `values`: one array parameter on PostgreSQL (a statement of a
    thousand placeholders costs more to build and plan than to run), placeholders on SQLite."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


class _Staging:
    """The import's memory of the file so far, in temporary tables of its transaction."""

    def __init__(self) -> None:
        self.cursor = connection.cursor()

    def create(self) -> None:
        postgresql = connection.vendor == "postgresql"
        if postgresql:
            # The tables the import reads grow inside its own transaction, where the planner's
            # statistics still say "empty" (and nothing analyzes temporary tables): it would
            # scan a whole table for each batch's lookups, and the import would take the
            # square of the file's time. Every lookup has an index; use it.
            self.cursor.execute("SET LOCAL enable_seqscan = off")
        boolean = "BOOLEAN" if postgresql else "INTEGER"
        # Gone with the transaction on PostgreSQL however it ends; dropped by hand otherwise.
        scope = " ON COMMIT DROP" if postgresql else ""
        for table in (_ROWS, _GROUPS, _CUSTOMERS):  # left by an earlier import in this session
            self.cursor.execute(f"DROP TABLE IF EXISTS {table}")
        self.cursor.execute(
            f"CREATE TEMPORARY TABLE {_ROWS} (line INTEGER PRIMARY KEY, public_id TEXT NOT NULL, "
            f"email TEXT NOT NULL, name TEXT NOT NULL, is_active {boolean} NOT NULL, "
            "stripe_customer_id TEXT NOT NULL, account_id TEXT NOT NULL, "
            "account_name TEXT NOT NULL, account_key TEXT NOT NULL, grouped "
            f"{boolean} NOT NULL){scope}"
        )
        self.cursor.execute(f"CREATE UNIQUE INDEX {_ROWS}_id ON {_ROWS} (public_id)")
        self.cursor.execute(f"CREATE UNIQUE INDEX {_ROWS}_email ON {_ROWS} (email)")
        self.cursor.execute(f"CREATE INDEX {_ROWS}_key ON {_ROWS} (account_key, line)")
        self.cursor.execute(
            f"CREATE TEMPORARY TABLE {_GROUPS} (account_key TEXT PRIMARY KEY, "
            f"first_line INTEGER NOT NULL, is_active {boolean} NOT NULL, "
            f"stripe_customer_id TEXT NOT NULL, name TEXT NOT NULL){scope}"
        )
        self.cursor.execute(f"CREATE UNIQUE INDEX {_GROUPS}_line ON {_GROUPS} (first_line)")
        self.cursor.execute(
            f"CREATE TEMPORARY TABLE {_CUSTOMERS} (stripe_customer_id TEXT PRIMARY KEY, "
            f"account_key TEXT NOT NULL, line INTEGER NOT NULL){scope}"
        )

    def drop(self) -> None:
        for table in (_ROWS, _GROUPS, _CUSTOMERS):
            self.cursor.execute(f"DROP TABLE IF EXISTS {table}")
        if connection.vendor == "postgresql":
            self.cursor.execute("SET LOCAL enable_seqscan TO DEFAULT")
        self.cursor.close()

    def select(self, sql: str, column: str, values: list[Any]) -> list[tuple[Any, ...]]:
        """Rows of `sql`, whose {where} is filled with `column` among `values`."""
        if not values:
            return []
        where, params = _any(column, values)
        self.cursor.execute(sql.format(where=where), params)
        return list(self.cursor.fetchall())

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        names = ", ".join(columns)
        if connection.vendor == "postgresql":
            with self.cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join(["%s"] * len(columns))
        self.cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


@dataclass
class _GroupState:
    first_line: int
    is_active: bool
    stripe_customer_id: str
    name: str
    new: bool
    dirty: bool = False


def _check_batch(batch: list[ImportRow], staging: _Staging, report: ImportReport) -> None:
    """The checks that span the file and the database, for one batch of rows, in line order:
    an id or email seen on an earlier line, an account whose lines disagree, a customer id of
    another account, an email, member or customer that Janitor holds for someone else."""
    ids_seen = dict(
        staging.select(
            f"SELECT public_id, line FROM {_ROWS} WHERE {{where}}",
            "public_id",
            [r.public_id for r in batch],
        )
    )
    emails_seen = dict(
        staging.select(
            f"SELECT email, line FROM {_ROWS} WHERE {{where}}", "email", [r.email for r in batch]
        )
    )
    accepted: list[ImportRow] = []
    for row in batch:
        for key, seen in ((row.public_id, ids_seen), (row.email, emails_seen)):
            if key in seen:
                report.refuse(row.line, f"{key!r} already appears on line {seen[key]}")
                break
        else:
            ids_seen[row.public_id] = emails_seen[row.email] = row.line
            accepted.append(row)

    # Rows into accounts: by account_id, else one account per row. The rows of one account
    # must agree on the customer id and on is_active.
    groups = {
        key: _GroupState(line, bool(active), customer, name, new=False)
        for key, line, active, customer, name in staging.select(
            f"SELECT account_key, first_line, is_active, stripe_customer_id, name FROM {_GROUPS} "
            "WHERE {where}",
            "account_key",
            list({r.key for r in accepted}),
        )
    }
    customers = {
        customer: (key, line)
        for customer, key, line in staging.select(
            f"SELECT stripe_customer_id, account_key, line FROM {_CUSTOMERS} WHERE {{where}}",
            "stripe_customer_id",
            list({r.stripe_customer_id for r in accepted if r.stripe_customer_id}),
        )
    }
    new_customers: list[tuple[str, str, int]] = []
    customer_set: list[tuple[str, str, int]] = []  # (customer, account, line) to check in Janitor
    grouped: list[ImportRow] = []
    for row in accepted:
        key = row.key
        group = groups.get(key)
        if group is None:
            groups[key] = group = _GroupState(
                row.line, row.is_active, row.stripe_customer_id, row.account_name or row.name, True
            )
            if row.stripe_customer_id:
                customer_set.append((row.stripe_customer_id, key, row.line))
        else:
            if row.is_active != group.is_active:
                report.refuse(
                    row.line, f"is_active differs from line {group.first_line} of account {key}"
                )
                continue
            if row.stripe_customer_id and group.stripe_customer_id not in (
                "",
                row.stripe_customer_id,
            ):
                report.refuse(
                    row.line,
                    f"stripe_customer_id differs from line {group.first_line} of account {key}",
                )
                continue
            if row.stripe_customer_id and not group.stripe_customer_id:
                group.stripe_customer_id = row.stripe_customer_id
                group.dirty = True
                customer_set.append((row.stripe_customer_id, key, row.line))
            if not group.name and row.account_name:
                group.name = row.account_name
                group.dirty = True
        grouped.append(row)
        if row.stripe_customer_id:
            owner = customers.get(row.stripe_customer_id)
            if owner is None:
                customers[row.stripe_customer_id] = (key, row.line)
                new_customers.append((row.stripe_customer_id, key, row.line))
            elif owner[0] != key:
                report.refuse(
                    row.line, f"{row.stripe_customer_id!r} already appears on line {owner[1]}"
                )

    _check_against_janitor(grouped, customer_set, report)

    grouped_lines = {row.line for row in grouped}
    staging.insert(
        _ROWS,
        (
            "line",
            "public_id",
            "email",
            "name",
            "is_active",
            "stripe_customer_id",
            "account_id",
            "account_name",
            "account_key",
            "grouped",
        ),
        [
            (
                r.line,
                r.public_id,
                r.email,
                r.name,
                r.is_active,
                r.stripe_customer_id,
                r.account_id,
                r.account_name,
                r.key,
                r.line in grouped_lines,
            )
            for r in accepted
        ],
    )
    staging.insert(
        _GROUPS,
        ("account_key", "first_line", "is_active", "stripe_customer_id", "name"),
        [
            (key, g.first_line, g.is_active, g.stripe_customer_id, g.name)
            for key, g in groups.items()
            if g.new
        ],
    )
    for key, g in groups.items():
        if g.dirty and not g.new:
            staging.cursor.execute(
                f"UPDATE {_GROUPS} SET stripe_customer_id = %s, name = %s WHERE account_key = %s",
                [g.stripe_customer_id, g.name, key],
            )
    staging.insert(_CUSTOMERS, ("stripe_customer_id", "account_key", "line"), new_customers)


def _check_against_janitor(
    rows: list[ImportRow], customer_set: list[tuple[str, str, int]], report: ImportReport
) -> None:
    """Lines whose email, member or customer id already belongs to a different account."""
    account_table, user_table = Account._meta.db_table, User._meta.db_table
    with connection.cursor() as cursor:
        if customer_set:
            where, params = _any("stripe_customer_id", [c for c, _, _ in customer_set])
            # The partial unique index's own condition, spelled as the index spells it: with
            # it both databases use that index (PostgreSQL cannot infer it from a long array,
            # SQLite only matches the same term); without it, each batch scans every account.
            cursor.execute(
                f"SELECT stripe_customer_id, public_id FROM {account_table} "
                f"WHERE NOT (stripe_customer_id = '') AND {where}",
                params,
            )
            by_customer = dict(cursor.fetchall())
            for customer, key, line in customer_set:
                owner = by_customer.get(customer, key)
                if owner != key:
                    report.refuse(line, f"{customer} belongs to account {owner}")
        if not rows:
            return
        where, params = _any("u.public_id", [r.public_id for r in rows])
        cursor.execute(
            f"SELECT u.public_id, a.public_id, u.is_staff FROM {user_table} u "
            f"LEFT JOIN {account_table} a ON a.id = u.account_id WHERE {where}",
            params,
        )
        members = {pid: (account_pid, bool(is_staff)) for pid, account_pid, is_staff in cursor}
        # Emails are unique case-insensitively (the database's rule, and its index), so they
        # are compared so.
        emails = [r.email for r in rows]
        if connection.vendor == "postgresql":
            # One index probe per email: as "LOWER(email) = ANY(...)", PostgreSQL may pick the
            # search's trigram index (seconds a batch) over the unique one (a millisecond).
            cursor.execute(
                f"SELECT wanted.email, u.public_id FROM unnest(%s::text[]) AS wanted(email) "
                f"JOIN {user_table} u ON LOWER(u.email) = wanted.email",
                [emails],
            )
        else:
            where, params = _any("LOWER(email)", emails)
            cursor.execute(
                f"SELECT LOWER(email), public_id FROM {user_table} WHERE {where}", params
            )
        by_email = dict(cursor.fetchall())
    for row in rows:
        member = members.get(row.public_id)
        if member is not None and member[1]:
            report.refuse(row.line, f"{row.public_id} is a staff account")
        elif by_email.get(row.email, row.public_id) != row.public_id:
            report.refuse(row.line, f"email {row.email} belongs to {by_email[row.email]}")
        elif member is not None and member[0] not in (None, row.key):
            report.refuse(
                row.line,
                f"{row.public_id} is a member of account {member[0]}, not {row.key} "
                "(moving members by file is refused)",
            )


class _Refused(Exception):
    """Raised inside the import's transaction to roll it back."""


def accounts_import(
    *,
    lines: Iterable[str] | None = None,
    text: str | None = None,
    batch_size: int | None = None,
) -> ImportReport:
    """Validate every line first; if any is refused, write nothing and report the reasons.

    `lines` is the file's text line by line (csv_lines_decoded of a file opened in binary);
    `text` the whole file at once, for small ones. Re-importing the same file changes nothing.
    is_active sets the access of NEW accounts (audited as system:import); for existing ones
    Janitor's access status stands and the line is reported, since a revocation or a restore
    has its own approved, audited flow.
    """
    batch_size = batch_size or BATCH_SIZE
    if lines is None:
        lines = io.StringIO(text or "", newline="")
    report = ImportReport()
    try:
        with transaction.atomic():
            # Rolling back (a refused file, a database error) drops the staging tables too.
            staging = _Staging()
            staging.create()
            for batch in _records(lines, report, batch_size):
                _check_batch(batch, staging, report)
            if report.refused_count:
                raise _Refused
            _write(staging, report, batch_size)
            staging.drop()
    except _Refused:
        report.refused = sorted(report.refused)[:REFUSED_SHOWN]
        report.account_pks = array("q")
        return report
    except (IntegrityError, DataError) as exc:
        # A race with another writer, an account email another account already has, or a
        # value the checks above let through and the database would not store.
        report.refused = [(1, f"nothing imported: the database refused the file ({exc})")]
        report.refused_count = 1
        report.account_pks = array("q")
        return report
    return report


# --- Writing ---------------------------------------------------------------------------------


def _groups_staged(staging: _Staging, batch_size: int) -> Iterator[list[AccountGroup]]:
    """The file's accounts in the order they first appear, a batch at a time, with their rows."""
    after = 0
    while True:
        staging.cursor.execute(
            f"SELECT account_key, first_line, is_active, stripe_customer_id, name FROM {_GROUPS} "
            "WHERE first_line > %s ORDER BY first_line LIMIT %s",
            [after, batch_size],
        )
        heads = staging.cursor.fetchall()
        if not heads:
            return
        after = heads[-1][1]
        groups = {
            key: AccountGroup(
                public_id=key,
                rows=[],
                name=name,
                is_active=bool(active),
                stripe_customer_id=customer,
            )
            for key, _line, active, customer, name in heads
        }
        for (
            line,
            public_id,
            email,
            name,
            active,
            customer,
            account_id,
            account_name,
            key,
        ) in staging.select(
            "SELECT line, public_id, email, name, is_active, stripe_customer_id, account_id, "
            f"account_name, account_key FROM {_ROWS} WHERE grouped AND {{where}}",
            "account_key",
            list(groups),
        ):
            groups[key].rows.append(
                ImportRow(
                    line, public_id, email, name, bool(active), customer, account_id, account_name
                )
            )
        for group in groups.values():
            group.rows.sort(key=lambda row: row.line)  # the first line's email is the account's
        yield list(groups.values())


def _write(staging: _Staging, report: ImportReport, batch_size: int) -> None:
    for groups in _groups_staged(staging, batch_size):
        _import_batch(groups, report)


def _existing(model: type[Model], column: str, values: list[Any]) -> list[Any]:
    """The rows of `model` whose `column` is among `values`. Not locked: an import changes only
    profile fields (name, email, customer id) of the few rows that differ, and its UPDATE locks
    those; locking every row it reads would write to each page of a million-row re-import."""
    where, params = _any(column, values)
    return list(
        model._default_manager.raw(f"SELECT * FROM {model._meta.db_table} WHERE {where}", params)
    )


def _insert_rows(
    model: type[Model], rows: list[dict[str, Any]], *, returning: str = ""
) -> dict[str, int]:
    """Insert `rows` (attribute name -> value, the same names in every row) into `model`'s
    table, every other column at its default; with `returning`, the new rows' primary keys by
    that column. A batch is one COPY on PostgreSQL, one executemany on SQLite: per row, the ORM's
    bulk_create spends more time preparing values than the database spends storing them."""
    if not rows:
        return {}
    given = list(rows[0])
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = [f.column for f in fields]
    defaults = {
        f.attname: f.get_db_prep_save(f.get_default(), connection)
        for f in fields
        if f.attname not in given
    }
    values = [
        tuple(row[f.attname] if f.attname in row else defaults[f.attname] for f in fields)
        for row in rows
    ]
    table = model._meta.db_table
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with connection.wrap_database_errors:
                with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for value in values:
                        copy.write_row(value)
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)
        if not returning:
            return {}
        where, params = _any(returning, [row[returning] for row in rows])
        cursor.execute(f"SELECT {returning}, id FROM {table} WHERE {where}", params)
        return dict(cursor.fetchall())


def _import_batch(groups: list[AccountGroup], report: ImportReport) -> None:
    accounts = {
        account.public_id: account
        for account in _existing(Account, "public_id", [g.public_id for g in groups])
    }
    account_pk = {public_id: account.pk for public_id, account in accounts.items()}
    new_accounts: list[dict[str, Any]] = []
    for group in groups:
        account = accounts.get(group.public_id)
        if account is None:
            new_accounts.append(
                {
                    "public_id": group.public_id,
                    "email": group.email,
                    "name": group.name,
                    "stripe_customer_id": group.stripe_customer_id,
                    "is_active": group.is_active,
                    "access_status": AccessStatus.ACTIVE.value
                    if group.is_active
                    else AccessStatus.REVOKED.value,
                }
            )
            continue
        wanted = {"name": group.name, "stripe_customer_id": group.stripe_customer_id}
        if not any(r.account_id for r in group.rows) or not account.email:
            wanted["email"] = group.email  # a one-person account's email is its member's
        changed = [
            name for name, value in wanted.items() if value and getattr(account, name) != value
        ]
        for name in changed:
            setattr(account, name, wanted[name])
        if changed:
            account.save(update_fields=changed)
        if account.is_active != group.is_active:
            # Once an account is in Janitor, access moves only through its audited flows: a
            # revocation needs an approval, a restore an admin. A file must not bypass them.
            hint = "request a revocation" if account.is_active else "an admin restores access"
            report.access_kept.append(
                (
                    group.rows[0].line,
                    f"{group.public_id} is {account.access_status} in Janitor; is_active="
                    f"{str(group.is_active).lower()} ignored ({hint} to change it)",
                )
            )
    if new_accounts:
        account_pk.update(_insert_rows(Account, new_accounts, returning="public_id"))
        # A new account's access is the file's, audited as the import's decision.
        _insert_rows(
            AccessAudit,
            [
                {
                    "account_id": account_pk[new["public_id"]],
                    "actor": IMPORT_ACTOR,
                    "from_status": "",
                    "to_status": new["access_status"],
                    "reason": "Imported",
                    "source": "import",
                }
                for new in new_accounts
            ],
        )
        report.accounts_created += len(new_accounts)
    report.account_pks.extend(account_pk[group.public_id] for group in groups)
    _members_upsert(groups, account_pk, report)


def _members_upsert(
    groups: list[AccountGroup], account_pk: dict[str, int], report: ImportReport
) -> None:
    rows = {row.public_id: (row, group) for group in groups for row in group.rows}
    existing = {member.public_id: member for member in _existing(User, "public_id", list(rows))}
    new_members: list[dict[str, Any]] = []
    for public_id, (row, group) in rows.items():
        member = existing.get(public_id)
        if member is None:
            new_members.append(
                {
                    "public_id": public_id,
                    "email": row.email,
                    "name": row.name,
                    "account_id": account_pk[group.public_id],
                    "is_active": True,
                    "password": "!",
                }
            )
            continue
        changed = [
            name for name in ("email", "name") if getattr(member, name) != getattr(row, name)
        ]
        if member.account_id is None:
            member.account_id = account_pk[group.public_id]
            changed.append("account")
        for name in changed:
            if name != "account":
                setattr(member, name, getattr(row, name))
        if changed:
            member.save(update_fields=changed)
            report.updated += 1
        else:
            report.unchanged += 1
    if new_members:
        _insert_rows(User, new_members)
        report.created += len(new_members)
