"""django-q2 tasks of the dashboard shell: notices. Each loads ids and calls a service."""

from janitor.services import notify
from janitor.services.notifications import notice_send, notices_retry_due


def notice_send_task(notice_id: int) -> str:
    return notice_send(notice_id=notice_id)


def notices_retry_task() -> int:
    return notices_retry_due()


def notifications_check_task() -> dict:
    """Every few minutes: disputes nearly due, stalled revocations, newly dead webhooks."""
    return {
        "disputes_due": notify.disputes_due_check(),
        "revocations_stalled": notify.revocations_stalled_check(),
        "webhooks_dead": notify.webhooks_dead_check(),
    }


def support_digest_task() -> int:
    return notify.support_digest()
