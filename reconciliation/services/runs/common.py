"""What the reconciliation run's steps share: who acts, progress reporting, phase timing, the
task timeout and queueing after commit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.services.access_status import system_actor
from janitor.errors import ErrorKind, JanitorError
from reconciliation.models import ReconciliationRun

# The actor written on the access audit trail for changes a run applies. The stored value
# ("system:audit") is kept: rows already written carry it and filters look for it.
RECONCILIATION_ACTOR = system_actor("audit")
SCHEDULE_TRIGGER = system_actor("schedule")
# A million subscriptions take minutes, past the cluster's default task timeout. A broker that
# redelivers a task still running meets the start guard and does nothing.
RUN_TASK_TIMEOUT = 3600
PROGRESS_EVERY_SECONDS = 1.0

ProgressCallback = Callable[[dict[str, Any]], None]


class RunStateError(JanitorError):
    """The run is not in a state that allows this (e.g. applying a run that is not halted)."""

    kind = ErrorKind.CONFLICT


class Progress:
    """Writes the run's progress at most once a second: round trips follow time, not rows."""

    def __init__(self, run: ReconciliationRun, callback: ProgressCallback | None) -> None:
        self.run = run
        self.callback = callback
        self.state: dict[str, Any] = {
            "phase": "listing",
            "pages": 0,
            "subscriptions": 0,
            "accounts": 0,
        }
        self._last = 0.0

    def update(self, force: bool = False, **changes: object) -> None:
        self.state.update(changes)
        if self.callback is not None:
            self.callback(dict(self.state))
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_EVERY_SECONDS:
            return
        self._last = now
        self.state["updated_at"] = timezone.now().isoformat()
        self.run.progress = dict(self.state)
        ReconciliationRun.objects.filter(pk=self.run.pk).update(
            progress=self.run.progress,
            pages_read=self.state["pages"],
            subscriptions_read=self.state["subscriptions"],
        )


class PhaseTimer:
    """Wall seconds per phase (and CPU seconds where asked) for the run's `durations`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}  # a phase not timed yet counts as 0
        self._started = time.perf_counter()
        self._cpu_started = time.process_time()

    @contextmanager
    def phase(self, name: str, *, cpu: bool = False) -> Iterator[None]:
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self._add(name, time.perf_counter() - started)
            if cpu:
                self._add(f"{name}_cpu", time.process_time() - cpu_started)

    def _add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def summary(self) -> dict[str, float]:
        """Every phase, the total, and the run's own work: the total less waiting on the
        provider listing (wall), and this process's CPU less the listing's (steadier on a busy
        machine; the database's own time is not in it)."""
        seconds = dict(self.seconds)
        seconds["total"] = time.perf_counter() - self._started
        seconds["own_work"] = seconds["total"] - seconds.get("listing", 0.0)
        seconds["own_work_cpu"] = (
            time.process_time() - self._cpu_started - seconds.get("listing_cpu", 0.0)
        )
        return {phase: round(value, 3) for phase, value in seconds.items()}


def enqueue_after_commit(task: str, run_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(task, run_id, q_options={"timeout": RUN_TASK_TIMEOUT}))
