"""Drill: stop PostgreSQL for a few seconds under webhook load; Stripe-style redelivery."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter

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
    webhook_checks,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=800)
    parser.add_argument("--duplicates", type=int, default=80)
    parser.add_argument("--customers", type=int, default=150)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--down", type=float, default=5.0, help="seconds PostgreSQL stays down")
    args = parser.parse_args()
    report = Report("postgres_restart: PostgreSQL stopped under webhook load")
    drill = Drill("postgres_restart")
    drill.setup()
    accounts = customer_accounts_create(args.customers)
    deliveries, final = lifecycles(
        customers=args.customers,
        unique=args.deliveries - args.duplicates,
        duplicates=args.duplicates,
        seed=23,
    )
    drill.web_start()
    drill.cluster_start()

    from django.db import connections

    poster = Poster(threads=4, rate=args.rate)
    stream = threading.Thread(target=poster.post_all, args=(deliveries,))
    stream.start()
    time.sleep(args.deliveries / args.rate / 3)
    connections.close_all()
    log("stopping PostgreSQL (pg_ctl -m fast)")
    down_at = time.monotonic()
    drill.pg_stop("fast")
    time.sleep(args.down)
    drill.pg_start()
    log(f"PostgreSQL back after {time.monotonic() - down_at:.1f} s")
    stream.join()
    first = Counter(poster.statuses.values())
    refused = poster.failed()
    resent = poster.redeliver(deliveries)
    survived = drill.cluster_alive()
    if not survived:
        log("the qcluster died with PostgreSQL; restarting it (as a supervisor would)")
        drill.cluster_start()
    connections.close_all()
    sweeps = sweep_until_done(timeout=60)

    injected = f"PostgreSQL stopped for {args.down:.0f} s under {args.rate:.0f} deliveries/s"
    statuses = ", ".join(f"{code or 'no answer'}: {n}" for code, n in sorted(first.items()))
    non_2xx = [poster_status for poster_status in first if not 200 <= poster_status < 300]
    report.check(
        injected,
        "the endpoint answers 5xx while the database is down (never 2xx for an unstored event)",
        f"first answers {statuses}",
        bool(refused) and all(code >= 500 for code in non_2xx),
    )
    report.check(
        "every non-2xx delivery re-sent, as Stripe retries",
        "all accepted once the database is back",
        f"{len(refused)} refused, {resent} re-sent, {len(poster.failed())} still refused; "
        f"qcluster {'survived' if survived else 'exited and was restarted'}, {sweeps} sweep(s)",
        not poster.failed(),
    )
    webhook_checks(report, injected, {d.event_id for d in deliveries})
    account_checks(report, injected, accounts, final)
    return finish(report)


if __name__ == "__main__":
    sys.exit(main())
