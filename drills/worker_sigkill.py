"""Drill: SIGKILL the worker 20 times while 2,000 webhook deliveries stream in."""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time

from _harness import (
    Drill,
    Poster,
    Report,
    account_checks,
    customer_accounts_create,
    finish,
    lifecycles,
    log,
    sweep_until_done,
    wait_until,
    webhook_checks,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--duplicates", type=int, default=200)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--rate", type=float, default=60.0, help="deliveries per second")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    report = Report("worker_sigkill: qcluster killed with SIGKILL mid-stream")
    drill = Drill("worker_sigkill")
    drill.setup()

    accounts = customer_accounts_create(args.customers)
    unique = args.deliveries - args.duplicates
    deliveries, final = lifecycles(
        customers=args.customers, unique=unique, duplicates=args.duplicates, seed=args.seed
    )
    unique_ids = {d.event_id for d in deliveries}
    drill.web_start()
    drill.cluster_start()

    poster = Poster(threads=4, rate=args.rate)
    stream = threading.Thread(target=poster.post_all, args=(deliveries,))
    started = time.monotonic()
    stream.start()
    # Kill points spread over the stream and a little after it, at least 0.7 s apart.
    rng = random.Random(args.seed)
    span = len(deliveries) / args.rate + 8
    points = sorted(rng.uniform(1.0, span) for _ in range(args.kills))
    kills = 0
    for point in points:
        delay = max(point - (time.monotonic() - started), 0.7)
        time.sleep(delay)
        drill.cluster_kill("q1")  # the whole process group: sentinel, pusher, workers, monitor
        kills += 1
        drill.cluster_start("q1")
    stream.join()
    log(f"stream done in {time.monotonic() - started:.0f} s, {kills} kills; redelivering failures")
    refused = len(poster.failed())
    redelivered = poster.redeliver(deliveries)

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
        f"{len(deliveries)} deliveries ({args.duplicates} duplicates, shuffled) at {args.rate}/s",
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
    webhook_checks(report, injected, unique_ids)
    account_checks(report, injected, accounts, final)
    return finish(report)


if __name__ == "__main__":
    sys.exit(main())
