"""Drill: two qclusters (two hosts) on one PostgreSQL + Redis: events once, the audit once."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from _harness import (
    finish,
    group_cpu_seconds,
    load_options,
    log,
    sweep_until_done,
    wait_until,
    webhook_drill,
)


def main() -> int:
    parser = load_options(__doc__, deliveries=800, customers=150, rate=50.0, seed=31)
    drill, report, load, args = webhook_drill(
        "two qclusters with their schedulers, as two hosts", parser
    )
    # The provider's view for the audit: each subscription in its newest state.
    for i, status in load.final.items():
        drill.fake.add_subscription(
            f"sub_drill{i:05d}", customer=f"cus_drill{i:05d}", status=status
        )
    drill.app_start("host-a", "host-b")

    poster = load.stream(args.rate)
    poster.join()
    poster.redeliver(load.deliveries)

    from django.utils import timezone
    from django_q.models import Schedule
    from django_q.tasks import async_task

    from reconciliation.models import ReconciliationRun, WebhookAttempt, WebhookEvent
    from reconciliation.services.runs import (
        SCHEDULE_FUNC,
        SCHEDULE_NAME,
        reconciliation_schedule_ensure,
    )

    open_statuses = ["pending", "failed"]
    wait_until(lambda: not WebhookEvent.objects.filter(status__in=open_statuses).exists(), 60, 1)
    sweeps = sweep_until_done(timeout=60)
    injected = f"{len(load.deliveries)} deliveries, two qclusters x 2 workers on one queue"
    cpu = {name: group_cpu_seconds(proc.pid) for name, proc in drill.clusters.items()}
    attempts = WebhookAttempt.objects.count()
    report.check(
        injected,
        "both clusters alive and both doing work (CPU seconds of each process group)",
        ", ".join(
            f"{name}: alive={drill.cluster_alive(name)}, {cpu[name]:.1f} s CPU" for name in cpu
        )
        + f"; {attempts} attempts, {sweeps} sweep(s)",
        all(drill.cluster_alive(name) and cpu[name] > 1.0 for name in cpu),
    )
    load.check(report, injected)

    # The nightly audit: due now in both clusters' view.
    reconciliation_schedule_ensure()
    due = timezone.now() - timedelta(seconds=1)
    Schedule.objects.filter(name=SCHEDULE_NAME).update(next_run=due)
    log("nightly audit schedule set due; waiting for the schedulers (they look every ~30 s)")
    ran = wait_until(
        lambda: (
            ReconciliationRun.objects.exclude(status="running").exists()
            and Schedule.objects.get(name=SCHEDULE_NAME).next_run > timezone.now()
        ),
        80,
        1,
    )
    runs = list(ReconciliationRun.objects.values_list("status", "triggered_by"))
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    report.check(
        "audit schedule's next_run set to now; both schedulers see it due",
        "exactly one ReconciliationRun, finished; the schedule moved to the next night",
        f"{len(runs)} run(s) {runs}; next_run {schedule.next_run:%Y-%m-%d %H:%M} UTC",
        ran and len(runs) == 1 and runs[0][0] != "running",
    )
    # A second delivery of tonight's trigger on each host (a broker redelivery, a racing
    # scheduler): the run guard must turn both away.
    for _ in range(2):
        async_task(SCHEDULE_FUNC, q_options={"timeout": 600})
    time.sleep(8)
    runs_after = ReconciliationRun.objects.count()
    report.check(
        "tonight's audit task queued twice more on the shared queue (a redelivery, a race)",
        "still exactly one run tonight",
        f"{runs_after} run(s)",
        runs_after == 1,
    )
    return finish(report)


if __name__ == "__main__":
    sys.exit(main())
