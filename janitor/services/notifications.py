"""Notices: record who must hear what, send it from the queue once, retry, and keep the record.

Writers call `notice_publish` in the transaction of the change they report: the notice rows
commit (or roll back) with it, and sending is queued after commit, never done in a request.
Each row has a dedup key, so a retried task or a duplicated webhook sends nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from accounts.roles import ROLE_ADMIN, ROLE_FINANCE, ROLE_SUPPORT
from janitor.models import UNMUTABLE_KINDS, Notice, NoticeKind, NoticeMute, NoticeStatus

logger = logging.getLogger(__name__)

ROLE_OF_AUDIENCE = {"support": ROLE_SUPPORT, "finance": ROLE_FINANCE, "admins": ROLE_ADMIN}
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
# A pending notice whose send task has not run for this long was lost by the broker.
PENDING_LOST_AFTER = timedelta(minutes=5)
SEND_TASK = "janitor.tasks.notice_send_task"


@dataclass(frozen=True)
class Target:
    # "mailto:someone@example.com", or "apprise:<audience>:<digest>": a reference to one of
    # the role's Apprise URLs, read from the settings when sending (URLs hold secrets; the
    # database never does, and a rotated URL is not used again).
    address: str
    label: str  # what the Notifications page shows: never a secret
    user: User | None = None


def _digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def target_label(url: str) -> str:
    """An Apprise URL reduced to its scheme: hosts and paths of many services are secrets
    (a Slack token, a Teams webhook), and some URLs are not valid for urlsplit at all."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    return f"{scheme[:20]}://… #{_digest(url)[:6]}"


def apprise_url_for(address: str) -> str | None:
    """The configured Apprise URL an "apprise:<audience>:<digest>" target refers to."""
    _, audience, digest = address.split(":", 2)
    for url in settings.JANITOR_NOTIFY.get(audience) or []:
        if _digest(url) == digest:
            return url
    return None


def role_targets(*, audience: str, exclude: User | None = None) -> list[Target]:
    """A role's Apprise URLs from the environment, or else its active staff members' emails."""
    urls = settings.JANITOR_NOTIFY.get(audience) or []
    if urls:
        return [Target(f"apprise:{audience}:{_digest(url)}", target_label(url)) for url in urls]
    members = User.objects.filter(
        is_staff=True, is_active=True, groups__name=ROLE_OF_AUDIENCE[audience]
    ).order_by("email")
    if exclude is not None:
        members = members.exclude(pk=exclude.pk)
    return [Target(f"mailto:{u.email}", u.email, u) for u in members.distinct()]


def person_target(user: User) -> Target:
    return Target(f"mailto:{user.email}", user.email, user)


def dashboard_link(path: str) -> str:
    return f"{settings.JANITOR_PUBLIC_URL}{path}"


def _dedup(kind: str, key: str, target: Target) -> str:
    digest = hashlib.sha256(f"{kind}|{key}|{target.address}".encode()).hexdigest()[:24]
    return f"{kind}:{key[:180]}:{digest}"


def notice_publish(
    *,
    kind: str,
    audience: str,
    key: str,
    subject: str,
    body: str,
    link: str = "",
    targets: list[Target] | None = None,
    exclude: User | None = None,
) -> list[Notice]:
    """Record one notice per target (a role's, or those given) and queue each after commit.

    `key` names the occasion (e.g. the dispute's id): the same kind, key and target make the
    same notice, which exists once whatever the number of calls.
    """
    if targets is None:
        targets = role_targets(audience=audience, exclude=exclude)
    muted: set[int] = set()
    users = [t.user.pk for t in targets if t.user is not None]
    if users and kind not in UNMUTABLE_KINDS:
        muted = set(
            NoticeMute.objects.filter(user_id__in=users, kind=kind).values_list(
                "user_id", flat=True
            )
        )
    rows = [
        Notice(
            kind=kind,
            audience=audience,
            target=t.address,
            target_label=t.label,
            recipient=t.user,
            dedup_key=_dedup(kind, key, t),
            subject=subject[:255],
            body=body,
            link=link[:500],
            status=NoticeStatus.MUTED if t.user and t.user.pk in muted else NoticeStatus.PENDING,
        )
        for t in targets
    ]
    if not rows:
        return []
    keys = [row.dedup_key for row in rows]
    existing = set(Notice.objects.filter(dedup_key__in=keys).values_list("dedup_key", flat=True))
    fresh = [row for row in rows if row.dedup_key not in existing]
    Notice.objects.bulk_create(fresh, ignore_conflicts=True)
    created = list(
        Notice.objects.filter(
            dedup_key__in=[r.dedup_key for r in fresh], status=NoticeStatus.PENDING
        ).values_list("pk", flat=True)
    )
    if created:
        transaction.on_commit(lambda: notices_enqueue(notice_ids=created))
    return fresh


def notices_enqueue(*, notice_ids: list[int]) -> None:
    """Queue the send tasks; a broker that refuses leaves them pending for the retry sweep."""
    from django_q.tasks import async_task

    for notice_id in notice_ids:
        try:
            async_task(SEND_TASK, notice_id, group="notices")
        except Exception:  # the sweep (notices_retry_due) picks pending notices up later
            logger.exception("could not queue notice %s", notice_id)


def _backoff(attempts: int) -> timedelta:
    factor: int = 2 ** max(attempts - 1, 0)  # int ** int is typed Any (a negative power)
    return min(BACKOFF_BASE * factor, BACKOFF_MAX)


def _deliver(notice: Notice) -> None:
    """Send one notice; raises with the reason when it did not go out."""
    body = notice.body + (f"\n\n{notice.link}" if notice.link else "")
    if notice.target.startswith("mailto:"):
        send_mail(
            notice.subject,
            body,
            settings.DEFAULT_FROM_EMAIL,
            [notice.target[len("mailto:") :]],
            fail_silently=False,
        )
        return
    import apprise

    url = apprise_url_for(notice.target)
    if url is None:
        raise LookupError(
            f"{notice.target_label} is no longer in JANITOR_NOTIFY_{notice.audience.upper()}"
        )
    sender = apprise.Apprise()
    if not sender.add(url):
        raise ValueError(f"not an Apprise URL Janitor can use: {notice.target_label}")
    # apprise does not annotate LogCapture.
    with apprise.LogCapture(level=apprise.logging.WARNING) as captured:  # type: ignore[no-untyped-call]
        delivered = sender.notify(title=notice.subject, body=body)
    if not delivered:
        detail = captured.getvalue().strip().splitlines()
        raise ConnectionError(
            f"Apprise could not deliver to {notice.target_label}"
            + (f": {detail[-1][:500]}" if detail else "")
        )


def notice_send(*, notice_id: int) -> str:
    """Send a pending (or due failed) notice once; returns the status it is left in.

    The row is claimed (status "sending") in a short transaction, sent with no transaction
    open, then the outcome recorded: a slow mail server or Apprise target holds no lock. A
    worker that dies mid-send leaves it "sending"; the retry sweep sends it again later (at
    least once).
    """
    claimed = Notice.objects.filter(
        pk=notice_id, status__in=[NoticeStatus.PENDING, NoticeStatus.FAILED]
    ).update(status=NoticeStatus.SENDING, claimed_at=timezone.now(), attempts=F("attempts") + 1)
    notice = Notice.objects.filter(pk=notice_id).first()
    if notice is None:
        return "missing"
    if not claimed:
        return notice.status
    try:
        _deliver(notice)
    except Exception as exc:  # any failure: retry with backoff, then give up visibly
        notice.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        permanent = isinstance(exc, LookupError)
        if permanent or notice.attempts >= settings.JANITOR_NOTIFY_MAX_ATTEMPTS:
            notice.status = NoticeStatus.DEAD
            notice.next_attempt_at = None
        else:
            notice.status = NoticeStatus.FAILED
            notice.next_attempt_at = timezone.now() + _backoff(notice.attempts)
        logger.warning("notice %s to %s failed: %s", notice.pk, notice.target_label, exc)
    else:
        notice.status = NoticeStatus.SENT
        notice.sent_at = timezone.now()
        notice.next_attempt_at = None
        notice.last_error = ""
    Notice.objects.filter(pk=notice.pk, status=NoticeStatus.SENDING).update(
        status=notice.status,
        last_error=notice.last_error,
        sent_at=notice.sent_at,
        next_attempt_at=notice.next_attempt_at,
    )
    return notice.status


def notices_retry_due(*, now: datetime | None = None) -> int:
    """Queue failed notices whose backoff is over, and pending ones whose task was lost."""
    now = now or timezone.now()
    due = list(
        Notice.objects.filter(status=NoticeStatus.FAILED, next_attempt_at__lte=now).values_list(
            "pk", flat=True
        )[:500]
    )
    lost = list(
        Notice.objects.filter(
            status=NoticeStatus.PENDING, created_at__lte=now - PENDING_LOST_AFTER
        ).values_list("pk", flat=True)[:500]
    )
    # A worker died while sending: make it sendable again (it may go out twice).
    Notice.objects.filter(
        status=NoticeStatus.SENDING, claimed_at__lte=now - PENDING_LOST_AFTER
    ).update(status=NoticeStatus.FAILED, next_attempt_at=now)
    notices_enqueue(notice_ids=due + lost)
    return len(due) + len(lost)


def notice_mutes_set(*, user: User, kinds: list[str]) -> set[str]:
    """Replace a staff member's muted kinds; kinds that cannot be muted are left out."""
    wanted = {k for k in kinds if k in NoticeKind.values and k not in UNMUTABLE_KINDS}
    with transaction.atomic():
        NoticeMute.objects.filter(user=user).exclude(kind__in=wanted).delete()
        have = set(NoticeMute.objects.filter(user=user).values_list("kind", flat=True))
        NoticeMute.objects.bulk_create(
            [NoticeMute(user=user, kind=k) for k in sorted(wanted - have)]
        )
    return wanted


NOTICE_SCHEDULES = (
    # (name, task, every N minutes)
    ("notices: retry", "janitor.tasks.notices_retry_task", 1),
    ("notices: checks", "janitor.tasks.notifications_check_task", 5),
)
DIGEST_SCHEDULE = ("notices: support digest", "janitor.tasks.support_digest_task")


def notice_schedules_ensure() -> list[str]:
    """Create or correct the notices' django-q2 schedules (retries, checks, the digest)."""
    from django_q.models import Schedule

    changed = []
    for name, func, minutes in NOTICE_SCHEDULES:
        _, created = Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
            },
        )
        changed.append(f"{'created' if created else 'ensured'} {name}")
    name, func = DIGEST_SCHEDULE
    digest = Schedule.objects.filter(name=name).first()
    if digest is None:
        digest = Schedule(name=name, func=func, schedule_type=Schedule.CRON, repeats=-1)
    if (digest.func, digest.cron, digest.schedule_type) != (
        func,
        settings.JANITOR_DIGEST_CRON,
        Schedule.CRON,
    ) or digest.pk is None:
        digest.func, digest.cron = func, settings.JANITOR_DIGEST_CRON
        digest.schedule_type, digest.repeats = Schedule.CRON, -1
        digest.next_run = digest.calculate_next_run()
        digest.save()
        changed.append(f"set {name}")
    return changed
