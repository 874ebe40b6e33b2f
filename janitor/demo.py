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

# (how many, account access status, subscription statuses): drift rows are on purpose. The
# sandbox (manage.py sandbox seed) serves these same subscriptions, so the drift is real there:
# about 6% of the accounts with access would change, so the first real run halts on the 5%
# safety brake and an Admin applies it (the README's "Try it").
PROFILES = [
    (1385, AccessStatus.ACTIVE, ["active"]),
    (150, AccessStatus.ACTIVE, ["trialing"]),
    (120, AccessStatus.ACTIVE, ["canceled", "active"]),  # stays active: one valid subscription
    (45, AccessStatus.GRACE_PERIOD, ["past_due"]),
    (15, AccessStatus.GRACE_PERIOD, ["canceled"]),
    (40, AccessStatus.REVOKED, ["canceled"]),
    (30, AccessStatus.REVOKED, ["unpaid"]),
    (25, AccessStatus.REVOKED, ["incomplete_expired"]),
    (25, AccessStatus.ACTIVE, ["incomplete", "active"]),
    (25, AccessStatus.REVOKED, ["paused"]),
    (40, AccessStatus.ACTIVE, ["past_due"]),  # drift: payment failed, app not told
    (45, AccessStatus.ACTIVE, ["canceled"]),  # drift: cancellation webhook missed
    (20, AccessStatus.REVOKED, ["active"]),  # drift: locked in the app, paying at the provider
    (35, AccessStatus.ACTIVE, []),  # drift: granted by hand, no Stripe customer at all
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
        customers, subscriptions = [], []
        owner_of: dict[str, str] = {}  # subscription id -> its account's public id
        profile_of: dict[str, list[str]] = {}  # public id -> its subscription statuses
        n = 0
        for count, status, sub_statuses in PROFILES:
            for _ in range(count):
                n += 1
                first, last = rng.choice(FIRST), rng.choice(LAST)
                customer = Account(
                    public_id=_public_id(rng),
                    email=f"{first}.{last}.{n}@example.com",
                    name=f"{first.title()} {last.title()}",
                    stripe_customer_id=f"cus_demo{n:05d}" if sub_statuses else "",
                    access_status=status,
                    is_active=status != AccessStatus.REVOKED,
                    grace_ends_at=now + timedelta(days=rng.randint(-2, 6))
                    if status == AccessStatus.GRACE_PERIOD
                    else None,
                    created_at=now - timedelta(days=rng.randint(40, 900)),
                )
                customers.append(customer)
                profile_of[customer.public_id] = sub_statuses
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
        _audit_ensure(customers, ids, now, profile_of)
        _activity_ensure(customers, member_ids, rng, now, activity_days)
        _disputes_ensure(customers, ids, now)
        _events_ensure(customers, now, profile_of)
        _runs_ensure(now, rng)
    team_demo_ensure()
    with transaction.atomic():
        _flags_ensure(customers, ids, profile_of, now, rng)
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


# Of the accounts locked in the app while paying at the provider, this many were revoked by a
# person (reconciliation flags them, never re-activates); the rest were imported as inactive.
STAFF_REVOKED_PAYING = 5


def _audit_ensure(customers, ids, now, profile_of) -> None:
    """Revoked demo accounts carry the audit row a real revocation would have left."""
    revoked = [ids[c.public_id] for c in customers if c.access_status == AccessStatus.REVOKED]
    paying_locked = [
        ids[c.public_id]
        for c in customers
        if c.access_status == AccessStatus.REVOKED and profile_of[c.public_id] == ["active"]
    ]
    by_staff = set(paying_locked[:STAFF_REVOKED_PAYING])
    already = set(
        AccessAudit.objects.filter(account_id__in=revoked).values_list("account_id", flat=True)
    )
    AccessAudit.objects.bulk_create(
        [
            AccessAudit(
                account_id=pk,
                at=now - timedelta(days=20),
                actor="admin@janitor.local" if pk in by_staff else "system:import",
                from_status="" if pk not in by_staff else AccessStatus.ACTIVE,
                to_status=AccessStatus.REVOKED,
                reason="Account takeover reported by the customer"
                if pk in by_staff
                else "Imported as inactive",
                reference=f"INC-2026-{pk:03d}" if pk in by_staff else "",
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


# (status, reason, deadline in days from now): open ones spread over the next three weeks, one
# past due (no response possible any more), one under review, two closed.
DISPUTE_PLAN = [
    ("needs_response", "subscription_canceled", 2),
    ("needs_response", "fraudulent", 5),
    ("warning_needs_response", "unrecognized", 9),
    ("under_review", "product_not_received", 12),
    ("lost", "subscription_canceled", -10),
    ("won", "duplicate", -20),
    ("needs_response", "fraudulent", 15),
    ("needs_response", "product_not_received", 20),
    ("needs_response", "unrecognized", -1),
]


def _disputes_ensure(customers, ids, now) -> None:
    in_sync = [c for c in customers if c.access_status == AccessStatus.ACTIVE]
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
                provider_updated_at=now - timedelta(days=1),
                raw={"id": f"dp_demo{k:03d}", "demo": True},
            )
            for k, ((status, reason, days), c) in enumerate(
                zip(DISPUTE_PLAN, in_sync[: len(DISPUTE_PLAN)], strict=True)
            )
        ],
        ignore_conflicts=True,
    )


# Events the worker could not finish: failed ones (retrying) and dead-lettered ones an Admin
# replays from Webhooks. Their bodies are real Stripe events (the sandbox's builders) about
# the demo's past_due drift; replayed against the sandbox they put those accounts in grace.
FAILED_EVENTS = 3
DEAD_EVENTS = 4


def _events_ensure(customers, now, profile_of) -> None:
    from sandbox.stripe_fake import event_object, invoice_object

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
    unpaid = [
        c
        for c in customers
        if c.access_status == AccessStatus.ACTIVE and profile_of[c.public_id] == ["past_due"]
    ]
    for k, customer in enumerate(unpaid[: FAILED_EVENTS + DEAD_EVENTS]):
        dead = k >= FAILED_EVENTS
        created = now - timedelta(hours=3 + 5 * k)
        stamp = int(created.timestamp())
        subscription_id = f"sub_demo{int(customer.stripe_customer_id[8:]):05d}0"
        invoice = invoice_object(
            id=f"in_demo_unpaid{k:03d}",
            customer=customer.stripe_customer_id,
            subscription=subscription_id,
            amount=1500,
            currency="usd",
            created=stamp,
            period_start=stamp,
            period_end=stamp + 30 * 86_400,
        )
        invoice.update(status="open", amount_paid=0, amount_remaining=1500)
        event = event_object(
            "invoice.payment_failed", invoice, id=f"evt_demo_unpaid{k:03d}", created=stamp
        )
        rows.append(
            WebhookEvent(
                provider_event_id=event["id"],
                type=event["type"],
                created=created,
                status="dead" if dead else "failed",
                attempts=5 if dead else 2,
                last_error=f"Stripe unavailable fetching {subscription_id}: "
                "APIConnectionError: connection refused (the provider was down)",
                next_attempt_at=None if dead else now + timedelta(minutes=30),
                received_at=created,
                source="demo",
                customer_id=customer.stripe_customer_id,
                api_version=event["api_version"],
                payload=event,
            )
        )
    WebhookEvent.objects.bulk_create(rows, ignore_conflicts=True)


def _runs_ensure(now, rng) -> None:
    """Two weeks of nightly runs for the runs chart: applied ones, and one halted by the safety
    brake that an Admin discarded after checking it. Counts are the demo's own shape."""
    from reconciliation.models import ReconciliationRun, RunStatus

    if ReconciliationRun.objects.filter(triggered_by="demo").exists():
        return
    runs = []
    for days_ago in range(14, 0, -1):
        started = (now - timedelta(days=days_ago)).replace(hour=2, minute=30)
        halted = days_ago == 6
        changes = rng.randint(4, 18) if not halted else 131
        counts = {
            "in_sync": 2000 - changes - 40,
            "start_grace": changes // 2,
            "payment_failed": changes - changes // 2,
            "flag_manual_grant": 35,
            "flag_mismatch": 5,
        }
        seconds = round(rng.uniform(8, 14), 1)
        runs.append(
            ReconciliationRun(
                started_at=started,
                finished_at=started + timedelta(seconds=seconds),
                status=RunStatus.DISCARDED if halted else RunStatus.APPLIED,
                triggered_by="demo",
                counts=counts,
                pages_read=24,
                subscriptions_read=2345,
                change_ratio=round(changes / 1900, 4),
                halt_reason=(
                    "131 of 1,900 accounts with access (6.9%) would change: more than "
                    "JANITOR_AUDIT_MAX_CHANGE_RATIO (5%). Discarded by admin@janitor.local: "
                    "a Stripe outage made subscriptions look canceled."
                )
                if halted
                else "",
                durations={"listing": round(seconds * 0.7, 1), "decide": round(seconds * 0.3, 1)},
            )
        )
    ReconciliationRun.objects.bulk_create(runs)


# (flag kind, how many, which demo accounts): every kind in the review queue, opened over the
# last two weeks; a third of them assigned, with a note.
def _flags_ensure(customers, ids, profile_of, now, rng) -> None:
    from reconciliation.models import FlagNote

    by_profile: dict[tuple[str, tuple[str, ...]], list[Account]] = {}
    for c in customers:
        by_profile.setdefault((c.access_status, tuple(profile_of[c.public_id])), []).append(c)
    grace = AccessStatus.GRACE_PERIOD
    lost = Dispute.objects.filter(provider_id__startswith="dp_demo", status="lost")
    open_disputes = Dispute.objects.filter(
        provider_id__startswith="dp_demo", status__in=["needs_response", "warning_needs_response"]
    )
    plan: list[tuple[str, list[int], str]] = [
        (
            FlagKind.PAYMENT_FAILED,
            [ids[c.public_id] for c in by_profile[(grace, ("past_due",))]],
            "The provider reports a failed payment (past_due).",
        ),
        (
            FlagKind.MISSING_SUBSCRIPTION,
            [ids[c.public_id] for c in by_profile[(grace, ("canceled",))]],
            "No access-granting subscription at the provider (canceled).",
        ),
        (
            FlagKind.GRACE_EXPIRED,
            [
                ids[c.public_id]
                for c in by_profile[(grace, ("past_due",))]
                if c.grace_ends_at is not None and c.grace_ends_at <= now
            ],
            "The grace period ended and the provider still shows no valid subscription.",
        ),
        (
            FlagKind.REACTIVATED,
            [ids[c.public_id] for c in by_profile[(AccessStatus.ACTIVE, ("active",))][50:56]],
            "Re-activated: locked in the app while paying at the provider. Find out why.",
        ),
        (
            FlagKind.MANUAL_GRANT,
            [ids[c.public_id] for c in by_profile[(AccessStatus.ACTIVE, ())][:12]],
            "Active in the app, no subscription at the provider, no comp.",
        ),
        (
            FlagKind.PROVIDER_MISMATCH,
            [
                ids[c.public_id]
                for c in by_profile[(AccessStatus.REVOKED, ("active",))][:STAFF_REVOKED_PAYING]
            ],
            "Revoked by staff, but the provider shows an active subscription.",
        ),
        (
            FlagKind.DISPUTED,
            list(open_disputes.values_list("account_id", flat=True)),
            "A customer disputed a charge: stage evidence before the deadline.",
        ),
        (
            FlagKind.CHARGEBACK_LOST,
            list(lost.values_list("account_id", flat=True)),
            "A dispute was lost: decide whether access stays.",
        ),
    ]
    flags = []
    for kind, account_ids, reason in plan:
        for account_id in account_ids:
            flags.append(
                Flag(
                    account_id=account_id,
                    kind=kind,
                    opened_by="demo",
                    reason=reason,
                    # Ages spread over two weeks, the newest an hour ago.
                    opened_at=now - timedelta(hours=rng.randint(1, 14 * 24)),
                )
            )
    Flag.objects.bulk_create(flags, ignore_conflicts=True)
    staff = list(User.objects.filter(email__in=[e for e, _n, _r in DEMO_STAFF]).order_by("email"))
    notes = [
        "Emailed the customer about their card; waiting for an answer.",
        "Customer says the bank blocked the renewal; they will retry this week.",
        "Looks like a duplicate account; checking with Finance.",
        "Sales confirmed a trial extension; record a comp if it is still open on Friday.",
    ]
    demo_flags = Flag.objects.filter(opened_by="demo", status="open", assignee__isnull=True)
    for k, flag in enumerate(demo_flags.order_by("id")):
        if k % 3 or flag.notes.exists():
            continue
        author = staff[k % len(staff)]
        Flag.objects.filter(pk=flag.pk).update(assignee=author)
        FlagNote.objects.create(
            flag=flag,
            author=author,
            body=notes[k % len(notes)],
            created_at=flag.opened_at + timedelta(hours=2),
        )


# --- The sandbox's side of the demo (manage.py sandbox seed) ----------------------------------


def demo_sandbox_customers():
    """The demo accounts' Stripe customers and subscriptions, as the sandbox should serve them:
    exactly what the app's subscription mirror holds (its drift included)."""
    from sandbox.seed import SeedCustomer, SeedSubscription

    subscriptions: dict[int, list[SeedSubscription]] = {}
    for sub in Subscription.objects.filter(account__isnull=False).order_by("provider_id"):
        if sub.account_id is None:  # excluded by the filter; tells mypy
            continue
        period_end = sub.current_period_end or timezone.now() + timedelta(days=15)
        subscriptions.setdefault(sub.account_id, []).append(
            SeedSubscription(
                id=sub.provider_id,
                status=sub.status,
                price_id=sub.price_id or "price_basic",
                amount=sub.amount or 0,
                current_period_end=int(period_end.timestamp()),
                created=int((period_end - timedelta(days=30 * 6)).timestamp()),
                quantity=sub.seat_quantity or 1,
                per_seat=sub.seat_quantity is not None,
            )
        )
    return [
        SeedCustomer(
            id=account.stripe_customer_id,
            email=account.email,
            name=account.name,
            account_public_id=account.public_id,
            subscriptions=tuple(subscriptions.get(account.pk, ())),
        )
        for account in Account.objects.exclude(stripe_customer_id="").order_by("pk")
    ]


def demo_sandbox_disputes():
    """The demo's disputes, to be opened in the sandbox on real-shaped charges."""
    from sandbox.seed import SeedDispute

    return [
        SeedDispute(
            id=dispute.provider_id,
            customer=dispute.customer_id,
            amount=dispute.amount,
            reason=dispute.reason,
            status=dispute.status,
            due_by=int(dispute.due_by.timestamp()) if dispute.due_by else 0,
            charged_days_ago=20,
        )
        for dispute in Dispute.objects.filter(provider_id__startswith="dp_demo").order_by(
            "provider_id"
        )
    ]


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
