"""Drill: stop PostgreSQL for a few seconds under webhook load; Stripe-style redelivery."""

from __future__ import annotations

import sys

from _harness import finish, load_options, outage_under_load, webhook_drill


def main() -> int:
    parser = load_options(__doc__, deliveries=800, customers=150, rate=40.0, seed=23)
    parser.add_argument("--down", type=float, default=5.0, help="seconds PostgreSQL stays down")
    drill, report, load, args = webhook_drill("PostgreSQL stopped under webhook load", parser)
    drill.app_start()

    from django.db import connections

    def stop() -> None:
        connections.close_all()
        drill.pg_stop("fast")

    after = outage_under_load(
        drill,
        load,
        args,
        server="PostgreSQL",
        how="pg_ctl -m fast",
        stop=stop,
        start=drill.pg_start,
    )
    injected = f"PostgreSQL stopped for {args.down:.0f} s under {args.rate:.0f} deliveries/s"
    statuses = ", ".join(f"{code or 'no answer'}: {n}" for code, n in sorted(after.first.items()))
    non_2xx = [code for code in after.first if not 200 <= code < 300]
    report.check(
        injected,
        "the endpoint answers 5xx while the database is down (never 2xx for an unstored event)",
        f"first answers {statuses}",
        bool(after.refused) and all(code >= 500 for code in non_2xx),
    )
    report.check(
        "every non-2xx delivery re-sent, as Stripe retries",
        "all accepted once the database is back",
        f"{after.refused} refused, {after.resent} re-sent, {after.still_refused} still refused; "
        f"qcluster {'survived' if after.survived else 'exited and was restarted'}, "
        f"{after.sweeps} sweep(s)",
        not after.still_refused,
    )
    load.check(report, injected)
    return finish(report)


if __name__ == "__main__":
    sys.exit(main())
