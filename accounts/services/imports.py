"""Bringing a product's users in from CSV: validate every line, then upsert all or nothing."""

import csv
import io
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from accounts.models import (
    PUBLIC_ID_RULE,
    AccessAudit,
    AccessStatus,
    User,
    public_id_is_valid,
)

IMPORT_COLUMNS = ("public_id", "email", "name", "is_active", "stripe_customer_id")
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


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    # Lines whose is_active differs from the access Janitor already manages: left as they are.
    access_kept: list[tuple[int, str]] = field(default_factory=list)
    # Every account the file named: subscriptions waiting for them are linked after the import.
    public_ids: list[str] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return not self.refused


def _parse(reader: csv.DictReader) -> tuple[list[ImportRow], list[tuple[int, str]]]:
    missing = [c for c in IMPORT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        return [], [(1, f"header lacks column(s): {', '.join(missing)}")]
    rows, refused = [], []
    seen_ids: dict[str, int] = {}
    seen_emails: dict[str, int] = {}
    seen_customers: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        if None in record:  # more cells than headers
            refused.append((line, "more cells than the header has columns"))
            continue
        values = {key: (record.get(key) or "").strip() for key in IMPORT_COLUMNS}
        public_id, email = values["public_id"], values["email"].lower()
        active_raw = values["is_active"].lower()
        if not public_id:
            refused.append((line, "public_id is empty"))
            continue
        if not public_id_is_valid(public_id):
            # Ids end up in URLs, file names and download headers: refuse, never rewrite.
            refused.append((line, f"public_id {public_id!r} is not allowed: use {PUBLIC_ID_RULE}"))
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
        if len(values["name"]) > 200:
            refused.append((line, "name is longer than 200 characters"))
            continue
        for key, seen in ((public_id, seen_ids), (email, seen_emails), (customer, seen_customers)):
            if key and key in seen:
                refused.append((line, f"{key!r} already appears on line {seen[key]}"))
                break
        else:
            seen_ids[public_id] = seen_emails[email] = line
            if customer:
                seen_customers[customer] = line
            rows.append(
                ImportRow(line, public_id, email, values["name"], active_raw in _TRUE, customer)
            )
    return rows, refused


def _conflicts(rows: list[ImportRow]) -> list[tuple[int, str]]:
    """Lines whose email or customer id already belongs to a different account."""
    by_email = {
        email.lower(): pid
        for email, pid in User.objects.filter(email__in=[r.email for r in rows]).values_list(
            "email", "public_id"
        )
    }
    by_customer = dict(
        User.objects.filter(
            stripe_customer_id__in=[r.stripe_customer_id for r in rows if r.stripe_customer_id]
        ).values_list("stripe_customer_id", "public_id")
    )
    staff_ids = set(
        User.objects.filter(public_id__in=[r.public_id for r in rows], is_staff=True).values_list(
            "public_id", flat=True
        )
    )
    refused = []
    for row in rows:
        if row.public_id in staff_ids:
            refused.append((row.line, f"{row.public_id} is a staff account"))
        elif by_email.get(row.email, row.public_id) != row.public_id:
            refused.append((row.line, f"email {row.email} belongs to {by_email[row.email]}"))
        elif by_customer.get(row.stripe_customer_id, row.public_id) != row.public_id:
            owner = by_customer[row.stripe_customer_id]
            refused.append((row.line, f"{row.stripe_customer_id} belongs to {owner}"))
    return refused


def accounts_import(*, text: str, batch_size: int = 1000) -> ImportReport:
    """Validate every line first; if any is refused, write nothing and report all reasons.

    Re-importing the same file changes nothing. is_active sets the access of NEW accounts
    (audited as system:import); for existing ones Janitor's access status stands and the line
    is reported, since a revocation or a restore has its own approved, audited flow.
    """
    report = ImportReport()
    rows, refused = _parse(csv.DictReader(io.StringIO(text)))
    refused += _conflicts(rows) if rows else []
    if refused:
        report.refused = sorted(refused)
        return report
    with transaction.atomic():
        for start in range(0, len(rows), batch_size):
            _import_batch(rows[start : start + batch_size], report)
    report.public_ids = [row.public_id for row in rows]
    return report


def _import_batch(rows: list[ImportRow], report: ImportReport) -> None:
    existing = {
        user.public_id: user
        for user in User.objects.select_for_update().filter(
            public_id__in=[r.public_id for r in rows]
        )
    }
    new_users, audits = [], []
    for row in rows:
        user = existing.get(row.public_id)
        if user is None:
            status = AccessStatus.ACTIVE if row.is_active else AccessStatus.REVOKED
            new_users.append(
                User(
                    public_id=row.public_id,
                    email=row.email,
                    name=row.name,
                    stripe_customer_id=row.stripe_customer_id,
                    is_active=row.is_active,
                    access_status=status,
                    password="!",
                )
            )
            continue
        changed = [
            name
            for name in ("email", "name", "stripe_customer_id")
            if getattr(user, name) != getattr(row, name)
        ]
        for name in changed:
            setattr(user, name, getattr(row, name))
        if user.is_active != row.is_active:
            # Once an account is in Janitor, access moves only through its audited flows: a
            # revocation needs an approval, a restore an admin. A file must not bypass them.
            hint = "request a revocation" if user.is_active else "an admin restores access"
            report.access_kept.append(
                (
                    row.line,
                    f"{row.public_id} is {user.access_status} in Janitor; is_active="
                    f"{str(row.is_active).lower()} ignored ({hint} to change it)",
                )
            )
        if changed:
            user.save(update_fields=changed)
            report.updated += 1
        else:
            report.unchanged += 1
    if new_users:
        User.objects.bulk_create(new_users)
        created = {
            u.public_id: u
            for u in User.objects.filter(public_id__in=[u.public_id for u in new_users])
        }
        for user in new_users:
            audits.append(
                AccessAudit(
                    account=created[user.public_id],
                    actor=IMPORT_ACTOR,
                    from_status="",
                    to_status=user.access_status,
                    reason="Imported",
                    source="import",
                )
            )
        report.created += len(new_users)
    AccessAudit.objects.bulk_create(audits)
