"""Delivery throughput of access events to product endpoints, end to end through the queue.

A local receiver (a threaded HTTP/1.1 server in this process) verifies every POST with the
standardwebhooks library and counts it per webhook-id. The events are written by the real path
(accounts.services.access_changes.access_changed: version bump, changes feed, one outbox row per
enabled endpoint, a delivery task queued on commit); then `manage.py qcluster` (Redis broker)
starts and runs what ships: products.tasks.deliveries_deliver_due_task, which fans out to idle
workers while a backlog lasts. Timed from starting the cluster until the receiver has counted
every event; then lost (never received), doubled (a webhook-id received twice), bad signatures
and out-of-order arrivals (a lower version after a higher one, per endpoint and account).

Mode "fanout" (default): every account changes once, each change goes to every endpoint: N =
accounts x endpoints deliveries, none superseded, all must arrive. Mode "versions": one endpoint,
each account changes K times, the first --prewrite times before the cluster starts and the rest
while it runs (a writer thread): older versions still waiting are superseded; the newest version
of every account must arrive, and no account's versions arrive out of order.

Needs PostgreSQL (a scratch database: it migrates it and writes accounts) and Redis:

    psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE janitor_bench_deliveries'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/janitor_bench_deliveries \\
    REDIS_URL=redis://127.0.0.1:6379/10 DJANGO_DEBUG=false \\
    DJANGO_SECRET_KEY=bench-only-0123456789012345678901234567890123456789 \\
    .venv/bin/python bench/deliveries.py --accounts 2000 --endpoints 10
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "janitor.settings")
os.environ.setdefault("JANITOR_QUEUE_NAME", "bench-deliveries")
os.environ.setdefault("JANITOR_CACHE_PREFIX", "bench-deliveries")
os.environ.setdefault("JANITOR_LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from standardwebhooks.webhooks import Webhook, WebhookVerificationError  # noqa: E402

from accounts.models import AccessChange, Account, User  # noqa: E402
from accounts.services.access_changes import access_changed  # noqa: E402
from products.models import (  # noqa: E402
    AccessEvent,
    Delivery,
    DeliveryAttempt,
    EndpointChange,
    ProductEndpoint,
)
from products.services.delivery import KICK_KEY  # noqa: E402


class Receiver:
    """Counts verified events per webhook-id and watches the order of versions."""

    def __init__(self, secrets: dict[str, Webhook]):
        self.secrets = secrets
        self.lock = threading.Lock()
        self.ids: Counter[str] = Counter()
        self.bad_signatures = 0
        self.out_of_order = 0
        self.newest: dict[tuple[str, str], int] = {}
        self.first_at: float | None = None
        self.last_at = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook = receiver.secrets.get(self.path)
                try:
                    if hook is None:
                        raise WebhookVerificationError("unknown endpoint")
                    event = hook.verify(body, {k.lower(): v for k, v in self.headers.items()})
                except WebhookVerificationError:
                    event = None
                receiver.record(self.path, self.headers.get("webhook-id", ""), event)
                self.send_response(204 if event is not None else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def record(self, path: str, webhook_id: str, event: dict | None) -> None:
        now = time.monotonic()
        with self.lock:
            if event is None:
                self.bad_signatures += 1
                return
            self.first_at = self.first_at or now
            self.last_at = now
            self.ids[webhook_id] += 1
            key = (path, event["data"]["account"])
            version = event["data"]["version"]
            if self.ids[webhook_id] == 1:
                if version < self.newest.get(key, 0):
                    self.out_of_order += 1
                self.newest[key] = max(version, self.newest.get(key, 0))

    def unique(self) -> int:
        with self.lock:
            return len(self.ids)


def reset() -> None:
    """An empty scratch database (deliveries, changes, accounts of earlier runs)."""
    DeliveryAttempt.objects.all().delete()
    Delivery.objects.update(superseded_by=None)
    Delivery.objects.all().delete()
    EndpointChange.objects.all().delete()
    ProductEndpoint.objects.all().delete()
    AccessChange.objects.all().delete()
    User.objects.filter(account__public_id__startswith="bench-dl-").delete()
    Account.objects.filter(public_id__startswith="bench-dl-").delete()


def accounts_make(count: int) -> list[Account]:
    Account.objects.bulk_create(
        [
            Account(public_id=f"bench-dl-{k}", email=f"bench-dl-{k}@example.com")
            for k in range(count)
        ],
        batch_size=1000,
    )
    return list(Account.objects.filter(public_id__startswith="bench-dl-").order_by("id"))


def change(account: Account) -> None:
    """One access change as the services make it (the account locked, in its transaction)."""
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        access_changed(account=locked, event_type=AccessEvent.GRACE_EXTENDED)


def cluster_start(workers: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "JANITOR_QUEUE_WORKERS": str(workers)}
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def cluster_stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["fanout", "versions"], default="fanout")
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=10, help="fanout mode")
    parser.add_argument("--changes", type=int, default=10, help="versions mode: per account")
    parser.add_argument(
        "--prewrite", type=int, default=5, help="versions mode: rounds written before the cluster"
    )
    parser.add_argument("--workers", type=int, default=2, help="qcluster worker processes")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--log", default="/tmp/bench-deliveries-qcluster.log")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Needs DATABASE_URL=postgres://... (a scratch database).")

    call_command("migrate", verbosity=0)
    reset()
    cache.delete(KICK_KEY)
    endpoints = args.endpoints if args.mode == "fanout" else 1
    hooks: dict[str, Webhook] = {}
    receiver = Receiver(hooks)
    for k in range(endpoints):
        path = f"/events/{k}"
        endpoint = ProductEndpoint.objects.create(name=f"bench-{k}", url=receiver.url(path))
        hooks[path] = Webhook(endpoint.secret)
    accounts = accounts_make(args.accounts)
    settings_line = (
        f"threads {os.environ.get('JANITOR_DELIVERY_THREADS', '8')} a worker, "
        f"batch {os.environ.get('JANITOR_DELIVERY_BATCH', '200')}"
    )
    print(
        f"# mode {args.mode}: {len(accounts)} accounts, {endpoints} endpoint(s), "
        f"{args.workers} qcluster workers ({settings_line})"
    )
    writer = None
    if args.mode == "fanout":
        started = time.monotonic()
        for account in accounts:
            change(account)
        expected = Delivery.objects.count()
        print(f"written: {expected} deliveries in {time.monotonic() - started:.1f} s")
    else:
        expected = len(accounts) * args.changes
        prewrite = min(args.prewrite, args.changes)
        started = time.monotonic()
        for _round in range(prewrite):
            for account in accounts:
                change(account)
        print(
            f"written before the cluster: {prewrite} versions of each account "
            f"in {time.monotonic() - started:.1f} s; {args.changes - prewrite} more while it runs"
        )

        def write_versions() -> None:
            for _round in range(args.changes - prewrite):
                for account in accounts:
                    change(account)
            connection.close()

    cluster = cluster_start(args.workers, Path(args.log))
    started = time.monotonic()
    try:
        if args.mode == "versions":
            writer = threading.Thread(target=write_versions)
            writer.start()
        arrived = None
        while time.monotonic() - started < args.timeout:
            if args.mode == "fanout" and arrived is None and receiver.unique() >= expected:
                arrived = time.monotonic() - started
            if arrived is not None or (writer is not None and not writer.is_alive()):
                # Done when every outcome is recorded too (nothing open in the outbox).
                open_left = Delivery.objects.filter(status__in=["pending", "failing"]).count()
                if open_left == 0:
                    break
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        arrived = arrived or elapsed
    finally:
        if writer is not None:
            writer.join()
        cluster_stop(cluster)

    statuses = Counter(Delivery.objects.values_list("status", flat=True))
    doubled = sum(n - 1 for n in receiver.ids.values() if n > 1)
    received = receiver.unique()
    sent_at = receiver.last_at - (receiver.first_at or receiver.last_at)
    delivered_ids = set(Delivery.objects.filter(status="delivered").values_list("webhook_id"))
    never_received = sum(1 for (w,) in delivered_ids if w not in receiver.ids)
    print(f"deliveries by status: {dict(statuses)}")
    print(
        f"receiver: {received} unique events, {doubled} doubled, "
        f"{receiver.bad_signatures} bad signatures, {receiver.out_of_order} out of order; "
        f"{never_received} recorded delivered but never received"
    )
    if args.mode == "fanout":
        lost = expected - received
        print(f"lost: {lost} (expected {expected})")
        print(
            f"end to end: {expected} events received {arrived:.2f} s after starting qcluster "
            f"= {expected / arrived:.0f} events/s (every outcome recorded at {elapsed:.2f} s); "
            f"first to last arrival {sent_at:.2f} s = {received / max(sent_at, 1e-9):.0f} events/s"
        )
    else:
        newest: defaultdict[int, int] = defaultdict(int)
        for account_id, version in Delivery.objects.values_list("account_id", "account_version"):
            newest[account_id] = max(newest[account_id], version)
        final_missing = 0
        public = dict(Account.objects.filter(pk__in=newest).values_list("pk", "public_id"))
        for account_id, version in newest.items():
            if receiver.newest.get(("/events/0", public[account_id])) != version:
                final_missing += 1
        settled = statuses["delivered"] + statuses["superseded"]
        print(
            f"lost: {final_missing} accounts whose newest version never arrived; "
            f"{statuses['pending'] + statuses['failing']} still open"
        )
        print(
            f"end to end: {settled} of {expected} events settled in {elapsed:.2f} s "
            f"= {settled / elapsed:.0f} events/s ({received} POSTs = {received / elapsed:.0f}/s)"
        )
    receiver.server.shutdown()


if __name__ == "__main__":
    main()
