"""What every part of webhook handling shares: the event types handled, the retry and sweep
limits, the refusal counters, the errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from janitor.errors import ErrorKind, JanitorError
from reconciliation.models import (
    WebhookStatus,
)

logger = logging.getLogger("janitor.webhooks")

WEBHOOK_ACTOR = "system:webhook"
PROCESS_TASK = "reconciliation.tasks.webhook_event_process_task"
# Several stored events in one task (the web processes' batches, intake.py).
PROCESS_BATCH_TASK = "reconciliation.tasks.webhook_events_process_task"

# Processing tries before an event is dead-lettered (each failure waits longer: see backoff).
WEBHOOK_MAX_ATTEMPTS = 5
WEBHOOK_BACKOFF_BASE_SECONDS = 60
WEBHOOK_BACKOFF_MAX_SECONDS = 3600
# How long a stored or re-enqueued event may wait for a worker before the sweeper sends it again.
# Longer than a healthy queue's worst backlog, so the sweeper does not double a busy queue.
WEBHOOK_SWEEP_GRACE_SECONDS = 300
WEBHOOK_SWEEP_BATCH = 1000
# The catch-up lists from the newest stored event minus this, so late-created ones are seen too.
WEBHOOK_CATCH_UP_OVERLAP_SECONDS = 3600
# Stripe keeps events for 30 days; asking for more is refused.
WEBHOOK_CATCH_UP_WINDOW = timedelta(days=30) - timedelta(minutes=5)

SUBSCRIPTION_TYPES = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    }
)
INVOICE_TYPES = frozenset({"invoice.paid", "invoice.payment_failed"})
# Every charge.dispute.* event carries the dispute: each one may be the first Janitor sees.
DISPUTE_TYPES = frozenset(
    {
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
    }
)
CUSTOMER_DELETED = "customer.deleted"
HANDLED_TYPES = SUBSCRIPTION_TYPES | INVOICE_TYPES | DISPUTE_TYPES | {CUSTOMER_DELETED}
FINISHED_STATUSES = frozenset({WebhookStatus.PROCESSED, WebhookStatus.IGNORED})
REPLAYABLE_STATUSES = frozenset({WebhookStatus.FAILED, WebhookStatus.DEAD, WebhookStatus.PENDING})

# Rejected deliveries are counted by kind in the cache, for the Webhooks page.
REJECTION_KINDS = ("signature", "stale", "payload", "too_large")
REJECTION_KEY = "webhooks:rejected:{kind}"
REJECTION_LAST_KEY = "webhooks:rejected:last"


class WebhookProcessingError(Exception):
    """An event could not be applied this time; it is retried, then dead-lettered."""


class EventInvalid(JanitorError):
    """A verified body that still is not an event Janitor can store."""

    kind = ErrorKind.INVALID


@dataclass
class CatchUpResult:
    listed: int
    stored: int
    since: datetime
