"""Shared drill machinery: private PostgreSQL and Redis, app subprocesses, events, the table."""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_PORT = int(os.environ.get("DRILL_PG_PORT", "5499"))
REDIS_PORT = int(os.environ.get("DRILL_REDIS_PORT", "6399"))
WEB_PORT = int(os.environ.get("DRILL_WEB_PORT", "8499"))
DB_NAME = "janitor_drill"
WEBHOOK_SECRET = "whsec_drill"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # a server coming up answers with errors for a moment
            pass
        time.sleep(interval)
    return False


# --- The result table ------------------------------------------------------------------------


@dataclass
class Check:
    injected: str
    expected: str
    happened: str
    ok: bool


@dataclass
class Report:
    title: str
    checks: list[Check] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def check(self, injected: str, expected: str, happened: str, ok: bool) -> bool:
        self.checks.append(Check(injected, expected, happened, bool(ok)))
        log(f"{'PASS' if ok else 'FAIL'}: {expected} -> {happened}")
        return ok

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def render(self) -> str:
        lines = [
            f"## {self.title} ({time.monotonic() - self.started:.0f} s)",
            "",
            "| injected | expected | happened | result |",
            "|---|---|---|---|",
        ]
        for c in self.checks:
            cells = [c.injected, c.expected, c.happened, "PASS" if c.ok else "**FAIL**"]
            lines.append("| " + " | ".join(s.replace("|", "/") for s in cells) + " |")
        lines.append("")
        lines.append(f"{self.title}: {'PASSED' if self.passed else 'FAILED'}")
        return "\n".join(lines)


# --- The private servers and the app processes -----------------------------------------------


class Drill:
    """Everything one drill runs; torn down on exit whatever happens."""

    def __init__(self, name: str, *, broker: str = "redis") -> None:
        self.name = name
        self.broker = broker
        self.tmp = Path(tempfile.mkdtemp(prefix=f"janitor-drill-{name}-"))
        os.chmod(self.tmp, 0o755)
        self.pgdata = self.tmp / "pgdata"
        self.sockdir = self.tmp / "sock"
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.redis: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self.clusters: dict[str, subprocess.Popen] = {}
        self.fake = None
        self._pg_started = False
        self._torn_down = False
        self.keep_logs = os.environ.get("DRILL_KEEP_LOGS") == "1"
        atexit.register(self.teardown)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

    # PostgreSQL ---------------------------------------------------------------------------

    def _as_postgres(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=check,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def pg_init(self) -> None:
        for port in (PG_PORT, REDIS_PORT, WEB_PORT):
            if not _port_free(port):
                raise SystemExit(f"port {port} is in use: is another drill running?")
        self.pgdata.mkdir()
        self.sockdir.mkdir()
        shutil.chown(self.pgdata, "postgres", "postgres")
        shutil.chown(self.sockdir, "postgres", "postgres")
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        self.pg_start()
        self._as_postgres(
            str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres",
            DB_NAME,
        )  # fmt: skip

    def pg_start(self) -> None:
        options = (
            f"-p {PG_PORT} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-l",
            str(self.sockdir / "postgres.log"), "-w", "-o", options, "start",
        )  # fmt: skip
        self._pg_started = True

    def pg_stop(self, mode: str = "fast") -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop", check=False
        )
        self._pg_started = False

    # Redis --------------------------------------------------------------------------------

    def redis_start(self) -> None:
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.tmp)],
            stdout=open(self.logs / "redis.log", "a"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        import redis

        client = redis.Redis(port=REDIS_PORT)
        if not wait_until(lambda: client.ping(), 10, 0.1):
            raise RuntimeError("private Redis did not start")

    def redis_stop(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            self.redis.kill()  # SIGKILL: nothing is saved, as in a crash
            self.redis.wait(10)
        self.redis = None

    # Environment, Django, the app ----------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{PG_PORT}/{DB_NAME}",
            REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}/0",
            JANITOR_CACHE_PREFIX="drill",
            JANITOR_QUEUE_BROKER=self.broker,
            JANITOR_QUEUE_NAME="janitor-drill",
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            STRIPE_API_KEY="sk_test_drill",
            STRIPE_API_BASE=self.fake.base_url if self.fake else "http://127.0.0.1:9",
            DJANGO_DEBUG="false",
            DJANGO_SECRET_KEY="drill-" + "k3y-n0t-for-production-" * 3,
            JANITOR_SSL_REDIRECT="false",
            DJANGO_ALLOWED_HOSTS="127.0.0.1",
            DJANGO_SETTINGS_MODULE="janitor.settings",
            JANITOR_LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        env.pop("DJANGO_EMAIL_BACKEND", None)
        return env

    def start_fake(self):
        from sandbox.stripe_fake import StripeFake

        self.fake = StripeFake().start()
        self.fake.record_requests = False
        return self.fake

    def setup(self, *, fake: bool = True, extra_env: dict[str, str] | None = None) -> None:
        """Private servers up, the database migrated, Django set up in this process."""
        log(f"drill {self.name}: private PostgreSQL :{PG_PORT}, Redis :{REDIS_PORT} in {self.tmp}")
        if fake:
            self.start_fake()
        self.pg_init()
        self.redis_start()
        os.environ.update(self.env)
        os.environ.update(extra_env or {})
        self.manage("migrate", "--noinput", timeout=300)
        import django

        django.setup()

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env | {k: v for k, v in os.environ.items() if k.startswith("JANITOR_")},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result

    def _spawn(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        # A session of its own: the process and every child it forks share one process group.
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=env or self.env,
            stdout=open(self.logs / f"{name}.log", "a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def web_start(self, workers: int = 2) -> None:
        env = self.env | {
            "GUNICORN_CMD_ARGS": f"--bind=127.0.0.1:{WEB_PORT} --workers={workers} "
            "--access-logfile=/dev/null"
        }
        self.web = self._spawn(
            "gunicorn", [GUNICORN, "-c", "gunicorn.conf.py", "janitor.wsgi"], env
        )
        if not wait_until(lambda: self.http_get("/healthz")[0] < 600, 30, 0.2):
            raise RuntimeError(f"gunicorn did not start; see {self.logs / 'gunicorn.log'}")

    def cluster_start(self, name: str = "q1", workers: int = 2) -> subprocess.Popen:
        env = self.env | {"JANITOR_QUEUE_WORKERS": str(workers)}
        proc = self._spawn(f"qcluster-{name}", [PYTHON, "manage.py", "qcluster"], env)
        self.clusters[name] = proc
        return proc

    def app_start(self, *clusters: str) -> None:
        """gunicorn, then a qcluster for each name given (one, "q1", when none is)."""
        self.web_start()
        for name in clusters or ("q1",):
            self.cluster_start(name)

    def cluster_kill(self, name: str = "q1", sig: int = signal.SIGKILL) -> None:
        proc = self.clusters.pop(name, None)
        if proc is None:
            return
        _kill_group(proc, sig)

    def cluster_alive(self, name: str = "q1") -> bool:
        proc = self.clusters.get(name)
        return proc is not None and proc.poll() is None

    def teardown(self) -> None:
        if self._torn_down:
            return
        self._torn_down = True
        for name in list(self.clusters):
            self.cluster_kill(name)
        if self.web is not None:
            _kill_group(self.web, signal.SIGKILL)
        if self.fake is not None:
            try:
                self.fake.stop()
            except Exception:
                pass
        self.redis_stop()
        if self.pgdata.exists():
            self.pg_stop("immediate")
        if self.keep_logs:
            log(f"logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # HTTP ---------------------------------------------------------------------------------

    def http_get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", WEB_PORT, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def drill_start(what: str, *, extra_env: dict[str, str] | None = None) -> tuple[Drill, Report]:
    """The running drill (named after its script, drills/<name>.py): private servers up and
    migrated, Django set up in this process, and its empty table, titled "<name>: <what>"."""
    name = Path(sys.argv[0]).stem
    report = Report(f"{name}: {what}")
    drill = Drill(name)
    drill.setup(extra_env=extra_env)
    return drill, report


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used so far by the live processes of one process group (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid, pgrp, ..., utime (12th), stime (13th).
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# --- Webhook events --------------------------------------------------------------------------


@dataclass
class Delivery:
    event_id: str
    body: bytes
    customer: int


def subscription(i: int, status: str) -> dict:
    from sandbox.stripe_fake import subscription_sample

    created = int(time.time()) - 86400
    return subscription_sample(
        f"sub_drill{i:05d}", customer=f"cus_drill{i:05d}", status=status, created=created
    )


def lifecycles(
    *, customers: int, unique: int, duplicates: int, seed: int
) -> tuple[list[Delivery], dict[int, str]]:
    """Subscription lifecycles as Stripe would send them, duplicated and shuffled.

    Customer i has subscription sub_drill{i}: created (active or trialing), then updates among
    active, past_due, unpaid and trialing, and for some a final deletion (canceled: terminal
    at Stripe, so only ever last). Event times rise within a customer. Returns the deliveries
    and each customer's newest subscription status (what the app must end with).
    """
    from sandbox.stripe_fake import event_object

    rng = random.Random(seed)
    per_customer = [unique // customers] * customers
    for i in range(unique - sum(per_customer)):
        per_customer[i] += 1
    base = int(time.time()) - 7200
    deliveries: list[Delivery] = []
    final: dict[int, str] = {}
    for i, count in enumerate(per_customer):
        statuses = [rng.choice(["active", "trialing"])]
        statuses += [
            rng.choice(["active", "past_due", "unpaid", "active"]) for _ in range(count - 1)
        ]
        deleted = count > 1 and rng.random() < 0.3
        if deleted:
            statuses[-1] = "canceled"
        for k, status in enumerate(statuses):
            if k == 0:
                kind = "customer.subscription.created"
            elif status == "canceled":
                kind = "customer.subscription.deleted"
            else:
                kind = "customer.subscription.updated"
            event = event_object(
                kind,
                subscription(i, status),
                id=f"evt_drill{i:05d}_{k:02d}",
                created=base + i + 5 * k,
            )
            deliveries.append(Delivery(event["id"], json.dumps(event).encode(), i))
        final[i] = statuses[-1]
    deliveries += rng.sample(deliveries, duplicates)
    rng.shuffle(deliveries)
    return deliveries, final


def expected_access(final_status: str) -> str:
    """An account that starts active ends active if the newest status grants, else in grace."""
    from django.conf import settings

    return "active" if final_status in settings.JANITOR_ACCESS_STATUSES else "grace_period"


def customer_accounts_create(count: int) -> dict[int, int]:
    """Active customer accounts linked to cus_drill{i}, each with one member (someone who pays
    for themselves); returns customer index -> account pk."""
    from accounts.models import AccessStatus, Account, User

    accounts = Account.objects.bulk_create(
        [
            Account(
                email=f"drill{i:05d}@example.test",
                name=f"Drill customer {i}",
                stripe_customer_id=f"cus_drill{i:05d}",
                access_status=AccessStatus.ACTIVE,
                is_active=True,
            )
            for i in range(count)
        ]
    )
    User.objects.bulk_create(
        [
            User(
                public_id=account.public_id,
                email=account.email,
                name=account.name,
                account=account,
                is_active=True,
                password="!",
            )
            for account in accounts
        ]
    )
    return {
        int(cid.removeprefix("cus_drill")): pk
        for pk, cid in Account.objects.filter(
            stripe_customer_id__startswith="cus_drill"
        ).values_list("pk", "stripe_customer_id")
    }


class Poster:
    """Posts signed deliveries to gunicorn from a few threads, keep-alive, at a bounded rate."""

    def __init__(self, *, threads: int = 4, rate: float | None = None) -> None:
        self.threads = threads
        self.rate = rate
        self.statuses: dict[int, int] = {}  # delivery index -> last HTTP status (0: no answer)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._next_slot = time.monotonic()
        self._stream: threading.Thread | None = None

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", WEB_PORT, timeout=15)
        return conn

    def _pace(self) -> None:
        if not self.rate:
            return
        with self._lock:
            slot = max(self._next_slot, time.monotonic())
            self._next_slot = slot + 1 / self.rate
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def post(self, delivery: Delivery) -> int:
        from sandbox.signing import stripe_signature_header

        self._pace()
        headers = {
            "Content-Type": "application/json",
            "Stripe-Signature": stripe_signature_header(delivery.body, WEBHOOK_SECRET),
        }
        try:
            conn = self._conn()
            conn.request("POST", "/webhooks/stripe/", body=delivery.body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            self._local.conn = None
            return 0

    def post_all(self, deliveries: list[Delivery], indexes: Iterable[int] | None = None) -> None:
        indexes = list(range(len(deliveries)) if indexes is None else indexes)

        def one(index: int) -> None:
            self.statuses[index] = self.post(deliveries[index])

        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(one, indexes))

    def start(self, deliveries: list[Delivery]) -> Poster:
        """Post every delivery from a background thread; join() waits for the last."""
        self._stream = threading.Thread(target=self.post_all, args=(deliveries,))
        self._stream.start()
        return self

    def join(self) -> None:
        self._stream.join()

    def failed(self) -> list[int]:
        return [i for i, status in self.statuses.items() if not 200 <= status < 300]

    def redeliver(self, deliveries: list[Delivery], rounds: int = 20, pause: float = 1.0) -> int:
        """Send every non-2xx delivery again, as Stripe does, until all are accepted."""
        sent = 0
        for _ in range(rounds):
            pending = self.failed()
            if not pending:
                break
            sent += len(pending)
            self.post_all(deliveries, pending)
            if self.failed():
                time.sleep(pause)
        return sent


# --- The webhook drills' load -----------------------------------------------------------------


def load_options(
    doc: str | None,
    *,
    deliveries: int,
    customers: int,
    rate: float,
    seed: int,
) -> argparse.ArgumentParser:
    """A webhook drill's options, with its defaults: the load (a tenth of the deliveries are
    duplicates) and the seed that shuffles it. The drill adds its own and hands the parser to
    webhook_drill."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--deliveries", type=int, default=deliveries)
    parser.add_argument("--duplicates", type=int, default=deliveries // 10)
    parser.add_argument("--customers", type=int, default=customers)
    parser.add_argument("--rate", type=float, default=rate, help="deliveries per second")
    parser.add_argument("--seed", type=int, default=seed)
    return parser


@dataclass
class Load:
    """The customers' accounts and their subscription lifecycles, as deliveries to post."""

    accounts: dict[int, int]  # customer index -> account pk
    deliveries: list[Delivery]
    final: dict[int, str]  # customer index -> newest subscription status

    @classmethod
    def create(cls, args: argparse.Namespace) -> Load:
        """args: what load_options parsed."""
        accounts = customer_accounts_create(args.customers)
        deliveries, final = lifecycles(
            customers=args.customers,
            unique=args.deliveries - args.duplicates,
            duplicates=args.duplicates,
            seed=args.seed,
        )
        return cls(accounts, deliveries, final)

    @property
    def event_ids(self) -> set[str]:
        return {d.event_id for d in self.deliveries}

    def stream(self, rate: float) -> Poster:
        """Start posting every delivery, `rate` a second from 4 threads; join() it to wait."""
        return Poster(threads=4, rate=rate).start(self.deliveries)

    def check(self, report: Report, injected: str) -> None:
        """Every event stored once and processed; accounts end right, one audit chain each."""
        webhook_checks(report, injected, self.event_ids)
        account_checks(report, injected, self.accounts, self.final)


class WebhookRun(NamedTuple):
    drill: Drill
    report: Report
    load: Load
    args: argparse.Namespace


def webhook_drill(what: str, parser: argparse.ArgumentParser) -> WebhookRun:
    """A webhook drill's set-up: its options parsed (parser: from load_options), drill_start,
    and the load: the customers' accounts and their lifecycles. The app is not started yet."""
    args = parser.parse_args()
    drill, report = drill_start(what)
    return WebhookRun(drill, report, Load.create(args), args)


@dataclass
class Recovery:
    """How a stream of deliveries came through an outage."""

    first: Counter  # first answers by HTTP status (0: no answer)
    refused: int  # deliveries answered non-2xx the first time
    resent: int  # re-sends until every one was accepted
    still_refused: int
    survived: bool  # the qcluster lived through it (else it was restarted)
    sweeps: int


def outage_under_load(
    drill: Drill,
    load: Load,
    args: argparse.Namespace,
    *,
    server: str,
    how: str,
    stop: Callable[[], None],
    start: Callable[[], None],
) -> Recovery:
    """Stop `server` for args.down seconds a third of the way through streaming the load at
    args.rate, then recover as production does: Stripe re-sends every non-2xx delivery, a
    process supervisor restarts a qcluster that died, the sweeper re-sends lost tasks."""
    from django.db import connections

    poster = load.stream(args.rate)
    time.sleep(args.deliveries / args.rate / 3)
    log(f"stopping {server} ({how})")
    down_at = time.monotonic()
    stop()
    time.sleep(args.down)
    start()
    log(f"{server} back after {time.monotonic() - down_at:.1f} s")
    poster.join()
    first = Counter(poster.statuses.values())
    refused = len(poster.failed())
    resent = poster.redeliver(load.deliveries)
    survived = drill.cluster_alive()
    if not survived:
        log(f"the qcluster died with {server}; restarting it (as a process supervisor would)")
        drill.cluster_start()
    connections.close_all()  # this process's connections may predate the outage
    sweeps = sweep_until_done(timeout=60)
    return Recovery(first, refused, resent, len(poster.failed()), survived, sweeps)


# --- Checks shared by the webhook drills -------------------------------------------------------


def sweep_until_done(*, timeout: float = 90, cluster_ok: Callable[[], None] | None = None) -> int:
    """Run the sweeper, as its schedule would, until every stored event is finished.

    The clock is moved past the grace and backoff times instead of waiting for them.
    Returns the number of sweeps.
    """
    from datetime import timedelta

    from django.db import close_old_connections
    from django.utils import timezone

    from reconciliation.models import WebhookEvent, WebhookStatus
    from reconciliation.services.webhooks import webhook_events_sweep

    sweeps = 0
    deadline = time.monotonic() + timeout
    open_statuses = [WebhookStatus.PENDING, WebhookStatus.FAILED]
    while time.monotonic() < deadline:
        close_old_connections()
        if cluster_ok:
            cluster_ok()
        if not WebhookEvent.objects.filter(status__in=open_statuses).exists():
            return sweeps
        webhook_events_sweep(now=timezone.now() + timedelta(hours=2), limit=5000)
        sweeps += 1
        time.sleep(3)
    return sweeps


def webhook_checks(report: Report, injected: str, unique_ids: set[str]) -> dict:
    """Every event stored once and processed, one processed attempt each."""
    from django.db.models import Count

    from reconciliation.models import WebhookAttempt, WebhookEvent, WebhookStatus

    stored = dict(
        WebhookEvent.objects.filter(provider_event_id__in=unique_ids)
        .values_list("provider_event_id")
        .annotate(n=Count("id"))
    )
    missing = len(unique_ids - set(stored))
    doubled = sum(1 for n in stored.values() if n > 1)
    report.check(
        injected,
        f"all {len(unique_ids)} distinct events stored exactly once",
        f"{len(stored)} stored, {missing} missing, {doubled} stored twice",
        missing == 0 and doubled == 0,
    )
    by_status = dict(WebhookEvent.objects.values_list("status").annotate(n=Count("id")).order_by())
    processed = by_status.get(WebhookStatus.PROCESSED, 0)
    report.check(
        injected,
        "every event ends processed",
        ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items())),
        processed == len(unique_ids) and len(by_status) == 1,
    )
    rows = (
        WebhookAttempt.objects.filter(outcome=WebhookStatus.PROCESSED)
        .values("event_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    per_event = {row["event_id"]: row["n"] for row in rows}
    twice = sum(1 for n in per_event.values() if n > 1)
    report.check(
        injected,
        "one processed attempt per event (no effect applied twice)",
        f"{len(per_event)} events with a processed attempt, {twice} with more than one",
        twice == 0 and len(per_event) == len(unique_ids),
    )
    return by_status


def account_checks(report: Report, injected: str, accounts: dict[int, int], final: dict) -> None:
    """Final states equal the expected ones, and each account's audit trail is one chain."""
    from accounts.models import AccessAudit, Account

    states = dict(
        Account.objects.filter(pk__in=accounts.values()).values_list("pk", "access_status")
    )
    wrong = [i for i, pk in accounts.items() if states[pk] != expected_access(final[i])]
    report.check(
        injected,
        f"{len(accounts)} accounts end in the state of their newest subscription status",
        f"{len(accounts) - len(wrong)} right, {len(wrong)} wrong"
        + (f" (e.g. customer {wrong[0]})" if wrong else ""),
        not wrong,
    )
    trails: dict[int, list[tuple[str, str]]] = {}
    for account_id, from_status, to_status in (
        AccessAudit.objects.filter(account_id__in=accounts.values())
        .order_by("id")
        .values_list("account_id", "from_status", "to_status")
    ):
        trails.setdefault(account_id, []).append((from_status, to_status))
    broken = 0
    for pk in accounts.values():
        current = "active"
        for from_status, to_status in trails.get(pk, []):
            if from_status != current or from_status == to_status:
                broken += 1
                break
            current = to_status
        else:
            if current != states[pk]:
                broken += 1
    rows = sum(len(t) for t in trails.values())
    report.check(
        injected,
        "audit rows per account form one chain ending in its state (no change written twice)",
        f"{rows} audit rows, {broken} accounts with a broken or doubled chain",
        broken == 0,
    )


def finish(report: Report) -> int:
    print()
    print(report.render(), flush=True)
    return 0 if report.passed else 1
