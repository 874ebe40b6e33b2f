"""Benchmark chargeback evidence on PostgreSQL: summary latency, PDF time, ingest throughput.

Uses its own scratch database (default janitor_bench6): created, migrated and filled with
--rows activity rows over --accounts accounts by INSERT ... SELECT generate_series.

    .venv/bin/python bench/evidence.py                      # load (if needed) + all three
    .venv/bin/python bench/evidence.py --skip-load --only ingest --ingest-mode client

Team accounts (issue 20): evidence for one account of 500 members with ~33 activity rows each
over 30 days, beside the loaded data:

    .venv/bin/python bench/evidence.py --skip-load --only team --team-members 500 \
        --team-rows 33 --team-samples 100
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/janitor_bench6"
    )
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--spread-days", type=int, default=90, help="activity spans this many days")
    parser.add_argument("--samples", type=int, default=2000, help="summary calls to time")
    parser.add_argument("--pdf-runs", type=int, default=5)
    parser.add_argument("--pdf-rows", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=100, help="ingest batches of 1,000 to send")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--ingest-mode", choices=["gunicorn", "client"], default="gunicorn")
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded data")
    parser.add_argument("--only", choices=["summary", "pdf", "ingest", "team"], action="append")
    parser.add_argument("--team-members", type=int, default=500)
    parser.add_argument("--team-rows", type=int, default=33, help="activity rows per member")
    parser.add_argument("--team-samples", type=int, default=100)
    return parser.parse_args()


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_DEBUG", "false")  # DEBUG keeps every query in memory
    # Production settings refuse DEBUG=false without a real key; a throwaway one is fine here.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(64))
    os.environ.setdefault("JANITOR_SSL_REDIRECT", "false")  # plain HTTP on 127.0.0.1
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "janitor.settings"
    import django

    django.setup()


def ensure_database(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def timed(label: str):
    class _Timer:
        def __enter__(self):
            self.start = time.perf_counter()
            print(f"… {label}", flush=True)
            return self

        def __exit__(self, *exc):
            self.seconds = time.perf_counter() - self.start
            print(f"  {label}: {self.seconds:.1f} s", flush=True)

    return _Timer()


def load(args) -> dict:
    """Fill the scratch database: accounts, then activity, then the index, then ANALYZE."""
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    timings = {}
    with connection.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '1GB'")
        with timed("truncate") as t:
            cur.execute(
                "TRUNCATE accounts_activitylog, accounts_user, accounts_account "
                "RESTART IDENTITY CASCADE"
            )
        with timed(f"insert {args.accounts:,} accounts, one member each") as t:
            cur.execute(
                """
                INSERT INTO accounts_account (public_id, email, name, created_at, is_active,
                    access_status, stripe_customer_id, access_version)
                SELECT 'user-bench-' || lpad(g::text, 7, '0'), 'bench' || g || '@example.com',
                       'Bench ' || g, now() - interval '400 days', true, 'active',
                       'cus_bench_' || lpad(g::text, 7, '0'), 0
                FROM generate_series(1, %s) AS g
                """,
                [args.accounts],
            )
            cur.execute(
                """
                INSERT INTO accounts_user (password, is_superuser, public_id, email, name,
                    is_active, is_staff, date_joined, account_id, session_version)
                SELECT '!', false, public_id, email, name, true, false, created_at, id, 0
                FROM accounts_account ORDER BY id
                """
            )
        timings["accounts_s"] = t.seconds
        # Bulk load without the secondary index, then build it once: far faster than
        # maintaining a B-tree across 10M random inserts.
        cur.execute("DROP INDEX IF EXISTS activity_account_time_idx")
        cur.execute("SELECT min(id), max(id) FROM accounts_user")
        low, high = cur.fetchone()
        with timed(f"insert {args.rows:,} activity rows") as t:
            cur.execute(
                """
                INSERT INTO accounts_activitylog (account_id, occurred_at, kind, path, ip_address,
                    user_agent, source)
                SELECT %(low)s + (g %% %(n)s),
                       now() - random() * make_interval(days => %(days)s),
                       CASE WHEN g %% 20 = 0 THEN 'login' WHEN g %% 5 = 0 THEN 'api'
                            ELSE 'request' END,
                       '/app/page/' || (g %% 50),
                       ('10.' || (g %% 7) || '.' || ((g / 7) %% 3) || '.' || (g %% 251))::inet,
                       'Mozilla/5.0 (bench)', 'app'
                FROM generate_series(1, %(rows)s) AS g
                """,
                {"low": low, "n": high - low + 1, "days": args.spread_days, "rows": args.rows},
            )
        timings["activity_s"] = t.seconds
        with timed("create index (account, occurred_at)") as t:
            cur.execute(
                "CREATE INDEX activity_account_time_idx "
                "ON accounts_activitylog (account_id, occurred_at) INCLUDE (kind, ip_address)"
            )
        timings["index_s"] = t.seconds
        with timed("vacuum analyze") as t:
            cur.execute("VACUUM ANALYZE accounts_activitylog")
            cur.execute("ANALYZE accounts_user")
            cur.execute("ANALYZE accounts_account")
        timings["vacuum_s"] = t.seconds
    return timings


def pdf_account(rows: int):
    """A separate account with exactly `rows` activity rows in the last 30 days."""
    from django.db import connection

    from accounts.models import Account, User

    account, _ = Account.objects.get_or_create(
        email="pdf-bench@example.com", defaults={"public_id": "user-bench-pdf", "name": "PDF Bench"}
    )
    member, _ = User.objects.get_or_create(
        email="pdf-bench@example.com", defaults={"public_id": "user-bench-pdf", "account": account}
    )
    with connection.cursor() as cur:
        cur.execute("DELETE FROM accounts_activitylog WHERE account_id = %s", [member.pk])
        cur.execute(
            """
            INSERT INTO accounts_activitylog (account_id, occurred_at, kind, path, ip_address,
                user_agent, source)
            SELECT %s, now() - (g * interval '43 minutes'),
                   CASE WHEN g %% 25 = 0 THEN 'login' ELSE 'request' END,
                   '/app/page/' || (g %% 40), ('192.0.2.' || (g %% 37))::inet,
                   'Mozilla/5.0 (X11; Linux x86_64) bench', 'app'
            FROM generate_series(1, %s) AS g
            """,
            [member.pk, rows],
        )
    return account


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench_summary(args) -> dict:
    import random

    from accounts.models import Account
    from reconciliation.selectors.evidence import evidence_for_account, evidence_summary

    ids = list(Account.objects.values_list("public_id", flat=True)[:200_000])
    rng = random.Random(6)
    picks = [rng.choice(ids) for _ in range(args.samples)]
    accounts = {p.public_id: p for p in Account.objects.filter(public_id__in=set(picks))}
    summary_ms, lookup_ms, full_ms = [], [], []
    counts = []
    for public_id in picks:
        start = time.perf_counter()
        account = Account.objects.get(public_id=public_id)
        middle = time.perf_counter()
        summary = evidence_summary(account=account, days=30)
        end = time.perf_counter()
        lookup_ms.append((end - start) * 1000)
        summary_ms.append((end - middle) * 1000)
        counts.append(summary.activity_count)
    for public_id in picks[: max(args.samples // 4, 1)]:
        start = time.perf_counter()
        evidence_for_account(account=accounts[public_id], days=30)
        full_ms.append((time.perf_counter() - start) * 1000)
    plan = explain_summary(accounts[picks[0]])
    return {
        "samples": len(picks),
        "rows_in_window_avg": statistics.mean(counts),
        "summary_p50_ms": pct(summary_ms, 0.50),
        "summary_p95_ms": pct(summary_ms, 0.95),
        "summary_p99_ms": pct(summary_ms, 0.99),
        "summary_max_ms": max(summary_ms),
        "lookup_plus_summary_p95_ms": pct(lookup_ms, 0.95),
        "full_evidence_p50_ms": pct(full_ms, 0.50),
        "full_evidence_p95_ms": pct(full_ms, 0.95),
        "plan": plan,
    }


def explain_summary(account) -> str:
    """EXPLAIN ANALYZE of the summary's SELECT (grouped by account: the same scan)."""
    from datetime import timedelta

    from django.db.models import Count, Max, Min, Q
    from django.db.models.functions import TruncDate
    from django.utils import timezone

    from accounts.models import ActivityLog

    now = timezone.now()
    return (
        ActivityLog.objects.filter(
            member__account=account,
            occurred_at__gte=now - timedelta(days=30),
            occurred_at__lte=now,
        )
        .order_by()
        .values("member_id")
        .annotate(
            activity_count=Count("id"),
            active_days=Count(TruncDate("occurred_at"), distinct=True),
            distinct_ips=Count("ip_address", distinct=True),
            logins=Count("id", filter=Q(kind="login")),
            first_seen=Min("occurred_at"),
            last_seen=Max("occurred_at"),
        )
        .explain(analyze=True, buffers=True)
    )


def team_account(members: int, rows_per_member: int):
    """One account of `members` members, each with `rows_per_member` activity rows spread
    over the last 30 days (about one a day), replaced on every run."""
    from django.db import connection

    from accounts.models import Account, User

    account, _ = Account.objects.get_or_create(
        public_id="acct-bench-team",
        defaults={"email": "team-bench@example.com", "name": "Team Bench"},
    )
    with connection.cursor() as cur:
        cur.execute(
            "DELETE FROM accounts_activitylog WHERE account_id IN "
            "(SELECT id FROM accounts_user WHERE account_id = %s)",
            [account.pk],
        )
        cur.execute("DELETE FROM accounts_user WHERE account_id = %s", [account.pk])
    User.objects.bulk_create(
        [
            User(
                public_id=f"acct-bench-team-m{k:04d}",
                email=f"m{k}@team-bench.example",
                account=account,
                password="!",
            )
            for k in range(members)
        ]
    )
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO accounts_activitylog (account_id, occurred_at, kind, path, ip_address,
                user_agent, source)
            SELECT u.id, now() - (g * interval '21 hours') - (u.id %% 600) * interval '1 minute',
                   CASE WHEN g %% 8 = 0 THEN 'login' ELSE 'request' END,
                   '/app/page/' || (g %% 40), ('198.51.' || (u.id %% 200) || '.' || (g %% 3))::inet,
                   'Mozilla/5.0 (bench)', 'app'
            FROM accounts_user u, generate_series(1, %s) AS g
            WHERE u.account_id = %s
            """,
            [rows_per_member, account.pk],
        )
        # Rows older than a day are all-visible in a live table (autovacuum): index-only scans.
        cur.execute("VACUUM ANALYZE accounts_activitylog")
        cur.execute("ANALYZE accounts_user")
    return account


def bench_team(args) -> dict:
    """evidence_for_account for one big team account: every figure, every member."""
    from reconciliation.selectors.evidence import evidence_for_account

    account = team_account(args.team_members, args.team_rows)
    timings, rows = [], 0
    for _ in range(args.team_samples):
        start = time.perf_counter()
        evidence = evidence_for_account(account=account, days=30)
        timings.append((time.perf_counter() - start) * 1000)
        rows = evidence.summary.activity_count
    return {
        "members": len(evidence.members),
        "active_members": evidence.summary.active_members,
        "rows_in_window": rows,
        "samples": len(timings),
        "p50_ms": pct(timings, 0.50),
        "p95_ms": pct(timings, 0.95),
        "max_ms": max(timings),
    }


def bench_pdf(args) -> dict:
    from reconciliation.selectors.evidence import evidence_for_account, evidence_summary
    from reconciliation.services.evidence import evidence_pdf_render

    account = pdf_account(args.pdf_rows)
    heavy_ms = []
    for _ in range(50):
        start = time.perf_counter()
        evidence_summary(account=account, days=30)
        heavy_ms.append((time.perf_counter() - start) * 1000)
    runs, sizes, selects = [], [], []
    for _ in range(args.pdf_runs):
        start = time.perf_counter()
        evidence = evidence_for_account(account=account, days=30)
        picked = time.perf_counter()
        pdf = evidence_pdf_render(evidence=evidence, actor=None)
        runs.append(time.perf_counter() - start)
        selects.append(picked - start)
        sizes.append(len(pdf))
    return {
        "rows": evidence.summary.activity_count,
        "summary_of_this_account_p95_ms": pct(heavy_ms, 0.95),
        "first_run_s": runs[0],
        "median_s": statistics.median(runs),
        "max_s": max(runs),
        "select_median_ms": statistics.median(selects) * 1000,
        "pdf_bytes": sizes[-1],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bodies(args, public_ids: list[str]) -> list[bytes]:
    run = uuid.uuid4().hex[:8]
    now = time.time()
    bodies = []
    for b in range(args.batches):
        events = []
        for i in range(1000):
            n = b * 1000 + i
            events.append(
                {
                    "id": f"{run}-{n}",
                    "account": public_ids[n % len(public_ids)],
                    "occurred_at": time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - (n % 86400))
                    ),
                    "kind": "api",
                    "path": f"/v2/items/{n % 100}",
                    "ip": f"198.51.100.{n % 250}",
                    "user_agent": "bench-sdk/1.0",
                }
            )
        bodies.append(json.dumps({"events": events}).encode())
    return bodies


def bench_ingest(args) -> dict:
    from accounts.models import ActivityLog, User
    from accounts.services.tokens import api_token_create

    token, raw = api_token_create(name=f"bench {uuid.uuid4().hex[:6]}", created_by=None)
    public_ids = list(
        User.objects.filter(is_staff=False).order_by("?").values_list("public_id", flat=True)[:5000]
    )
    bodies = _bodies(args, public_ids)
    try:
        if args.ingest_mode == "client":
            return _ingest_client(bodies, raw)
        return _ingest_gunicorn(args, bodies, raw)
    finally:
        # Keep the data set at its stated size for the next run.
        ActivityLog.objects.filter(source=str(token.pk)).delete()


def _ingest_client(bodies: list[bytes], raw: str) -> dict:
    from django.test import Client

    client = Client()
    latencies = []
    start = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        response = client.post(
            "/api/v1/activity",
            data=body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {raw}"},
        )
        latencies.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.content[:300]
    elapsed = time.perf_counter() - start
    return _ingest_result("Django test client, 1 thread", len(bodies), elapsed, latencies)


def _ingest_gunicorn(args, bodies: list[bytes], raw: str) -> dict:
    port = _free_port()
    env = dict(os.environ)
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "janitor.wsgi:application",
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(args.workers),
            "--worker-class", "sync",
            "--log-level", "warning",
        ],
        cwd=ROOT,
        env=env,
        # The access log is part of the cost, but not of this script's output.
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        # Warm every worker (imports, connections) before timing.
        for body in bodies[: args.workers * 2]:
            _post(port, body, raw)
        timed_bodies = bodies[args.workers * 2 :]
        latencies: list[float] = []
        lock = threading.Lock()
        queue = list(timed_bodies)

        def worker():
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                t0 = time.perf_counter()
                status = _post(port, body, raw)
                elapsed = time.perf_counter() - t0
                if status != 200:
                    raise RuntimeError(f"ingest answered {status}")
                with lock:
                    latencies.append(elapsed)

        threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        label = (
            f"gunicorn {args.workers} sync workers on 127.0.0.1, "
            f"{args.concurrency} client threads on the same machine"
        )
        return _ingest_result(label, len(timed_bodies), elapsed, latencies)
    finally:
        server.terminate()
        server.wait(timeout=10)


def _post(port: int, body: bytes, raw: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "POST",
        "/api/v1/activity",
        body=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {raw}"},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


def _ingest_result(label: str, batches: int, elapsed: float, latencies: list[float]) -> dict:
    return {
        "mode": label,
        "batches": batches,
        "events": batches * 1000,
        "seconds": elapsed,
        "events_per_s": batches * 1000 / elapsed,
        "batch_p50_ms": pct(latencies, 0.5) * 1000,
        "batch_p95_ms": pct(latencies, 0.95) * 1000,
    }


def main() -> None:
    args = parse_args()
    ensure_database(args.database_url)
    setup_django(args.database_url)
    from django.db import connection

    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    with connection.cursor() as cur:
        cur.execute("SELECT version()")
        print(f"database: {cur.fetchone()[0].split(' on ')[0]}")
    only = set(args.only or ["summary", "pdf", "ingest"])
    if not args.skip_load:
        start = time.perf_counter()
        timings = load(args)
        print(
            f"load: {json.dumps({k: round(v, 1) for k, v in timings.items()})}, "
            f"total {time.perf_counter() - start:.1f} s"
        )
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM accounts_activitylog")
        rows = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM accounts_account")
        accounts = cur.fetchone()[0]
    print(f"data: {rows:,} activity rows over {accounts:,} accounts")
    # Other work on the machine skews every figure: say how busy it was.
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if "summary" in only:
        result = bench_summary(args)
        plan = result.pop("plan")
        print("summary:", json.dumps({k: round(v, 3) for k, v in result.items()}))
        print("summary plan:\n" + plan)
    if "pdf" in only:
        result = bench_pdf(args)
        print("pdf:", json.dumps({k: round(v, 3) for k, v in result.items()}))
    if "team" in only:
        result = bench_team(args)
        print("team:", json.dumps({k: round(v, 3) for k, v in result.items()}))
    if "ingest" in only:
        result = bench_ingest(args)
        mode = result.pop("mode")
        print(f"ingest ({mode}):", json.dumps({k: round(v, 1) for k, v in result.items()}))
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
