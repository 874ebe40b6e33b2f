"""Demo data for a first look: customers in every state, drift of every kind, staff per role."""

import random
from datetime import timedelta

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from accounts.models import AccessAudit, AccessStatus, Account, ActivityKind, ActivityLog, User
from accounts.roles import ROLE_ADMIN, ROLE_FINANCE, ROLE_SUPPORT
from reconciliation.models import Dispute, Flag, FlagKind, Subscription, WebhookEvent

DEMO_PASSWORD = "janitor-demo-2026"
DEMO_STAFF = [
    ("support@janitor.local", "Sam Support", ROLE_SUPPORT),
    ("finance@janitor.local", "Fran Finance", ROLE_FINANCE),
    ("admin@janitor.local", "Alex Admin", ROLE_ADMIN),
    ("admin2@janitor.local", "Robin Admin", ROLE_ADMIN),
]
FIRST = [
    "ada",
    "ben",
    "chloe",
    "dev",
    "emma",
    "farid",
    "grace",
    "hiro",
    "ines",
    "jon",
    "kai",
    "lena",
    "mo",
    "nora",
    "omar",
    "pia",
    "quinn",
    "rosa",
    "sven",
    "tara",
]
LAST = [
    "smith",
    "nguyen",
    "garcia",
    "muller",
    "rossi",
    "kim",
    "okafor",
    "silva",
    "novak",
    "cohen",
    "larsen",
    "tanaka",
]
PLANS = [("price_basic", "Basic", 1500), ("price_pro", "Pro", 4900), ("price_team", "Team", 9900)]

# (how many, account access status, subscription statuses): drift rows are on purpose.
PROFILES = [
    (1400, AccessStatus.ACTIVE, ["active"]),
    (150, AccessStatus.ACTIVE, ["trialing"]),
    (120, AccessStatus.ACTIVE, ["canceled", "active"]),  # stays active: one valid subscription
    (60, AccessStatus.GRACE_PERIOD, ["past_due"]),
    (40, AccessStatus.REVOKED, ["canceled"]),
    (30, AccessStatus.REVOKED, ["unpaid"]),
    (25, AccessStatus.REVOKED, ["incomplete_expired"]),
    (25, AccessStatus.ACTIVE, ["incomplete", "active"]),
    (25, AccessStatus.REVOKED, ["paused"]),
    (40, AccessStatus.ACTIVE, ["past_due"]),  # drift: payment failed, app not told
    (30, AccessStatus.ACTIVE, ["canceled"]),  # drift: cancellation webhook missed
    (20, AccessStatus.REVOKED, ["active"]),  # drift: locked in the app, paying at the provider
    (35, AccessStatus.ACTIVE, []),  # drift: granted by hand, no subscription at all
]


def _public_id(rng: random.Random) -> str:
    raw = "".join(rng.choice("0123456789abcdef") for _ in range(13))
    return f"user-{raw[:5]}-{raw[5:9]}-{raw[9:13]}"


def demo_seed(*, activity_days: int = 30) -> dict[str, int]:
    """Create the demo data; running it again leaves every count as it was."""
    rng = random.Random(20261126)
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    with transaction.atomic():
        _staff_ensure()
        customers, subscriptions, grace = [], [], []
        owner_of: dict[str, str] = {}  # subscription id -> its account's public id
        n = 0
        for count, status, sub_statuses in PROFILES:
            for _ in range(count):
                n += 1
                first, last = rng.choice(FIRST), rng.choice(LAST)
                customer = Account(
                    public_id=_public_id(rng),
                    email=f"{first}.{last}.{n}@example.com",
                    name=f"{first.title()} {last.title()}",
                    stripe_customer_id=f"cus_demo{n:05d}",
                    access_status=status,
                    is_active=status != AccessStatus.REVOKED,
                    grace_ends_at=now + timedelta(days=rng.randint(-2, 6))
                    if status == AccessStatus.GRACE_PERIOD
                    else None,
                    created_at=now - timedelta(days=rng.randint(40, 900)),
                )
                customers.append(customer)
                if status == AccessStatus.GRACE_PERIOD:
                    grace.append(customer.public_id)
                for k, sub_status in enumerate(sub_statuses):
                    price, plan, amount = rng.choice(PLANS)
                    subscriptions.append(
                        Subscription(
                            provider_id=f"sub_demo{n:05d}{k}",
                            customer_id=customer.stripe_customer_id,
                            status=sub_status,
                            price_id=price,
                            plan_name=plan,
                            amount=amount,
                            currency="usd",
                            interval="month",
                            current_period_end=now + timedelta(days=rng.randint(1, 28)),
                            provider_updated_at=now - timedelta(days=rng.randint(1, 60)),
                            raw={"id": f"sub_demo{n:05d}{k}", "status": sub_status, "demo": True},
                        )
                    )
                    owner_of[subscriptions[-1].provider_id] = customer.public_id
        Account.objects.bulk_create(customers, ignore_conflicts=True)
        ids = dict(
            Account.objects.filter(public_id__in=[c.public_id for c in customers]).values_list(
                "public_id", "id"
            )
        )
        # Someone who pays for themselves: an account with one member, the same ids.
        User.objects.bulk_create(
            [
                User(
                    public_id=c.public_id,
                    email=c.email,
                    name=c.name,
                    account_id=ids[c.public_id],
                    date_joined=c.created_at,
                    password="!",
                )
                for c in customers
            ],
            ignore_conflicts=True,
        )
        member_ids = dict(
            User.objects.filter(public_id__in=[c.public_id for c in customers]).values_list(
                "public_id", "id"
            )
        )
        for sub in subscriptions:
            sub.account_id = ids[owner_of[sub.provider_id]]
        Subscription.objects.bulk_create(subscriptions, ignore_conflicts=True)
        _audit_ensure(customers, ids, now)
        _activity_ensure(customers, member_ids, rng, now, activity_days)
        Flag.objects.bulk_create(
            [
                Flag(
                    account_id=ids[pid],
                    kind=FlagKind.PAYMENT_FAILED,
                    opened_by="demo",
                    reason="The provider reports a failed payment (past_due).",
                )
                for pid in grace
            ],
            ignore_conflicts=True,
        )
        _disputes_ensure(customers, ids, now)
        _events_ensure(customers, now)
    team_demo_ensure()
    with transaction.atomic():
        _notices_ensure()
    return {
        "customers": Account.objects.count(),
        "members": User.objects.filter(account__isnull=False).count(),
        "subscriptions": Subscription.objects.count(),
        "activity": ActivityLog.objects.count(),
        "disputes": Dispute.objects.count(),
        "open_flags": Flag.objects.filter(status="open").count(),
    }


def _notices_ensure() -> None:
    """What the demo's staff would have been told: new disputes (Finance), the morning digest
    (Support). Sent by the worker (`make run` prints the emails on its console); listed on
    Notifications. Dedup keys keep a second seed from sending them again."""
    from janitor.services import notify

    for dispute in Dispute.objects.filter(
        provider_id__startswith="dp_demo", status__in=notify.OPEN_DISPUTE_STATUSES
    ).select_related("account"):
        notify.dispute_opened(dispute=dispute)
    notify.support_digest()


def _staff_ensure() -> None:
    for email, name, role in DEMO_STAFF:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_user(email, DEMO_PASSWORD, name=name, is_staff=True)
        user.groups.add(Group.objects.get(name=role))


def _audit_ensure(customers, ids, now) -> None:
    """Revoked demo accounts carry the audit row a real revocation would have left."""
    revoked = [ids[c.public_id] for c in customers if c.access_status == AccessStatus.REVOKED]
    already = set(
        AccessAudit.objects.filter(account_id__in=revoked).values_list("account_id", flat=True)
    )
    AccessAudit.objects.bulk_create(
        [
            AccessAudit(
                account_id=pk,
                at=now - timedelta(days=20),
                actor="system:import",
                from_status="",
                to_status=AccessStatus.REVOKED,
                reason="Imported as inactive",
                source="demo",
            )
            for pk in revoked
            if pk not in already
        ]
    )


def _activity_ensure(customers, ids, rng, now, days) -> None:
    paths = ["/app/", "/app/projects/", "/app/reports/", "/app/settings/", "/app/export/"]
    rows = []
    for n, customer in enumerate(customers):
        if customer.access_status == AccessStatus.REVOKED:
            continue
        ip = f"198.51.100.{n % 250 + 1}"
        for day in range(days):
            if rng.random() < 0.7:
                continue
            at = now - timedelta(days=day, minutes=rng.randint(0, 600))
            kind = ActivityKind.LOGIN if rng.random() < 0.3 else ActivityKind.REQUEST
            rows.append(
                ActivityLog(
                    member_id=ids[customer.public_id],
                    occurred_at=at,
                    kind=kind,
                    path=rng.choice(paths),
                    ip_address=ip,
                    user_agent="Mozilla/5.0 (demo)",
                    source="demo",
                    client_event_id=f"{customer.public_id}:{day}",
                )
            )
    ActivityLog.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)


def _disputes_ensure(customers, ids, now) -> None:
    plan = [
        ("needs_response", "subscription_canceled", 2),
        ("needs_response", "fraudulent", 5),
        ("warning_needs_response", "unrecognized", 9),
        ("under_review", "product_not_received", 12),
        ("lost", "subscription_canceled", -10),
        ("won", "duplicate", -20),
    ]
    active = [c for c in customers if c.access_status == AccessStatus.ACTIVE][: len(plan)]
    Dispute.objects.bulk_create(
        [
            Dispute(
                provider_id=f"dp_demo{k:03d}",
                account_id=ids[c.public_id],
                customer_id=c.stripe_customer_id,
                charge_id=f"ch_demo{k:03d}",
                amount=4900,
                currency="usd",
                reason=reason,
                status=status,
                due_by=now + timedelta(days=days),
                provider_updated_at=now,
                raw={"id": f"dp_demo{k:03d}", "demo": True},
            )
            for k, ((status, reason, days), c) in enumerate(zip(plan, active, strict=True))
        ],
        ignore_conflicts=True,
    )


def _events_ensure(customers, now) -> None:
    rows = []
    for k, customer in enumerate(customers[:40]):
        event_id = f"evt_demo{k:04d}"
        rows.append(
            WebhookEvent(
                provider_event_id=event_id,
                type="invoice.paid",
                created=now - timedelta(hours=k),
                status="processed",
                processed_at=now - timedelta(hours=k),
                attempts=1,
                source="demo",
                customer_id=customer.stripe_customer_id,
                payload={
                    "id": event_id,
                    "type": "invoice.paid",
                    "data": {"object": {"customer": customer.stripe_customer_id}},
                },
            )
        )
    WebhookEvent.objects.bulk_create(rows, ignore_conflicts=True)


# --- Team accounts ----------------------------------------------------------------------------

ACME = "acct-acme-corp"
GLOBEX = "acct-globex"
TEAM_DOMAINS = {ACME: "acme.example", GLOBEX: "globex.example"}


def team_demo_ensure(*, now=None) -> None:
    """The seed's story: ACME Corp on a 5,000 USD/month Enterprise plan, 50 members (37 of
    them active in the last 30 days), 50 sessions live right now and an open dispute; and
    Globex on a per-seat plan with 11 enabled members for 10 seats (a seats_exceeded flag).
    Idempotent: a second run adds nothing."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.base import SessionBase

    from accounts.services.sessions import session_index_record, session_keys_for

    now = now or timezone.now()
    rng = random.Random(20261206)
    with transaction.atomic():
        acme, _ = Account.objects.get_or_create(
            public_id=ACME,
            defaults={
                "name": "ACME Corp",
                "email": "billing@acme.example",
                "stripe_customer_id": "cus_demo_acme",
                "created_at": now - timedelta(days=400),
            },
        )
        globex, _ = Account.objects.get_or_create(
            public_id=GLOBEX,
            defaults={
                "name": "Globex",
                "email": "it@globex.example",
                "stripe_customer_id": "cus_demo_globex",
                "created_at": now - timedelta(days=200),
            },
        )
        members = {
            ACME: _team_members(acme, 50, rng, now),
            GLOBEX: _team_members(globex, 11, rng, now),
        }
        Subscription.objects.get_or_create(
            provider_id="sub_demo_acme",
            defaults={
                "account": acme,
                "customer_id": acme.stripe_customer_id,
                "status": "active",
                "price_id": "price_demo_enterprise",
                "plan_name": "Enterprise",
                "amount": 500_000,
                "currency": "usd",
                "interval": "month",
                "current_period_end": now + timedelta(days=12),
                "provider_updated_at": now - timedelta(days=18),
                "raw": {"id": "sub_demo_acme", "status": "active", "demo": True},
            },
        )
        Subscription.objects.get_or_create(
            provider_id="sub_demo_globex",
            defaults={
                "account": globex,
                "customer_id": globex.stripe_customer_id,
                "status": "active",
                "price_id": "price_demo_seat",
                "plan_name": "Team (per seat)",
                "amount": 2_000,
                "currency": "usd",
                "interval": "month",
                "seat_quantity": 10,
                "current_period_end": now + timedelta(days=20),
                "provider_updated_at": now - timedelta(days=10),
                "raw": {"id": "sub_demo_globex", "status": "active", "demo": True},
            },
        )
        Dispute.objects.get_or_create(
            provider_id="dp_demo_acme",
            defaults={
                "account": acme,
                "customer_id": acme.stripe_customer_id,
                "charge_id": "ch_demo_acme",
                "charge_created": now - timedelta(days=18),
                "service_period_start": now - timedelta(days=18),
                "service_period_end": now + timedelta(days=12),
                "amount": 500_000,
                "currency": "usd",
                "reason": "subscription_canceled",
                "status": "needs_response",
                "due_by": now + timedelta(days=6),
                "provider_updated_at": now,
                "raw": {"id": "dp_demo_acme", "demo": True},
            },
        )
        Flag.objects.get_or_create(
            account=globex,
            kind=FlagKind.SEATS_EXCEEDED,
            status="open",
            defaults={
                "opened_by": "demo",
                "reason": "11 enabled members for 10 paid seats (1 over). Record a comp, "
                "disable members, or note the sale.",
            },
        )
        # Activity: 37 of ACME's 50 people used it in the last 30 days, about 33 times each.
        rows = []
        for k, member in enumerate(members[ACME][:37] + members[GLOBEX]):
            for j in range(33):
                at = (
                    now - timedelta(minutes=3 + rng.randint(0, 30 * 24 * 60))
                    if j
                    else now - (timedelta(minutes=3 + k))
                )
                rows.append(
                    ActivityLog(
                        member=member,
                        occurred_at=at,
                        kind=ActivityKind.LOGIN if j % 8 == 0 else ActivityKind.REQUEST,
                        path=rng.choice(["/app/", "/app/projects/", "/app/reports/"]),
                        ip_address=f"203.0.113.{k % 200 + 1}",
                        user_agent="Mozilla/5.0 (demo)",
                        source="demo",
                        client_event_id=f"{member.public_id}:team:{j}",
                    )
                )
        ActivityLog.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)
    # Sessions live now, one per ACME member: real sessions in the store, in the index.
    store_class = _session_store()
    for member in members[ACME]:
        if session_keys_for(user=member):
            continue
        store: SessionBase = store_class()
        store[SESSION_KEY] = str(member.pk)
        store[BACKEND_SESSION_KEY] = "accounts.backends.AccessStatusBackend"
        store[HASH_SESSION_KEY] = member.get_session_auth_hash()
        store.save(must_create=True)
        session_index_record(user=member, session_key=store.session_key)


def _session_store():
    from importlib import import_module

    from django.conf import settings

    return import_module(settings.SESSION_ENGINE).SessionStore


def _team_members(account: Account, count: int, rng: random.Random, now) -> list[User]:
    domain = TEAM_DOMAINS[account.public_id]
    wanted = []
    for k in range(count):
        first, last = FIRST[k % len(FIRST)], LAST[(k * 7) % len(LAST)]
        wanted.append(
            User(
                public_id=f"{account.public_id}-m{k + 1:03d}",
                email=f"{first}.{last}.{k + 1}@{domain}",
                name=f"{first.title()} {last.title()}",
                account=account,
                date_joined=account.created_at + timedelta(days=k),
                password="!",
            )
        )
    User.objects.bulk_create(wanted, ignore_conflicts=True)
    return list(User.objects.filter(account=account).order_by("public_id"))
