"""Benchmark the account search at 1,000,000 accounts on PostgreSQL: p95 of a realistic mix.

Usage:
  .venv/bin/python bench/search.py --accounts 1000000 --queries 400

Seeds a scratch database (default janitor_bench_search) with one INSERT ... SELECT per table
(generate_series, no Python row loop; each account with one member), builds the trigram
indexes with the migrations' own functions over the seeded tables, then
sends the top bar's search through Django's test client in-process (middleware, view, selector,
template or the one-match redirect), so the time is the server's own. The mix: fragments of 3
to 10 characters cut from seeded emails at random places, and exact public, customer,
subscription, charge and dispute ids. Prints p50/p95/max per kind and overall.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIRST = ["james", "mary", "john", "patricia", "robert", "jennifer", "michael", "linda", "william",
         "elizabeth", "david", "barbara", "richard", "susan", "joseph", "jessica", "thomas",
         "sarah", "charles", "karen", "ana", "lucia", "mateo", "sofia", "wei", "yuki", "omar",
         "fatima", "ivan", "olga", "noah", "emma", "liam", "ava", "lukas", "mia", "arjun", "priya",
         "kofi", "amara"]  # fmt: skip
LAST = ["smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez",
        "martinez", "hernandez", "lopez", "gonzalez", "wilson", "anderson", "thomas", "taylor",
        "moore", "jackson", "martin", "lee", "perez", "thompson", "white", "harris", "sanchez",
        "clark", "ramirez", "lewis", "robinson", "walker", "young", "allen", "king", "wright",
        "scott", "torres", "nguyen", "hill", "flores", "muller", "schmidt", "kowalski", "tanaka",
        "okafor", "haddad", "novak", "silva", "rossi", "dubois"]  # fmt: skip
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me",
           "example.org", "acme.io", "globex.com", "initech.net", "umbrella.co",
           "hooli.xyz"]  # fmt: skip

SEED_ACCOUNTS = """
INSERT INTO accounts_account (public_id, email, name, created_at, is_active, access_status,
    grace_ends_at, stripe_customer_id, access_version)
SELECT 'user-' || substr(md5(i::text), 1, 5) || '-' || substr(md5(i::text), 6, 4) || '-'
        || substr(md5(i::text), 10, 4),
    f.first || '.' || l.last || i || '@' || d.domain,
    initcap(f.first) || ' ' || initcap(l.last),
    now() - (i %% 1000) * interval '1 day', true,
    CASE WHEN i %% 20 = 0 THEN 'grace_period' ELSE 'active' END,
    CASE WHEN i %% 20 = 0 THEN now() + (i %% 14 - 7) * interval '1 day' END,
    'cus_' || substr(md5('c' || i::text), 1, 14), 0
FROM generate_series(1, %(n)s) AS i,
    LATERAL (SELECT (%(first)s::text[])[1 + i %% cardinality(%(first)s::text[])] AS first) f,
    LATERAL (SELECT (%(last)s::text[])[1 + (i / 7) %% cardinality(%(last)s::text[])] AS last) l,
    LATERAL (SELECT (%(domains)s::text[])[1 + (i / 3) %% cardinality(%(domains)s::text[])]
        AS domain) d
"""
# Each account pays for itself: one member with the account's public id, email and name.
SEED_MEMBERS = """
INSERT INTO accounts_user (password, is_superuser, public_id, email, name, is_active, is_staff,
    date_joined, account_id, session_version)
SELECT '', false, public_id, email, name, true, false, created_at, id, 0
FROM accounts_account ORDER BY id
"""
SEED_SUBSCRIPTIONS = """
INSERT INTO reconciliation_subscription (provider, provider_id, account_id, customer_id, status,
    price_id, plan_name, amount, currency, interval, cancel_at_period_end, provider_updated_at,
    raw, customer_email, created_at, updated_at)
SELECT 'stripe', 'sub_' || substr(md5('s' || a.id::text), 1, 14), a.id, a.stripe_customer_id,
    'active', 'price_basic', 'Basic', 1500, 'usd', 'month', false, now(), '{}', '', now(), now()
FROM accounts_account a WHERE a.id % 2 = 0
"""
SEED_DISPUTES = """
INSERT INTO reconciliation_dispute (provider, provider_id, account_id, charge_id, customer_id,
    amount, currency, reason, status, due_by, submission_count, evidence_staged,
    provider_updated_at, raw, created_at, link_problem)
SELECT 'stripe', 'dp_' || substr(md5('d' || a.id::text), 1, 14), a.id,
    'ch_' || substr(md5('h' || a.id::text), 1, 14), a.stripe_customer_id, 1500, 'usd',
    'fraudulent', 'needs_response', now() + interval '5 days', 0, '{}', now(), '{}', now(), ''
FROM accounts_account a WHERE a.id % 50 = 0
"""

# The migrations that build the search's trigram indexes.
TRIGRAM_MIGRATIONS = ("0008_search_trigram", "0010_team_accounts_fields")


def _admin_sql(sql: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(sql)


def _trigram_indexes(action: str) -> None:
    """Run the search migrations' trigram index function `action` (create or drop): on
    members (accounts 0008) and on accounts (0010)."""
    from importlib import import_module

    from django.db import connection

    with connection.schema_editor() as editor:
        for name in TRIGRAM_MIGRATIONS:
            getattr(import_module(f"accounts.migrations.{name}"), action)(None, editor)


def _queries(cursor, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """The mix: 70 % email fragments (3-10 characters), 30 % exact ids of five kinds."""
    cursor.execute("SELECT max(id) FROM accounts_account")
    top = cursor.fetchone()[0]
    picks = []
    for _ in range(count):
        cursor.execute(
            "SELECT a.email, a.public_id, a.stripe_customer_id, s.provider_id, d.provider_id, "
            "d.charge_id FROM accounts_account a "
            "LEFT JOIN reconciliation_subscription s ON s.account_id = a.id "
            "LEFT JOIN reconciliation_dispute d ON d.account_id = a.id "
            "WHERE a.id >= %s ORDER BY a.id LIMIT 1",
            [rng.randint(1, top)],
        )
        email, public_id, customer, subscription, dispute, charge = cursor.fetchone()
        roll = rng.random()
        if roll < 0.70:
            size = rng.randint(3, 10)
            start = rng.randint(0, max(0, len(email) - size))
            picks.append((f"fragment {size:>2}", email[start : start + size]))
        else:
            kind, value = rng.choice(
                [
                    (kind, value)
                    for kind, value in (
                        ("public id", public_id),
                        ("customer id", customer),
                        ("subscription id", subscription),
                        ("charge id", charge),
                        ("dispute id", dispute),
                    )
                    if value
                ]
            )
            picks.append((kind, value))
    return picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--database", default="janitor_bench_search")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--reuse", action="store_true", help="keep an already seeded database")
    args = parser.parse_args()

    if not args.reuse:
        _admin_sql(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        _admin_sql(f'CREATE DATABASE "{args.database}"')
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "janitor.settings")
    os.environ.setdefault("JANITOR_LOG_LEVEL", "WARNING")
    # As in production: with DEBUG on, Django keeps (and formats) the last 9,000 queries.
    os.environ.setdefault("DJANGO_DEBUG", "false")
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(64))
    os.environ.setdefault("JANITOR_SSL_REDIRECT", "false")  # plain HTTP in-process
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from accounts.models import User
    from janitor.selectors.search import account_search

    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    if not args.reuse:
        # Seed without the search's trigram indexes, then build them over the full tables
        # with their migrations' own code, as migrating a live database would.
        call_command("migrate", verbosity=0)
        _trigram_indexes("trigram_indexes_drop")
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                SEED_ACCOUNTS,
                {"n": args.accounts, "first": FIRST, "last": LAST, "domains": DOMAINS},
            )
            cursor.execute(SEED_MEMBERS)
            cursor.execute(SEED_SUBSCRIPTIONS)  # no parameters: "%" is literal
            cursor.execute(SEED_DISPUTES)
        seeded = time.perf_counter() - started
        started = time.perf_counter()
        _trigram_indexes("trigram_indexes")
        indexed = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        print(
            f"seeded {args.accounts:,} accounts (one member each) in {seeded:.1f} s; trigram "
            f"indexes {indexed:.1f} s"
        )
    staff, _ = User.objects.get_or_create(
        email="bench.support@janitor.test", defaults={"is_staff": True}
    )
    staff.groups.add(Group.objects.get(name="Support"))
    load = os.getloadavg()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )

    rng = random.Random(args.seed)
    with connection.cursor() as cursor:
        picks = _queries(cursor, args.queries, rng)
        warm = _queries(cursor, 20, random.Random(args.seed + 1))
    client = Client()
    client.force_login(staff)
    for _kind, query in warm:  # warm the connection and the caches, as a second visit would
        client.get("/accounts/", {"q": query})
    by_kind: dict[str, list[float]] = {}
    timings = []
    selector_timings = []
    slowest = []
    for kind, query in picks:
        # The selector alone (the queries the indexes answer), then the whole request.
        begin = time.perf_counter()
        account_search(query=query)
        selector_timings.append((time.perf_counter() - begin) * 1000)
        begin = time.perf_counter()
        response = client.get("/accounts/", {"q": query})
        elapsed = (time.perf_counter() - begin) * 1000
        assert response.status_code in (200, 302), (query, response.status_code)
        timings.append(elapsed)
        by_kind.setdefault("fragment" if kind.startswith("fragment") else kind, []).append(elapsed)
        slowest.append((elapsed, kind, query, response.status_code))

    def _p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values)

    print(f"{'kind':18} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for kind, values in sorted(by_kind.items()):
        print(
            f"{kind:18} {len(values):>5} {statistics.median(values):>8.1f} "
            f"{_p95(values):>8.1f} {max(values):>8.1f}"
        )
    print(
        f"{'all':18} {len(timings):>5} {statistics.median(timings):>8.1f} "
        f"{_p95(timings):>8.1f} {max(timings):>8.1f}"
    )
    print(
        f"{'selector only':18} {len(selector_timings):>5} "
        f"{statistics.median(selector_timings):>8.1f} {_p95(selector_timings):>8.1f} "
        f"{max(selector_timings):>8.1f}"
    )
    print("slowest five:")
    for elapsed, kind, query, status in sorted(slowest, reverse=True)[:5]:
        print(f"  {elapsed:8.1f} ms  {kind:16} {query!r} -> {status}")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"p95 over the mix: {_p95(timings):.1f} ms (goal <= 100 ms)")


if __name__ == "__main__":
    main()
