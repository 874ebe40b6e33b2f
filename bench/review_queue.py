"""Benchmark the review queue page with 100,000 open flags on PostgreSQL: queries and p95.

Usage:
  .venv/bin/python bench/review_queue.py --flags 100000 --requests 60

Seeds a scratch database (default janitor_bench4_queue) in SQL (accounts with one member
each, one open flag per account), then renders the page through Django's test client
in-process (full middleware, view, selector and template), so the time is the server's own,
without a network or a browser. Prints, per scenario, the queries a request ran and
p50/p95/max of the server time.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED_ACCOUNTS = """
INSERT INTO accounts_account (public_id, email, name, created_at, is_active, access_status,
    grace_ends_at, stripe_customer_id, access_version)
SELECT 'user-q' || lpad(i::text, 8, '0'),
    'queue' || lpad(i::text, 7, '0') || '@example.test', '', now(), true,
    CASE WHEN i %% 3 = 0 THEN 'grace_period' ELSE 'active' END,
    CASE WHEN i %% 3 = 0 THEN now() + (i %% 10) * interval '1 day' END,
    'cus_queue_' || lpad(i::text, 7, '0'), 0
FROM generate_series(0, %(n)s - 1) AS i
"""

# Each account pays for itself: one member with the account's public id, email and name.
SEED_MEMBERS = """
INSERT INTO accounts_user (password, is_superuser, public_id, email, name, is_active, is_staff,
    date_joined, account_id, session_version)
SELECT '', false, public_id, email, name, true, false, created_at, id, 0
FROM accounts_account WHERE email LIKE 'queue%' ORDER BY id
"""

SEED_FLAGS = """
INSERT INTO reconciliation_flag (account_id, kind, status, reason, opened_by, opened_at,
    assignee_id, resolution, resolved_by)
SELECT a.id,
    (ARRAY['missing_subscription', 'payment_failed', 'reactivated', 'manual_grant',
           'grace_expired', 'provider_mismatch'])[a.id %% 6 + 1],
    'open', 'Seeded for the queue benchmark.', 'system:bench',
    now() - (a.id %% 60) * interval '1 day' - (a.id %% 1440) * interval '1 minute',
    CASE WHEN a.id %% 10 = 0 THEN %(staff)s END, '', ''
FROM accounts_account a WHERE a.email LIKE 'queue%%'
"""

SCENARIOS = [
    ("default (25 a page, newest first)", ""),
    ("200 a page", "?per_page=200"),
    ("kind filter", "?kind=payment_failed"),
    ("older than 30 days", "?age=30"),
    ("assigned to me", "?assignee=me"),
    ("sorted by grace days", "?sort=grace"),
    ("sorted by email, page 400", "?sort=email&page=400"),
    ("search by email (start)", "?q=queue0042"),
    ("search by customer id", "?q=cus_queue_0004242"),
    ("search by public id", "?q=user-q00004242"),
    ("htmx partial", "?kind=manual_grant"),
]


def _admin_sql(sql: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(sql)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flags", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--database", default="janitor_bench4_queue")
    args = parser.parse_args()

    _admin_sql(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    _admin_sql(f'CREATE DATABASE "{args.database}"')
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "janitor.settings")
    os.environ.setdefault("JANITOR_LOG_LEVEL", "WARNING")
    # As in production: with DEBUG on, Django keeps (and formats) the last 9,000 queries.
    os.environ.setdefault("DJANGO_DEBUG", "false")
    # Production settings refuse DEBUG=false without a real key; a throwaway one is fine here.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(64))
    os.environ.setdefault("JANITOR_SSL_REDIRECT", "false")  # plain HTTP in-process
    import django

    django.setup()
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.models import User

    call_command("migrate", verbosity=0)
    from django.conf import settings

    # Production's manifest storage needs collectstatic; the page's own work is what is timed.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    staff = User.objects.create_user("bench.support@janitor.test", "x", is_staff=True)
    staff.groups.add(Group.objects.get(name="Support"))
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(SEED_ACCOUNTS, {"n": args.flags})
        cursor.execute(SEED_MEMBERS)  # no parameters: "%" is literal
        cursor.execute(SEED_FLAGS, {"staff": staff.pk})
        # Steady state, as autovacuum leaves it: the visibility map lets the count be index-only.
        cursor.execute("VACUUM ANALYZE")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; seeded {args.flags:,} open flags in "
        f"{time.perf_counter() - started:.1f} s"
    )

    client = Client()
    client.force_login(staff)
    print(f"{'scenario':36} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'rows':>5}")
    worst_p95 = 0.0
    most_queries = 0
    for name, query in SCENARIOS:
        headers = {"HX-Request": "true", "HX-Target": "queue-results"} if "htmx" in name else {}
        url = f"/queue/{query}"
        client.get(url, headers=headers)  # warm caches, as a second visit would be
        timings = []
        for _ in range(args.requests):
            with CaptureQueriesContext(connection) as queries:
                begin = time.perf_counter()
                response = client.get(url, headers=headers)
                timings.append((time.perf_counter() - begin) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        rows = response.content.count(b'class="flag-row"')
        p95 = statistics.quantiles(timings, n=20)[18]
        worst_p95 = max(worst_p95, p95)
        most_queries = max(most_queries, len(queries))
        print(
            f"{name:36} {len(queries):>7} {statistics.median(timings):>8.1f} {p95:>8.1f} "
            f"{max(timings):>8.1f} {rows:>5}"
        )
    print(f"most queries in one request: {most_queries} (goal <= 12)")
    print(f"worst p95: {worst_p95:.1f} ms (goal <= 100 ms)")


if __name__ == "__main__":
    main()
