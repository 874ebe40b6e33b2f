"""Benchmark the nightly audit on PostgreSQL against the Stripe fake over HTTP (separate process).

Usage:
  .venv/bin/python bench/reconciliation.py --sizes 100000 1000000

Each size runs in a fresh interpreter against a freshly created scratch database (default
janitor_bench4), so peak RSS is that size's own. The fake Stripe serves
StripeFake.add_subscriptions_bulk from another process, so its memory is not counted.
The database is seeded in SQL as it stands after earlier nights: accounts linked to their
customers, the mirror up to date, past_due/canceled customers already in grace. 0.2 % of
accounts drifted (active in the app, canceled or past_due at the provider), so the run applies
real changes while staying under the 5 % brake. What is measured is one nightly run.

Team accounts (issue 20): --members 1 10 runs each size twice, with one member per account and
with ten (100,000 accounts with 1,000,000 members), and prints the ratio of their own work:

  .venv/bin/python bench/reconciliation.py --sizes 100000 --members 1 10

At Stripe's scale (issue 13): --stripe-like gives the fake Stripe's latency and limits
(--latency 0.3 s a request, --endpoint-rps 25, --max-concurrent 16), --first-night seeds the
accounts with no customer id and an empty mirror (every account is linked by email from the
listing), --sequential reads the listing one page after another (the baseline), and each run
reports its wall time, the whole process's CPU (reader threads included) and peak RSS, and the
listing floor (pages / JANITOR_STRIPE_MAX_RPS) with the run's ratio to it:

  .venv/bin/python bench/reconciliation.py --sizes 1000000 --stripe-like --first-night
  .venv/bin/python bench/reconciliation.py --sizes 100000 --stripe-like --sequential
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STATUS_CYCLE = ("active", "active", "trialing", "past_due", "canceled")


def _serve_fake(n: int, current_period_end: int, created_start: int, throttle, conn) -> None:
    """Child process: a StripeFake holding n bulk subscriptions until told to stop; with
    `throttle`, Stripe's latency and limits (StripeFake.throttle). Sends back its base URL,
    then, when stopped, its own CPU seconds and the requests it refused."""
    import time as _time

    from sandbox.stripe_fake import StripeFake

    fake = StripeFake()
    fake.record_requests = False  # 10,000 recorded requests would only grow this process
    fake.start()
    if throttle:
        fake.throttle(**throttle)
    fake.add_subscriptions_bulk(
        n,
        status_cycle=STATUS_CYCLE,
        current_period_end=current_period_end,
        created_start=created_start,
    )
    conn.send(fake.base_url)
    conn.recv()
    conn.send(
        {
            "cpu_seconds": _time.process_time(),
            "rate_limited": fake.rate_limited,
            "refused_twice": fake.refused_twice,
        }
    )
    fake.stop()


def _admin_sql(sql: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(sql)


SEED_ACCOUNTS = """
INSERT INTO accounts_account (public_id, email, name, created_at, is_active, access_status,
    grace_ends_at, stripe_customer_id, access_version)
SELECT 'user-b' || lpad(i::text, 8, '0'),
    'cus_bench_' || lpad(i::text, 7, '0') || '@example.test', '', now(), true,
    CASE WHEN i %% 5 IN (3, 4) AND i %% 1000 NOT IN (3, 4) THEN 'grace_period' ELSE 'active' END,
    CASE WHEN i %% 5 IN (3, 4) AND i %% 1000 NOT IN (3, 4) THEN now() + interval '5 days' END,
    'cus_bench_' || lpad(i::text, 7, '0'), 0
FROM generate_series(0, %(n)s - 1) AS i
"""

# Members: the first has the account's public id and email (someone who pays for themselves),
# the others their own.
SEED_MEMBERS = """
INSERT INTO accounts_user (password, is_superuser, public_id, email, name, is_active, is_staff,
    date_joined, account_id, session_version)
SELECT '', false, CASE WHEN k = 0 THEN a.public_id ELSE a.public_id || '-m' || k END,
    CASE WHEN k = 0 THEN a.email ELSE 'm' || k || '.' || a.email END, '', true, false, now(),
    a.id, 0
FROM accounts_account a, generate_series(0, %(members)s - 1) AS k
"""

SEED_MIRROR = """
INSERT INTO reconciliation_subscription (provider, provider_id, account_id, customer_id, status,
    price_id, plan_name, amount, currency, interval, current_period_end, cancel_at_period_end,
    provider_updated_at, raw, created_at, updated_at, customer_email)
SELECT 'stripe', 'sub_bench_' || lpad(i::text, 7, '0'), u.id, u.stripe_customer_id,
    (ARRAY['active', 'active', 'trialing', 'past_due', 'canceled'])[i %% 5 + 1],
    %(price_id)s, %(plan_name)s, %(amount)s, %(currency)s, %(interval)s, %(cpe)s, false,
    now() - interval '1 day', jsonb_build_object('created', %(created_start)s + i), now(), now(), ''
FROM generate_series(0, %(n)s - 1) AS i
JOIN accounts_account u ON u.stripe_customer_id = 'cus_bench_' || lpad(i::text, 7, '0')
"""


def run_one(
    n: int,
    database: str,
    *,
    cold: bool = False,
    members: int = 1,
    first_night: bool = False,
    throttle: dict | None = None,
    sequential: bool = False,
) -> dict:
    """Create and seed the scratch database, start the fake, run one audit, return figures."""
    _admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    _admin_sql(f'CREATE DATABASE "{database}"')
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "janitor.settings")
    os.environ.setdefault("JANITOR_LOG_LEVEL", "WARNING")
    # As in production: with DEBUG on, Django keeps (and formats) the last 9,000 queries.
    os.environ.setdefault("DJANGO_DEBUG", "false")
    # Production settings refuse DEBUG=false without a real key; a throwaway one is fine here.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(64))
    os.environ.setdefault("JANITOR_SSL_REDIRECT", "false")  # plain HTTP in-process
    # The grace-period emails go to memory: the console backend would time the terminal.
    os.environ.setdefault("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from reconciliation import gateway
    from reconciliation.services.runs import reconciliation_run
    from reconciliation.services.subscriptions import subscription_fields

    call_command("migrate", verbosity=0)

    now = int(time.time())
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    fake = ctx.Process(
        target=_serve_fake, args=(n, now + 20 * 86400, now - n, throttle, child), daemon=True
    )
    fake.start()
    base_url = parent.recv()
    settings.STRIPE_API_BASE = base_url
    settings.STRIPE_API_KEY = "sk_test_bench"
    settings.STRIPE_MAX_NETWORK_RETRIES = 2

    seed_started = time.perf_counter()
    sample = subscription_fields(next(iter(gateway.subscription_pages(limit=1)))[0])
    with connection.cursor() as cursor:
        cursor.execute(SEED_ACCOUNTS, {"n": n})
        if first_night:  # no account knows its customer yet: the listing links them by email
            cursor.execute("UPDATE accounts_account SET stripe_customer_id = ''")
        cursor.execute(SEED_MEMBERS, {"members": members})
        if not (cold or first_night):
            cursor.execute(
                SEED_MIRROR,
                {
                    "n": n,
                    "price_id": sample["price_id"],
                    "plan_name": sample["plan_name"],
                    "amount": sample["amount"],
                    "currency": sample["currency"],
                    "interval": sample["interval"],
                    "cpe": sample["current_period_end"],
                    "created_start": now - n,  # as the fake's, so the mirror knows when
                },
            )
        cursor.execute("ANALYZE")
    seed_seconds = time.perf_counter() - seed_started
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    round_trips = {"total": 0, "apply": 0}
    phase = {"name": "listing"}

    def count(execute, sql, params, many, context):
        round_trips["total"] += 1
        if phase["name"] == "applying":
            round_trips["apply"] += 1
        return execute(sql, params, many, context)

    # When each phase began and each 1,000th page arrived (seconds from the run's start): where
    # a run's time goes beyond the listing floor (its start, its pace, its tail).
    timeline: list[tuple[float, str, int]] = []

    def on_progress(state: dict) -> None:
        phase["name"] = state.get("phase", "")
        pages = int(state.get("pages") or 0)
        if not timeline or timeline[-1][1] != phase["name"] or pages >= timeline[-1][2] + 1000:
            timeline.append((round(time.perf_counter() - wall_started, 1), phase["name"], pages))

    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    if sequential:  # the baseline: one page after another, however long the listing
        import functools

        from reconciliation.listing import SubscriptionListing
        from reconciliation.services.runs import execute

        execute.SubscriptionListing = functools.partial(  # type: ignore[misc]
            SubscriptionListing, sequential_pages=10**9
        )
    with connection.execute_wrapper(count):
        wall_started = time.perf_counter()
        cpu_started = time.process_time()
        run = reconciliation_run(dry_run=False, triggered_by="bench", on_progress=on_progress)
        wall = time.perf_counter() - wall_started
        cpu = time.process_time() - cpu_started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_PROFILE"])
    parent.send("stop")
    fake_stats = parent.recv()
    fake.join(timeout=10)
    max_rps = float(settings.JANITOR_STRIPE_MAX_RPS)
    floor = run.pages_read / max_rps
    changes = {k: v for k, v in run.counts.items() if v and k != "in_sync"}
    return {
        "size": n,
        "members_per_account": members,
        "cold_mirror": cold or first_night,
        "first_night": first_night,
        "throttle": throttle,
        "listing": (run.counts or {}).get("listing"),
        "linked_customers": (run.counts or {}).get("linked_customers"),
        "not_checked": (run.counts or {}).get("not_checked"),
        "process_cpu_seconds": round(cpu, 2),
        "max_rps": max_rps,
        "listing_floor_seconds": round(floor, 1),
        "wall_over_floor": round(wall / floor, 3) if floor else None,
        "fake_cpu_seconds": round(fake_stats["cpu_seconds"], 1),
        "fake_cpu_ms_per_page": round(1000 * fake_stats["cpu_seconds"] / max(run.pages_read, 1), 2),
        "fake_rate_limited": fake_stats["rate_limited"],
        "fake_refused_twice_in_a_row": fake_stats["refused_twice"],
        "status": run.status,
        "halt_reason": run.halt_reason,
        "errors": run.errors[:500],
        "wall_seconds": round(wall, 2),
        "durations": run.durations,
        "own_work_seconds": run.durations.get("own_work"),
        "own_work_cpu_seconds": run.durations.get("own_work_cpu"),
        "load_average": os.getloadavg(),
        "listing_seconds": run.durations.get("listing"),
        "pages": run.pages_read,
        "subscriptions": run.subscriptions_read,
        "outcomes_not_in_sync": changes,
        "round_trips": round_trips["total"],
        "round_trips_apply": round_trips["apply"],
        "round_trips_excluding_apply": round_trips["total"] - round_trips["apply"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_run_mb": round(rss_before / 1024, 1),
        "seed_seconds": round(seed_seconds, 1),
        "timeline_seconds_phase_pages": timeline,
    }


def _stripe_like_summary(results: list[dict]) -> None:
    """One line per run against the goals: wall over the listing floor, the speed-up over the
    sequential baseline scaled to the run's size, RSS, and refusals."""
    baseline = next((r for r in results if r["sequential"]), None)
    for r in results:
        night = "first night" if r["first_night"] else "settled night"
        line = (
            f"{r['size']:,} {night}{' (sequential)' if r['sequential'] else ''}: "
            f"{r['wall_seconds']:.1f} s = {r['wall_over_floor']:.3f}x the floor "
            f"({r['listing_floor_seconds']:.0f} s: {r['pages']} pages / {r['max_rps']:g} per s)"
            f", process CPU {r['process_cpu_seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, "
            f"refused {r['fake_rate_limited']} ({r['fake_refused_twice_in_a_row']} twice in a row; "
            f"fake's CPU {r['fake_cpu_ms_per_page']} ms a page), "
            f"status {r['status']}, linked {r['linked_customers']}"
        )
        if baseline is not None and not r["sequential"] and r["first_night"]:
            scaled = baseline["wall_seconds"] * r["size"] / baseline["size"]
            line += (
                f"; x{scaled / r['wall_seconds']:.2f} faster than the sequential "
                f"{baseline['size']:,} scaled ({scaled:.0f} s)"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--database", default="janitor_bench4")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--members", type=int, nargs="+", default=[1], help="members per account, each a run"
    )
    parser.add_argument(
        "--cold", action="store_true", help="start with an empty mirror (the first night)"
    )
    parser.add_argument(
        "--first-night",
        action="store_true",
        help="empty mirror and no account linked to its customer (linked by email)",
    )
    parser.add_argument("--stripe-like", action="store_true", help="the fake's latency and limits")
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--endpoint-rps", type=float, default=25)
    parser.add_argument("--max-concurrent", type=int, default=16)
    parser.add_argument("--sequential", action="store_true", help="list one page at a time")
    parser.add_argument(
        "--nights",
        nargs="+",
        choices=["first", "settled"],
        help="with --stripe-like: run each size as a first night and/or a settled night",
    )
    parser.add_argument(
        "--baseline-sequential",
        type=int,
        metavar="N",
        help="first run a sequential first night of N subscriptions, and give each parallel "
        "first night's speed-up over it, scaled to the run's size",
    )
    args = parser.parse_args()
    throttle = (
        {
            "latency": args.latency,
            "endpoint_rps": args.endpoint_rps,
            "max_concurrent": args.max_concurrent,
        }
        if args.stripe_like
        else None
    )
    if args.one:
        result = run_one(
            args.one,
            args.database,
            cold=args.cold,
            members=args.members[0],
            first_night=args.first_night,
            throttle=throttle,
            sequential=args.sequential,
        )
        print(json.dumps(result))
        return
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    results = []
    nights = args.nights or (["first"] if args.first_night else ["settled"])
    plan = [(size, night, args.sequential) for size in args.sizes for night in nights]
    if args.baseline_sequential:
        plan.insert(0, (args.baseline_sequential, "first", True))
    for size, night, sequential in plan:
        for members in args.members:
            # A fresh interpreter per run: peak RSS is that run's alone.
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(size), "--database", args.database]
                + ["--members", str(members)]
                + (["--cold"] if args.cold else [])
                + (["--first-night"] if night == "first" else [])
                + (["--sequential"] if sequential else [])
                + (
                    [
                        "--stripe-like",
                        "--latency",
                        str(args.latency),
                        "--endpoint-rps",
                        str(args.endpoint_rps),
                        "--max-concurrent",
                        str(args.max_concurrent),
                    ]
                    if args.stripe_like
                    else []
                ),
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if out.returncode != 0:
                sys.exit(f"size {size} x {members} failed:\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["sequential"] = sequential
            results.append(result)
            print(json.dumps(result, indent=2), flush=True)
    if args.stripe_like:
        _stripe_like_summary(results)
        return
    if len(args.members) >= 2:
        for size in args.sizes:
            runs = [r for r in results if r["size"] == size]
            single, team = runs[0], runs[-1]
            print(
                f"{size:,} accounts: {team['members_per_account']} members each vs "
                f"{single['members_per_account']}: own work "
                f"x{team['own_work_seconds'] / single['own_work_seconds']:.2f} "
                f"({team['own_work_seconds']:.1f} s vs {single['own_work_seconds']:.1f} s), CPU "
                f"x{team['own_work_cpu_seconds'] / single['own_work_cpu_seconds']:.2f}, total "
                f"x{team['durations']['total'] / single['durations']['total']:.2f}"
            )
    elif len(results) >= 2:
        small, large = results[0], results[-1]
        factor = large["size"] / small["size"]
        own = large["own_work_seconds"] / small["own_work_seconds"]
        own_cpu = large["own_work_cpu_seconds"] / small["own_work_cpu_seconds"]
        total = large["durations"]["total"] / small["durations"]["total"]
        trips = large["round_trips"] / small["round_trips"]
        print(
            f"{factor:.0f}x data: own work x{own:.2f} (CPU x{own_cpu:.2f}), total x{total:.2f}, "
            f"round trips x{trips:.2f}"
        )


if __name__ == "__main__":
    main()
