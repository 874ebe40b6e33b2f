"""Webhook intake and drain benchmark: gunicorn, PostgreSQL and wrk; then a burst for qcluster.

Run from the project root (see docs/benchmarks/webhooks.md for the recorded figures):

    .venv/bin/python bench/webhooks.py --database-url postgres://postgres@127.0.0.1:5432/janitor_bench3

Phase 1 (sustained): signed ~3 KB customer.subscription.updated deliveries from wrk against
4 gunicorn sync workers, no queue workers running: accepted/s, p50, p99, and every 200 stored.
Phase 2 (burst): a qcluster with 2 workers is started, then `--burst` deliveries are sent as fast
as wrk can; we time until every one is processed and check none was lost or doubled.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fake provider (sandbox/) and the ceiling (bench/)
from bench.serving import wait_time_wait  # noqa: E402

SECRET = "whsec_bench_janitor"
CUSTOMERS = 2000

LUA = r"""
-- Each wrk thread sends its own share of pre-signed bodies, once each; the bench stops wrk
-- (SIGINT) once the database holds them all.
-- What was accepted is counted in the database afterwards, not here.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  nthreads = tonumber(args[2])
  mine = {}
  local n = 0
  for line in io.lines(args[1]) do
    if n % nthreads == id then
      local tab = line:find("\t", 1, true)
      mine[#mine + 1] = {line:sub(1, tab - 1), line:sub(tab + 1)}
    end
    n = n + 1
  end
  sent = 0
end
function request()
  -- wrk may build a thread's first request and never send it: repeat body 1 (a duplicate is
  -- harmless) rather than lose it.
  if sent > 0 or primed then sent = sent + 1 end
  primed = true
  local item = mine[math.max(sent, 1)]
  if item == nil then
    item = mine[#mine]  -- used up: a duplicate (answered 200, stores nothing) until stopped
  end
  return wrk.format("POST", wrk.path,
    {["Content-Type"] = "application/json", ["Stripe-Signature"] = item[1]}, item[2])
end
function done(summary, latency, requests)
  io.write(string.format(
    "JANITOR requests=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def sign(body: bytes, timestamp: int) -> str:
    digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def subscription_event(n: int, created: int, rng: random.Random) -> dict:
    """A realistic customer.subscription.updated, about 3 KB like Stripe's."""
    # The fake provider's bulk ids (StripeFake.add_subscriptions_bulk), so a lookup finds them.
    customer = f"cus_bench_{rng.randrange(CUSTOMERS):07d}"
    sub = f"sub_bench_{customer[-7:]}"
    status = rng.choices(["active", "past_due", "trialing"], weights=[90, 5, 5])[0]
    period_end = created + 30 * 86400
    price = {
        "id": "price_pro_monthly",
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": 1700000000,
        "currency": "usd",
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": "Pro monthly",
        "product": "prod_pro",
        "recurring": {
            "interval": "month",
            "interval_count": 1,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        },
        "tax_behavior": "exclusive",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": 2900,
        "unit_amount_decimal": "2900",
    }
    obj = {
        "id": sub,
        "object": "subscription",
        "application": None,
        "automatic_tax": {"enabled": False, "liability": None},
        "billing_cycle_anchor": created - 86400,
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": created - 86400 * 40,
        "currency": "usd",
        "customer": customer,
        "days_until_due": None,
        "default_payment_method": f"pm_{hashlib.md5(customer.encode()).hexdigest()[:24]}",
        "description": None,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_{sub[4:]}",
                    "object": "subscription_item",
                    "created": created - 86400 * 40,
                    "current_period_end": period_end,
                    "current_period_start": created - 86400,
                    "discounts": [],
                    "metadata": {},
                    "plan": None,
                    "price": price,
                    "quantity": 1,
                    "subscription": sub,
                    "tax_rates": [],
                }
            ],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/subscription_items?subscription={sub}",
        },
        "latest_invoice": f"in_{hashlib.md5(f'{n}'.encode()).hexdigest()[:24]}",
        "livemode": False,
        "metadata": {"plan_family": "pro", "signup_source": "web"},
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": created - 86400 * 40,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }
    return {
        "id": f"evt_bench_{n:08d}_{rng.getrandbits(40):010x}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created,
        "data": {"object": obj, "previous_attributes": {"status": "active"}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_{rng.getrandbits(48):012x}", "idempotency_key": None},
        "type": "customer.subscription.updated",
    }


def bodies_file(path: Path, count: int, start: int, seed: int) -> int:
    """Write `count` pre-signed deliveries (signature TAB body per line); returns mean size."""
    rng = random.Random(seed)
    now = int(time.time())
    total = 0
    with path.open("w") as out:
        for n in range(start, start + count):
            body = json.dumps(subscription_event(n, now - 3600 + n % 3600, rng)).encode()
            total += len(body)
            out.write(f"{sign(body, now)}\t{body.decode()}\n")
    return total // count


def run(cmd: list[str], env: dict, **kwargs) -> str:
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def wrk(
    url: str, bodies: Path, *, threads: int, connections: int, seconds: int, until=None
) -> dict:
    """Run wrk for `seconds`, or until `until()` says every body is stored (then SIGINT)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA)
    started = time.monotonic()
    process = subprocess.Popen(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            script.name,
            url,
            "--",
            str(bodies),
            str(threads),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    while process.poll() is None:
        if until is not None and until():
            process.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
            break
        time.sleep(0.1)
    out = process.communicate(timeout=30)[0]
    elapsed = time.monotonic() - started
    os.unlink(script.name)
    match = re.search(
        r"JANITOR requests=(\d+) p50_us=(\d+) p90_us=(\d+) p99_us=(\d+) max_us=(\d+)",
        out,
    )
    if not match:
        sys.exit(f"unexpected wrk output:\n{out}")
    requests, p50, p90, p99, pmax = map(int, match.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {
        "requests": requests,
        "refused": int(non_2xx.group(1)) if non_2xx else 0,
        "p50_ms": p50 / 1000,
        "p90_ms": p90 / 1000,
        "p99_ms": p99 / 1000,
        "max_ms": pmax / 1000,
        "wrk_rps": float(rate.group(1)) if rate else None,
        "elapsed": elapsed,
        "errors": " ".join(re.findall(r"(Socket errors:.*|Non-2xx.*)", out)),
        "raw": out,
    }


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not come up")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def count(db, sql: str) -> int:
    return db.execute(sql).fetchone()[0]


# Accounts that pay for themselves: each with one member of its public id and email.
SEED = f"""
from accounts.models import Account, User
accounts = Account.objects.bulk_create([
    Account(email=f"bench{{n}}@example.com", stripe_customer_id=f"cus_bench_{{n:07d}}")
    for n in range({CUSTOMERS})
], batch_size=1000)
User.objects.bulk_create([
    User(public_id=a.public_id, email=a.email, account=a, password="!") for a in accounts
], batch_size=1000)
"""

RESET = """
TRUNCATE reconciliation_webhookattempt, reconciliation_webhookevent, reconciliation_subscription,
  reconciliation_flag, accounts_accessaudit, django_q_ormq, django_q_task RESTART IDENTITY CASCADE;
UPDATE accounts_account SET access_status = 'active', grace_ends_at = NULL;
"""


def _serve_fake(conn) -> None:
    """Child process: the project's fake Stripe holding the bench's subscriptions and
    customers, so the ties the drain asks the provider about are answered."""
    from sandbox.stripe_fake import StripeFake

    fake = StripeFake()
    fake.start()
    fake.add_subscriptions_bulk(CUSTOMERS, status_cycle=("active",))
    conn.send(fake.base_url)
    conn.recv()
    conn.send(len(fake.requests))
    fake.stop()


def sustained(base: str, path: str, work: Path, args, db, table: str, start: int) -> dict:
    """wrk against `path` for args.duration seconds with fresh signed bodies; stored/s from the
    rows `table` gained."""
    planned = args.duration * 3000
    bodies = work / f"sustained-{start}.tsv"
    bodies_file(bodies, planned, start, seed=args.seed + start)
    before = count(db, f"SELECT count(*) FROM {table}")
    result = wrk(
        f"{base}{path}",
        bodies,
        threads=args.threads,
        connections=args.connections,
        seconds=args.duration,
    )
    time.sleep(1)  # what wrk left in gunicorn's backlog is answered (and counted) too
    stored = count(db, f"SELECT count(*) FROM {table}") - before
    if not stored:
        sys.exit(f"nothing was stored through {path}: {result['raw'][-2000:]}")
    return {**result, "stored": stored, "per_second": stored / result["elapsed"]}


def burst(base: str, work: Path, args, db, env: dict, seed: int) -> dict:
    """One burst of args.burst new events with no worker running, then a qcluster drains it."""
    python = sys.executable
    db.execute(RESET)
    if args.broker == "redis":
        import redis

        redis.from_url(args.redis_url).delete("django_q:bench3:q")
    bodies = work / f"burst-{seed}.tsv"
    bodies_file(bodies, args.burst, 10_000_000, seed=seed)
    started = time.monotonic()
    result = wrk(
        f"{base}/webhooks/stripe/",
        bodies,
        threads=args.threads,
        connections=args.connections,
        seconds=300,
        until=lambda: count(db, "SELECT count(*) FROM reconciliation_webhookevent") >= args.burst,
    )
    # wrk stops a thread abruptly once its bodies are used up, so a few last requests may
    # never be sent: deliver those again, as Stripe retries an unacknowledged delivery.
    lines = {json.loads(line.split("\t", 1)[1])["id"]: line for line in bodies.open()}
    seen = {
        row[0]
        for row in db.execute(
            "SELECT provider_event_id FROM reconciliation_webhookevent "
            "WHERE provider_event_id = ANY(%s)",
            (list(lines),),
        )
    }
    redelivered = 0
    for event_id, line in lines.items():
        if event_id not in seen:
            signature, body = line.rstrip("\n").split("\t", 1)
            request = urllib.request.Request(
                f"{base}/webhooks/stripe/",
                data=body.encode(),
                headers={"Content-Type": "application/json", "Stripe-Signature": signature},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
            redelivered += 1
    intake = time.monotonic() - started
    stored = count(db, "SELECT count(*) FROM reconciliation_webhookevent")
    cluster_started = time.monotonic()
    cluster = subprocess.Popen(
        [python, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=(work / f"qcluster-{seed}.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    done_sql = "SELECT count(*) FROM reconciliation_webhookevent WHERE status = 'processed'"
    try:
        while (
            count(db, done_sql) < stored and time.monotonic() - cluster_started < args.drain_timeout
        ):
            time.sleep(0.2)
        drained = time.monotonic() - cluster_started
    finally:
        stop(cluster)
    processed = count(db, done_sql)
    return {
        "seed": seed,
        "intake_seconds": intake,
        "intake_p99_ms": result["p99_ms"],
        "redelivered": redelivered,
        "stored": stored,
        "processed": processed,
        "drain_seconds": drained,
        "lost": args.burst - stored,
        "stalled": stored - processed,
        "doubled": count(
            db,
            "SELECT count(*) FROM (SELECT event_id FROM reconciliation_webhookattempt "
            "GROUP BY event_id HAVING count(*) > 1) d",
        ),
        "attempts": count(db, "SELECT count(*) FROM reconciliation_webhookattempt"),
        "not_processed": dict(
            db.execute(
                "SELECT status, count(*) FROM reconciliation_webhookevent "
                "WHERE status <> 'processed' GROUP BY status"
            ).fetchall()
        ),
        "load": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/janitor_bench3"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--broker", choices=["orm", "redis"], default="redis")
    parser.add_argument("--port", type=int, default=8763)
    parser.add_argument("--gunicorn-workers", type=int, default=4)
    parser.add_argument("--queue-workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=30, help="each sustained round, seconds")
    parser.add_argument(
        "--rounds", type=int, default=2, help="sustained rounds, each ceiling then Janitor"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--burst-runs", type=int, default=1, help="bursts, each its own seed")
    parser.add_argument("--seed", type=int, default=1, help="the first burst's seed")
    parser.add_argument("--drain-timeout", type=int, default=300)
    parser.add_argument("--skip-sustained", action="store_true")
    parser.add_argument("--skip-burst", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")

    url = urlparse(args.database_url)
    name = url.path.lstrip("/")
    with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    fake = context.Process(target=_serve_fake, args=(child,), daemon=True)
    fake.start()
    stripe_base = parent.recv()
    env = {
        **os.environ,
        # janitor.settings plus the ceiling's URL (bench/ceiling.py): same app, same middleware.
        "DJANGO_SETTINGS_MODULE": "bench.ceiling_settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "JANITOR_CACHE_PREFIX": "bench3",
        "JANITOR_QUEUE_BROKER": args.broker,
        "JANITOR_QUEUE_NAME": "bench3",
        "JANITOR_QUEUE_WORKERS": str(args.queue_workers),
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-only-" + hashlib.sha256(b"janitor-bench3").hexdigest(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STRIPE_WEBHOOK_SECRET": SECRET,
        # A working provider: two events for one subscription in the same second are a tie the
        # drain settles by asking Stripe (here the project's fake) for the subscription.
        "STRIPE_API_BASE": stripe_base,
        "STRIPE_API_KEY": "sk_test_bench",
        "JANITOR_LOG_LEVEL": "WARNING",
    }
    python = sys.executable
    run([python, "manage.py", "migrate", "-v0"], env)
    run([python, "manage.py", "shell", "-c", SEED], env)
    print(
        f"# machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    db = psycopg.connect(args.database_url, autocommit=True)
    print(
        "# PostgreSQL",
        db.execute("SHOW server_version").fetchone()[0],
        f"broker={args.broker}, gunicorn {args.gunicorn_workers} sync workers, "
        f"wrk {args.threads} threads x {args.connections} connections, seed {args.seed}",
    )
    if args.broker == "redis":
        import redis

        redis.from_url(args.redis_url).delete("django_q:bench3:q")
    gunicorn = subprocess.Popen(
        [
            str(Path(python).parent / "gunicorn"),
            "janitor.wsgi",
            "-c",
            str(ROOT / "bench" / "gunicorn" / "webhooks.conf.py"),
            "-w",
            str(args.gunicorn_workers),
            "-b",
            f"127.0.0.1:{args.port}",
            # A port of its own for each sustained run (see there), after the main one.
            *(
                f"-b=127.0.0.1:{args.port + 1 + n}"
                for n in range(0 if args.skip_sustained else 2 * args.rounds)
            ),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        wait_http(f"{base}/healthz")
        work = Path(tempfile.mkdtemp(prefix="bench3-"))
        if not args.skip_sustained:
            waited = wait_time_wait(args.port + 1, args.port + 2 * args.rounds)
            if waited:
                print(f"# waited {waited} s for an earlier run's sockets to leave TIME_WAIT")
            totals = {"ceiling": [0, 0.0], "janitor": [0, 0.0]}
            for round_ in range(args.rounds):
                for label, path, table in (
                    ("ceiling", "/bench/ceiling/", "reconciliation_webhookevent"),
                    ("janitor", "/webhooks/stripe/", "reconciliation_webhookevent"),
                ):
                    run_no = 2 * round_ + (label == "janitor")
                    # gunicorn's sync workers close every connection: a run leaves its
                    # tens of thousands of server-side sockets in TIME_WAIT for 60 s, and the
                    # next run's connections to the same port meet them (SYNs unanswered,
                    # retried after 1 s: p99s of a second that were the bench's own). Each run
                    # has a port of its own instead.
                    run_base = f"http://127.0.0.1:{args.port + 1 + run_no}"
                    r = sustained(run_base, path, work, args, db, table, run_no * 1_000_000)
                    totals[label][0] += r["stored"]
                    totals[label][1] += r["elapsed"]
                    print(
                        f"round {round_ + 1} {label:8} {r['stored']:>6} stored in "
                        f"{r['elapsed']:.1f}s = {r['per_second']:.0f}/s; p50 {r['p50_ms']:.1f} ms"
                        f", p90 {r['p90_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max "
                        f"{r['max_ms']:.1f} ms; non-2xx {r['refused']}; "
                        f"{r['errors'] or 'no socket errors'}; load {os.getloadavg()[0]:.2f}"
                    )
            rates = {k: n / seconds for k, (n, seconds) in totals.items()}
            print(
                f"sustained: Janitor {rates['janitor']:.0f}/s, ceiling {rates['ceiling']:.0f}/s:"
                f" Janitor's intake is {100 * rates['janitor'] / rates['ceiling']:.1f}% of the "
                f"ceiling (broker {args.broker}, {args.connections} connections)"
            )
        if args.skip_burst:
            return
        time.sleep(3)  # requests wrk left in gunicorn's backlog finish before the reset
        runs = []
        for seed in range(args.seed, args.seed + args.burst_runs):
            r = burst(base, work, args, db, env, seed)
            runs.append(r)
            print(
                f"burst seed {seed}: {r['stored']} stored in {r['intake_seconds']:.1f}s "
                f"(p99 {r['intake_p99_ms']:.0f} ms, {r['redelivered']} re-delivered), "
                f"{r['processed']} processed {r['drain_seconds']:.1f}s after starting qcluster "
                f"({args.queue_workers} workers); lost {r['lost']}, doubled {r['doubled']}, "
                f"stalled {r['stalled']} {r['not_processed'] or ''}; load {r['load'][0]:.2f}"
            )
        drains = sorted(r["drain_seconds"] for r in runs)
        print(
            f"bursts: {len(runs)} runs of {args.burst} (seeds {args.seed}.."
            f"{args.seed + len(runs) - 1}), drain min {drains[0]:.1f} s, median "
            f"{drains[len(drains) // 2]:.1f} s, max {drains[-1]:.1f} s; lost "
            f"{sum(r['lost'] for r in runs)}, doubled {sum(r['doubled'] for r in runs)}, "
            f"stalled {sum(r['stalled'] for r in runs)}"
        )
        if any(r["lost"] or r["doubled"] or r["stalled"] for r in runs):
            sys.exit(1)
    finally:
        stop(gunicorn)
        db.close()
        parent.send("stop")
        print(f"# the fake provider answered {parent.recv()} requests")
        fake.join(timeout=10)


if __name__ == "__main__":
    main()
