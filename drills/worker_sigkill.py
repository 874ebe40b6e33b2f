"""Drill: SIGKILL the worker 20 times while 2,000 webhook deliveries stream in."""

from __future__ import annotations

import random
import sys
import time

from _harness import finish, load_options, log, sweep_until_done, wait_until, webhook_drill


def main() -> int:
    parser = load_options(__doc__, deliveries=2000, customers=300, rate=60.0, seed=7)
    parser.add_argument("--kills", type=int, default=20)
    drill, report, load, args = webhook_drill("qcluster killed with SIGKILL mid-stream", parser)
    drill.app_start()

    started = time.monotonic()
    poster = load.stream(args.rate)
    # Kill points spread over the stream and a little after it, at least 0.7 s apart.
    rng = random.Random(args.seed)
    span = len(load.deliveries) / args.rate + 8
    points = sorted(rng.uniform(1.0, span) for _ in range(args.kills))
    kills = 0
    for point in points:
        delay = max(point - (time.monotonic() - started), 0.7)
        time.sleep(delay)
        drill.cluster_kill("q1")  # the whole process group: sentinel, pusher, workers, monitor
        kills += 1
        drill.cluster_start("q1")
    poster.join()
    log(f"stream done in {time.monotonic() - started:.0f} s, {kills} kills; redelivering failures")
    refused = len(poster.failed())
    redelivered = poster.redeliver(load.deliveries)

    from reconciliation.models import WebhookEvent, WebhookStatus

    open_statuses = [WebhookStatus.PENDING, WebhookStatus.FAILED]
    # Let the last cluster drain what the queue still holds, then let the sweeper do the rest.
    seen: list[int] = []

    def settled() -> bool:
        seen.append(WebhookEvent.objects.filter(status__in=open_statuses).count())
        return seen[-1] == 0 or (len(seen) > 3 and seen[-1] == seen[-4])

    wait_until(settled, 30, 1)
    left_for_sweeper = WebhookEvent.objects.filter(status__in=open_statuses).count()
    sweeps = sweep_until_done(timeout=90)

    injected = f"{kills} x SIGKILL of the qcluster process group"
    report.check(
        f"{len(load.deliveries)} deliveries ({args.duplicates} duplicates, shuffled) "
        f"at {args.rate}/s",
        "every delivery answered 2xx (after Stripe-style redelivery)",
        f"{refused} non-2xx first time, {redelivered} resent, {len(poster.failed())} still refused",
        not poster.failed(),
    )
    report.check(
        injected,
        f"{args.kills} kills at random points",
        f"{kills} kills; {left_for_sweeper} events lost from the Redis queue, sent again by the "
        f"sweeper ({sweeps} sweeps)",
        kills == args.kills,
    )
    load.check(report, injected)
    return finish(report)


if __name__ == "__main__":
    sys.exit(main())
