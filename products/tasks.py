"""django-q2 tasks of products: thin wrappers that call a service."""

from products.services.delivery import deliveries_run_queued


def deliveries_deliver_due_task() -> int:
    """Queued on commit after deliveries are written, and every minute by the sweeper
    schedule (a task the broker lost, retries that fell due)."""
    return deliveries_run_queued()
