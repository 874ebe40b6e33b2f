"""Bringing a product's users in from CSV: validate every line, then upsert all or nothing."""

import csv
import io
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from accounts.models import (
    PUBLIC_ID_RULE,
    AccessAudit,
    AccessStatus,
    Account,
    User,
    public_id_is_valid,
)

IMPORT_COLUMNS = ("public_id", "email", "name", "is_active", "stripe_customer_id")
# Optional: rows sharing an account_id are the members of one account (a team); account_name
# names it. Without account_id every row is an account of its own, with one member.
OPTIONAL_COLUMNS = ("account_id", "account_name")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}
IMPORT_ACTOR = "system:import"


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
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    # Lines whose is_active differs from the access Janitor already manages: left as they are.
    access_kept: list[tuple[int, str]] = field(default_factory=list)
    # Every account the file named: subscriptions waiting for them are linked after the import.
    public_ids: list[str] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return not self.refused


def _parse(reader: "csv.DictReader[str]") -> tuple[list[ImportRow], list[tuple[int, str]]]:
    missing = [c for c in IMPORT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        return [], [(1, f"header lacks column(s): {', '.join(missing)}")]
    rows, refused = [], []
    seen_ids: dict[str, int] = {}
    seen_emails: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        if None in record:  # more cells than headers
            refused.append((line, "more cells than the header has columns"))
            continue
        values = {
            key: (record.get(key) or "").strip() for key in (*IMPORT_COLUMNS, *OPTIONAL_COLUMNS)
        }
        public_id, email = values["public_id"], values["email"].lower()
        active_raw = values["is_active"].lower()
        account_id = values["account_id"]
        if not public_id:
            refused.append((line, "public_id is empty"))
            continue
        if not public_id_is_valid(public_id):
            # Ids end up in URLs, file names and download headers: refuse, never rewrite.
            refused.append((line, f"public_id {public_id!r} is not allowed: use {PUBLIC_ID_RULE}"))
            continue
        if account_id and not public_id_is_valid(account_id):
            refused.append(
                (line, f"account_id {account_id!r} is not allowed: use {PUBLIC_ID_RULE}")
            )
            continue
        try:
            validate_email(email)
        except ValidationError:
            refused.append((line, f"email {values['email']!r} is not a valid address"))
            continue
        if active_raw not in _TRUE | _FALSE:
            refused.append((line, f"is_active {values['is_active']!r} is not true/false"))
            continue
        customer = values["stripe_customer_id"]
        if customer and not customer.startswith("cus_"):
            refused.append((line, f"stripe_customer_id {customer!r} does not start with cus_"))
            continue
        if len(values["name"]) > 200 or len(values["account_name"]) > 200:
            refused.append((line, "name is longer than 200 characters"))
            continue
        for key, seen in ((public_id, seen_ids), (email, seen_emails)):
            if key in seen:
                refused.append((line, f"{key!r} already appears on line {seen[key]}"))
                break
        else:
            seen_ids[public_id] = seen_emails[email] = line
            rows.append(
                ImportRow(
                    line,
                    public_id,
                    email,
                    values["name"],
                    active_raw in _TRUE,
                    customer,
                    account_id,
                    values["account_name"],
                )
            )
    return rows, refused


def _group(rows: list[ImportRow]) -> tuple[list[AccountGroup], list[tuple[int, str]]]:
    """Rows into accounts: by account_id, else one account per row (its public id the row's).
    The rows of one account must agree on the customer id and on is_active (blank: no say)."""
    groups: dict[str, AccountGroup] = {}
    refused: list[tuple[int, str]] = []
    customers: dict[str, tuple[str, int]] = {}
    for row in rows:
        key = row.account_id or row.public_id
        group = groups.get(key)
        if group is None:
            groups[key] = group = AccountGroup(
                public_id=key,
                rows=[row],
                name=row.account_name or row.name,
                is_active=row.is_active,
                stripe_customer_id=row.stripe_customer_id,
            )
        else:
            first = group.rows[0].line
            if row.is_active != group.is_active:
                refused.append((row.line, f"is_active differs from line {first} of account {key}"))
                continue
            if row.stripe_customer_id and group.stripe_customer_id not in (
                "",
                row.stripe_customer_id,
            ):
                refused.append(
                    (row.line, f"stripe_customer_id differs from line {first} of account {key}")
                )
                continue
            group.rows.append(row)
            group.stripe_customer_id = group.stripe_customer_id or row.stripe_customer_id
            group.name = group.name or row.account_name
        if row.stripe_customer_id:
            owner = customers.setdefault(row.stripe_customer_id, (key, row.line))
            if owner[0] != key:
                refused.append(
                    (row.line, f"{row.stripe_customer_id!r} already appears on line {owner[1]}")
                )
    return list(groups.values()), refused


def _conflicts(groups: list[AccountGroup]) -> list[tuple[int, str]]:
    """Lines whose email, member or customer id already belongs to a different account."""
    rows = [row for group in groups for row in group.rows]
    account_of = {row.public_id: group.public_id for group in groups for row in group.rows}
    members = {
        pid: (email.lower(), account_pid, is_staff)
        for pid, email, account_pid, is_staff in User.objects.filter(
            public_id__in=[r.public_id for r in rows]
        ).values_list("public_id", "email", "account__public_id", "is_staff")
    }
    by_email = {
        email.lower(): pid
        for email, pid in User.objects.filter(email__in=[r.email for r in rows]).values_list(
            "email", "public_id"
        )
    }
    by_customer = dict(
        Account.objects.filter(
            stripe_customer_id__in=[g.stripe_customer_id for g in groups if g.stripe_customer_id]
        ).values_list("stripe_customer_id", "public_id")
    )
    refused = []
    for group in groups:
        owner = by_customer.get(group.stripe_customer_id, group.public_id)
        if owner != group.public_id:
            line = next(r.line for r in group.rows if r.stripe_customer_id)
            refused.append((line, f"{group.stripe_customer_id} belongs to account {owner}"))
    for row in rows:
        member = members.get(row.public_id)
        if member is not None and member[2]:
            refused.append((row.line, f"{row.public_id} is a staff account"))
        elif by_email.get(row.email, row.public_id) != row.public_id:
            refused.append((row.line, f"email {row.email} belongs to {by_email[row.email]}"))
        elif member is not None and member[1] not in (None, account_of[row.public_id]):
            refused.append(
                (
                    row.line,
                    f"{row.public_id} is a member of account {member[1]}, not "
                    f"{account_of[row.public_id]} (moving members by file is refused)",
                )
            )
    return refused


def accounts_import(*, text: str, batch_size: int = 1000) -> ImportReport:
    """Validate every line first; if any is refused, write nothing and report all reasons.

    Re-importing the same file changes nothing. is_active sets the access of NEW accounts
    (audited as system:import); for existing ones Janitor's access status stands and the line
    is reported, since a revocation or a restore has its own approved, audited flow.
    """
    report = ImportReport()
    rows, refused = _parse(csv.DictReader(io.StringIO(text)))
    groups, group_refused = _group(rows)
    refused += group_refused
    refused += _conflicts(groups) if groups else []
    if refused:
        report.refused = sorted(refused)
        return report
    try:
        with transaction.atomic():
            for start in range(0, len(groups), batch_size):
                _import_batch(groups[start : start + batch_size], report)
    except IntegrityError as exc:
        # A race with another writer, or an account email another account already has.
        report.refused = [(1, f"nothing imported: the database refused the file ({exc})")]
        return report
    report.public_ids = [group.public_id for group in groups]
    return report


def _import_batch(groups: list[AccountGroup], report: ImportReport) -> None:
    accounts = {
        account.public_id: account
        for account in Account.objects.select_for_update().filter(
            public_id__in=[g.public_id for g in groups]
        )
    }
    new_accounts, audits = [], []
    for group in groups:
        account = accounts.get(group.public_id)
        if account is None:
            status = AccessStatus.ACTIVE if group.is_active else AccessStatus.REVOKED
            account = Account(
                public_id=group.public_id,
                email=group.email,
                name=group.name,
                stripe_customer_id=group.stripe_customer_id,
                is_active=group.is_active,
                access_status=status,
            )
            new_accounts.append(account)
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
        Account.objects.bulk_create(new_accounts)
        created = dict(
            Account.objects.filter(public_id__in=[a.public_id for a in new_accounts]).values_list(
                "public_id", "pk"
            )
        )
        for account in new_accounts:
            account.pk = created[account.public_id]
            accounts[account.public_id] = account
            audits.append(
                AccessAudit(
                    account_id=account.pk,
                    actor=IMPORT_ACTOR,
                    from_status="",
                    to_status=account.access_status,
                    reason="Imported",
                    source="import",
                )
            )
        report.accounts_created += len(new_accounts)
    AccessAudit.objects.bulk_create(audits)
    _members_upsert(groups, accounts, report)


def _members_upsert(
    groups: list[AccountGroup], accounts: dict[str, Account], report: ImportReport
) -> None:
    rows = {row.public_id: (row, group) for group in groups for row in group.rows}
    existing = {
        member.public_id: member
        for member in User.objects.select_for_update().filter(public_id__in=list(rows))
    }
    new_members = []
    for public_id, (row, group) in rows.items():
        account = accounts[group.public_id]
        member = existing.get(public_id)
        if member is None:
            new_members.append(
                User(
                    public_id=public_id,
                    email=row.email,
                    name=row.name,
                    account_id=account.pk,
                    is_active=True,
                    password="!",
                )
            )
            continue
        changed = [
            name for name in ("email", "name") if getattr(member, name) != getattr(row, name)
        ]
        if member.account_id is None:
            member.account_id = account.pk
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
        User.objects.bulk_create(new_members)
        report.created += len(new_members)
