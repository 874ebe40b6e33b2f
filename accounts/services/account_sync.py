"""Accounts and their members pushed by a product (PUT and POST /api/v1/accounts): each account
validated on its own, then upserted in its own transaction by the rules of import_accounts.

The rules shared with the import: public ids in the documented alphabet, emails lower-cased and
unique case-insensitively across people, a staff member never becomes a member, a member never
moves to another account, customer ids start with cus_ and name one account. `active` decides
the access of a NEW account only (audited as the import does); an existing account's access is
never moved by a sync: a revocation or a restore has its own approved, audited flow. Empty or
absent optional values leave what Janitor holds. Repeating a request changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DataError, IntegrityError, transaction
from django.db.models.functions import Lower

from accounts.models import (
    PUBLIC_ID_RULE,
    AccessAudit,
    AccessStatus,
    Account,
    ApiToken,
    User,
    public_id_is_valid,
)
from janitor.errors import ErrorKind, JanitorError
from janitor.text import text_unstorable

SYNC_ACTOR = "system:api"
SYNC_REASON = "Created through the accounts API"
MAX_BATCH = 1000
MAX_MEMBERS = 1000
# Request bodies, read under a cap (janitor.http.body_read_capped): generous for a team of
# MAX_MEMBERS on one PUT, and for MAX_BATCH accounts of a few members each in a batch.
PUT_MAX_BYTES = 1024 * 1024
BATCH_MAX_BYTES = 8 * 1024 * 1024
NAME_MAX = 200
EMAIL_MAX = 254
CUSTOMER_MAX = 255

ACCOUNT_FIELDS = frozenset({"email", "name", "stripe_customer_id", "active", "members"})
MEMBER_FIELDS = frozenset({"public_id", "email", "name"})


class AccountSyncError(JanitorError):
    """A request the accounts API refuses as a whole (the message says why)."""

    kind = ErrorKind.INVALID


class AccountBatchTooLarge(AccountSyncError):
    kind = ErrorKind.TOO_LARGE


@dataclass
class MemberInput:
    public_id: str
    email: str
    name: str | None


@dataclass
class AccountInput:
    public_id: str
    email: str
    name: str | None
    stripe_customer_id: str
    active: bool
    members: list[MemberInput] = field(default_factory=list)


@dataclass
class SyncResult:
    public_id: str
    result: str  # "created" | "updated" | "unchanged" | "error"
    errors: dict[str, str] = field(default_factory=dict)
    account: Account | None = None


def _text(
    data: dict[str, Any], key: str, errors: dict[str, str], label: str, *, limit: int
) -> str | None:
    """An optional string field: None when absent; an error when not a string or too long."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        errors[label] = "must be a string"
        return None
    problem = text_unstorable(value)
    if problem:
        errors[label] = problem
        return None
    value = value.strip()
    if len(value) > limit:
        errors[label] = f"is longer than {limit} characters"
        return None
    return value


def _email(data: dict[str, Any], key: str, errors: dict[str, str], label: str) -> str:
    value = _text(data, key, errors, label, limit=EMAIL_MAX)
    if label in errors:
        return ""
    if not value:
        errors[label] = "is required"
        return ""
    try:
        validate_email(value)
    except ValidationError:
        errors[label] = f"{value!r} is not a valid address"
        return ""
    return value.lower()


def _public_id(value: Any, errors: dict[str, str], label: str) -> str:
    if not isinstance(value, str) or not value:
        errors[label] = "is required"
        return ""
    if not public_id_is_valid(value):
        # Ids end up in URLs, file names and download headers: refuse, never rewrite.
        errors[label] = f"{value!r} is not allowed: use {PUBLIC_ID_RULE}"
        return ""
    return value


def account_input_parse(public_id: Any, data: Any) -> tuple[AccountInput | None, dict[str, str]]:
    """Check one account's fields; the errors name each field ("members[0].email")."""
    errors: dict[str, str] = {}
    account_id = _public_id(public_id, errors, "public_id")
    if not isinstance(data, dict):
        errors["account"] = "must be a JSON object"
        return None, errors
    for unknown in sorted(set(data) - ACCOUNT_FIELDS - {"public_id"}):
        errors[unknown] = "is not a field of an account"
    if "public_id" in data and data["public_id"] != public_id and account_id:
        # PUT /accounts/<id> with another id in the body: which account was meant?
        errors["public_id"] = f"{data['public_id']!r} differs from the account's id {public_id!r}"
    email = _email(data, "email", errors, "email")
    name = _text(data, "name", errors, "name", limit=NAME_MAX)
    customer = _text(data, "stripe_customer_id", errors, "stripe_customer_id", limit=CUSTOMER_MAX)
    if customer and not customer.startswith("cus_"):
        errors["stripe_customer_id"] = f"{customer!r} does not start with cus_"
    active = data.get("active", True)
    if not isinstance(active, bool):
        errors["active"] = "must be true or false"
    members: list[MemberInput] = []
    raw_members = data.get("members", [])
    if raw_members is None:
        raw_members = []
    if not isinstance(raw_members, list):
        errors["members"] = "must be a list"
    elif len(raw_members) > MAX_MEMBERS:
        errors["members"] = f"at most {MAX_MEMBERS} members per account"
    else:
        seen_ids: dict[str, int] = {}
        seen_emails: dict[str, int] = {}
        for index, raw in enumerate(raw_members):
            prefix = f"members[{index}]"
            if not isinstance(raw, dict):
                errors[prefix] = "must be a JSON object"
                continue
            for unknown in sorted(set(raw) - MEMBER_FIELDS):
                errors[f"{prefix}.{unknown}"] = "is not a field of a member"
            member_id = _public_id(raw.get("public_id"), errors, f"{prefix}.public_id")
            member_email = _email(raw, "email", errors, f"{prefix}.email")
            member_name = _text(raw, "name", errors, f"{prefix}.name", limit=NAME_MAX)
            if member_id and member_id in seen_ids:
                errors[f"{prefix}.public_id"] = f"already appears as members[{seen_ids[member_id]}]"
            if member_email and member_email in seen_emails:
                errors[f"{prefix}.email"] = (
                    f"already appears as members[{seen_emails[member_email]}]"
                )
            seen_ids.setdefault(member_id, index)
            seen_emails.setdefault(member_email, index)
            members.append(MemberInput(member_id, member_email, member_name))
    if errors:
        return None, errors
    return (
        AccountInput(
            public_id=account_id,
            email=email,
            name=name,
            stripe_customer_id=customer or "",
            active=bool(active),
            members=members,
        ),
        errors,
    )


def _conflicts(wanted: AccountInput) -> dict[str, str]:
    """What already in Janitor forbids this account as sent: the import's rules, per field."""
    errors: dict[str, str] = {}
    other = (
        Account.objects.annotate(email_ci=Lower("email"))
        .filter(email_ci=wanted.email)
        .exclude(public_id=wanted.public_id)
        .values_list("public_id", flat=True)
        .first()
    )
    if other is not None:
        errors["email"] = f"{wanted.email} is the email of account {other}"
    if wanted.stripe_customer_id:
        owner = (
            Account.objects.filter(stripe_customer_id=wanted.stripe_customer_id)
            # The partial unique index's condition, so SQLite uses it too.
            .exclude(stripe_customer_id="")
            .exclude(public_id=wanted.public_id)
            .values_list("public_id", flat=True)
            .first()
        )
        if owner is not None:
            errors["stripe_customer_id"] = f"{wanted.stripe_customer_id} belongs to account {owner}"
    if not wanted.members:
        return errors
    by_id = {
        public_id: (is_staff, account_id)
        for public_id, is_staff, account_id in User.objects.filter(
            public_id__in=[m.public_id for m in wanted.members]
        ).values_list("public_id", "is_staff", "account__public_id")
    }
    by_email = {
        email: (public_id, is_staff)
        for email, public_id, is_staff in User.objects.annotate(email_ci=Lower("email"))
        .filter(email_ci__in=[m.email for m in wanted.members])
        .values_list("email_ci", "public_id", "is_staff")
    }
    for index, member in enumerate(wanted.members):
        prefix = f"members[{index}]"
        found = by_id.get(member.public_id)
        owner_of_email = by_email.get(member.email)
        if found is not None and found[0]:
            errors[f"{prefix}.public_id"] = f"{member.public_id} is a staff account"
        elif found is not None and found[1] not in (None, wanted.public_id):
            errors[f"{prefix}.public_id"] = (
                f"{member.public_id} is a member of account {found[1]}, not "
                f"{wanted.public_id} (moving members is refused)"
            )
        if owner_of_email is not None and owner_of_email[0] != member.public_id:
            errors[f"{prefix}.email"] = (
                f"email {member.email} belongs to a staff account"
                if owner_of_email[1]
                else f"email {member.email} belongs to {owner_of_email[0]}"
            )
    return errors


def _apply(wanted: AccountInput, *, token: ApiToken | None) -> tuple[str, Account]:
    """Upsert the account and its listed members; the caller holds the transaction."""
    account = Account.objects.select_for_update().filter(public_id=wanted.public_id).first()
    changed = False
    if account is None:
        # As the import: `active` false makes the account start revoked, audited as created.
        status = AccessStatus.ACTIVE if wanted.active else AccessStatus.REVOKED
        account = Account.objects.create(
            public_id=wanted.public_id,
            email=wanted.email,
            name=wanted.name or "",
            stripe_customer_id=wanted.stripe_customer_id,
            is_active=wanted.active,
            access_status=status,
        )
        AccessAudit.objects.create(
            account=account,
            actor=SYNC_ACTOR,
            from_status="",
            to_status=status,
            reason=SYNC_REASON,
            source=f"token:{token.pk}" if token is not None else "api",
            details={"token": token.name} if token is not None else {},
        )
        result = "created"
    else:
        values = {
            "email": wanted.email,
            "name": wanted.name,
            "stripe_customer_id": wanted.stripe_customer_id,
        }
        fields = [
            name for name, value in values.items() if value and getattr(account, name) != value
        ]
        for name in fields:
            setattr(account, name, values[name])
        if fields:
            account.save(update_fields=fields)
            changed = True
        result = "unchanged"
    changed = _members_upsert(account, wanted.members) or changed
    if result == "unchanged" and changed:
        result = "updated"
    return result, account


def _members_upsert(account: Account, members: list[MemberInput]) -> bool:
    if not members:
        return False
    existing = {
        member.public_id: member
        for member in User.objects.select_for_update().filter(
            public_id__in=[m.public_id for m in members]
        )
    }
    changed = False
    new_members = []
    for wanted in members:
        member = existing.get(wanted.public_id)
        if member is None:
            new_members.append(
                User(
                    public_id=wanted.public_id,
                    email=wanted.email,
                    name=wanted.name or "",
                    account_id=account.pk,
                    is_active=True,
                    password="!",
                )
            )
            continue
        if member.is_staff or member.account_id not in (None, account.pk):
            # Checked before; a concurrent change since: refuse rather than move anyone.
            raise _Conflict(f"{wanted.public_id} changed meanwhile; send the account again")
        fields = [
            name
            for name, value in (("email", wanted.email), ("name", wanted.name))
            if value and getattr(member, name) != value
        ]
        for name in fields:
            setattr(member, name, getattr(wanted, name))
        if member.account_id is None:
            member.account_id = account.pk
            fields.append("account")
        if fields:
            member.save(update_fields=fields)
            changed = True
    if new_members:
        User.objects.bulk_create(new_members)
        changed = True
    return changed


class _Conflict(Exception):
    pass


def account_sync(*, wanted: AccountInput, token: ApiToken | None) -> SyncResult:
    """Upsert one account and its listed members, all or nothing. Conflicts with what Janitor
    holds come back as field errors, nothing written. Subscriptions that reached Janitor before
    the account are linked afterwards, by the audit's rules, as after an import."""
    from reconciliation.services.subscriptions import subscriptions_link_waiting_for

    for attempt in range(2):
        errors = _conflicts(wanted)
        if errors:
            return SyncResult(wanted.public_id, "error", errors)
        try:
            with transaction.atomic():
                result, account = _apply(wanted, token=token)
        except DataError as exc:
            # A value the field checks let through and the database would not store: this
            # account's error, not a 500 that loses the rest of the batch.
            return SyncResult(wanted.public_id, "error", {"account": f"not stored: {exc}"})
        except (IntegrityError, _Conflict) as exc:
            # A concurrent writer took an id, an email or the customer id meanwhile: check
            # again (the conflict then names the field), or say so when it still will not go.
            if attempt == 0:
                continue
            message = str(exc) if isinstance(exc, _Conflict) else "changed meanwhile; retry"
            return SyncResult(wanted.public_id, "error", {"account": message})
        break
    subscriptions_link_waiting_for(account_ids=[account.pk], actor=SYNC_ACTOR, source="api")
    account.refresh_from_db()
    return SyncResult(wanted.public_id, result, account=account)


def accounts_sync_batch(*, items: Any, token: ApiToken | None) -> list[SyncResult]:
    """Each account of a batch on its own: a bad one does not stop the good ones."""
    if not isinstance(items, list) or not items:
        raise AccountSyncError('Send {"accounts": [...]} with 1 to 1000 accounts.')
    if len(items) > MAX_BATCH:
        raise AccountBatchTooLarge(
            f"{len(items)} accounts in one batch; at most {MAX_BATCH} are accepted."
        )
    results: list[SyncResult] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        public_id = item.get("public_id") if isinstance(item, dict) else None
        wanted, errors = account_input_parse(public_id, item)
        if wanted is not None and wanted.public_id in seen:
            errors = {"public_id": f"already appears as accounts[{seen[wanted.public_id]}]"}
            wanted = None
        label = public_id if isinstance(public_id, str) else ""
        if wanted is None:
            results.append(SyncResult(label, "error", errors))
            continue
        seen[wanted.public_id] = index
        results.append(account_sync(wanted=wanted, token=token))
    return results


def account_as_json(account: Account) -> dict[str, Any]:
    """The account as the API answers it (CONTRACT.md), its members in the order they came."""
    return {
        "public_id": account.public_id,
        "email": account.email,
        "name": account.name,
        "stripe_customer_id": account.stripe_customer_id,
        "status": account.access_status,
        "is_active": account.is_active,
        "members": [
            {"public_id": public_id, "email": email, "name": name, "is_active": is_active}
            for public_id, email, name, is_active in account.members.order_by("id").values_list(
                "public_id", "email", "name", "is_active"
            )
        ],
    }
