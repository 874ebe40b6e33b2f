"""What the sandbox holds at the start of a demo: the provider's side of the demo accounts.

The caller (manage.py sandbox seed) reads the app's demo accounts and hands them over as plain
data, so the two sides tell one story: the subscriptions the app mirrors are the ones the
sandbox serves, with their drift (canceled or past_due at the provider while active in the
app, active at the provider while locked in the app), plus what only Stripe knows: customers
no account matches, and disputes on real-shaped charges (invoice, payment intent, charge).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sandbox.provider import Sandbox

DAY = 86_400


@dataclass(frozen=True)
class SeedSubscription:
    id: str
    status: str
    price_id: str
    amount: int
    current_period_end: int
    created: int
    quantity: int = 1
    per_seat: bool = False


@dataclass(frozen=True)
class SeedCustomer:
    id: str
    email: str
    name: str
    account_public_id: str | None  # None: a customer no Janitor account knows
    subscriptions: tuple[SeedSubscription, ...] = ()


@dataclass(frozen=True)
class SeedDispute:
    id: str
    customer: str
    amount: int
    reason: str
    status: str
    due_by: int
    charged_days_ago: int = 10


@dataclass
class SeedSummary:
    customers: int = 0
    subscriptions: dict[str, int] = field(default_factory=dict)
    orphan_customers: int = 0
    disputes: int = 0


def orphan_customers(now: int, count: int = 6) -> list[SeedCustomer]:
    """Paying customers no Janitor account matches (bought through another channel)."""
    return [
        SeedCustomer(
            id=f"cus_sandbox_orphan{k:02d}",
            email=f"buyer{k}@elsewhere.example",
            name=f"Unmatched Buyer {k}",
            account_public_id=None,
            subscriptions=(
                SeedSubscription(
                    id=f"sub_sandbox_orphan{k:02d}",
                    status="active",
                    price_id="price_basic",
                    amount=1500,
                    current_period_end=now + (k + 3) * DAY,
                    created=now - (k + 40) * DAY,
                ),
            ),
        )
        for k in range(count)
    ]


def sandbox_seed(
    sandbox: Sandbox, *, customers: list[SeedCustomer], disputes: list[SeedDispute]
) -> SeedSummary:
    """Fill an empty sandbox. Seeded state is the provider's starting point, so it sends no
    webhooks, except for the disputes: their created events are delivered when the sandbox
    serves, and bring the sandbox's charges into Janitor's dispute mirror."""
    summary = SeedSummary()
    for customer in sorted(
        customers, key=lambda c: min((s.created for s in c.subscriptions), default=0)
    ):
        sandbox.add_customer(
            customer.id,
            email=customer.email,
            name=customer.name,
            metadata={"account_id": customer.account_public_id}
            if customer.account_public_id
            else {},
            created=min((s.created for s in customer.subscriptions), default=int(time.time())),
        )
        summary.customers += 1
        if customer.account_public_id is None:
            summary.orphan_customers += 1
        for subscription in customer.subscriptions:
            sandbox.add_subscription(
                subscription.id,
                customer=customer.id,
                status=subscription.status,
                price_id=subscription.price_id,
                amount=subscription.amount,
                current_period_end=subscription.current_period_end,
                created=subscription.created,
                quantity=subscription.quantity,
                price_metadata={"per_seat": "true"} if subscription.per_seat else None,
            )
            summary.subscriptions[subscription.status] = (
                summary.subscriptions.get(subscription.status, 0) + 1
            )
    for dispute in disputes:
        opened = sandbox.add_customer_dispute(
            dispute.id,
            customer=dispute.customer,
            charged_days_ago=dispute.charged_days_ago,
            amount=dispute.amount,
            reason=dispute.reason,
            status=dispute.status,
            due_by=dispute.due_by,
        )
        sandbox.emit("charge.dispute.created", opened)
        summary.disputes += 1
    return summary
