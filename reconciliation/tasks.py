"""django-q2 tasks: thin wrappers that load ids and call a service."""

from dataclasses import asdict

from reconciliation.services.privacy import retention_purge
from reconciliation.services.webhooks import (
    webhook_event_process,
    webhook_events_catch_up,
    webhook_events_sweep,
)


def webhook_event_process_task(event_id: int, trigger: str = "queue") -> str:
    return webhook_event_process(event_id=event_id, trigger=trigger)


def webhook_events_sweep_task() -> int:
    return webhook_events_sweep()


def webhook_events_catch_up_task() -> dict:
    result = webhook_events_catch_up()
    return {"listed": result.listed, "stored": result.stored, "since": result.since.isoformat()}


def retention_purge_task() -> dict:
    return asdict(retention_purge())
