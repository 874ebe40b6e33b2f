"""manage.py sandbox serve|seed|simulate|status: the demo's Stripe (sandbox/), as `make run`
starts it when no STRIPE_API_KEY is set."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from janitor.demo import demo_sandbox_customers, demo_sandbox_disputes
from sandbox import SANDBOX_API_KEY, SANDBOX_HOST
from sandbox.provider import Sandbox, SandboxRefused, sandbox_start_check
from sandbox.seed import orphan_customers, sandbox_seed


class Command(BaseCommand):
    help = (
        "The Stripe sandbox for the demo: serve it, seed it from the demo accounts, make it drift."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True)
        commands.add_parser("serve", help="Serve the sandbox on 127.0.0.1 until stopped.")
        seed = commands.add_parser("seed", help="Write the sandbox's state from the demo accounts.")
        seed.add_argument(
            "--if-empty", action="store_true", help="Do nothing if the state file exists."
        )
        simulate = commands.add_parser(
            "simulate", help="Make provider-side changes in the running sandbox."
        )
        simulate.add_argument("--minutes", type=int, default=10, help="about one change each")
        simulate.add_argument(
            "--drop-webhooks",
            type=float,
            default=0.0,
            metavar="RATE",
            help="share of changes (0-1) whose webhooks are never sent (the Events API has them)",
        )
        simulate.add_argument("--seed", help="random seed, for a repeatable simulation")
        commands.add_parser("status", help="What the running sandbox holds and has delivered.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            sandbox_start_check(
                debug=settings.DEBUG, api_key=settings.STRIPE_API_KEY, host=SANDBOX_HOST
            )
        except SandboxRefused as exc:
            raise CommandError(f"The sandbox refuses to start: {exc}") from exc
        getattr(self, f"_{action}")(**options)

    # --- serve ----------------------------------------------------------------------------------

    def _serve(self, **options: Any) -> None:
        webhook_url = settings.JANITOR_PUBLIC_URL + reverse("stripe_webhook")
        sandbox = Sandbox(
            state_file=settings.JANITOR_SANDBOX_STATE_FILE,
            webhook_url=webhook_url,
            webhook_secret=settings.STRIPE_WEBHOOK_SECRETS[0]
            if settings.STRIPE_WEBHOOK_SECRETS
            else "",
        )
        if not sandbox.load():
            self.stdout.write(
                f"No sandbox state at {settings.JANITOR_SANDBOX_STATE_FILE}: starting empty "
                "(manage.py sandbox seed fills it from the demo accounts)."
            )
        try:
            sandbox.serve(port=settings.JANITOR_SANDBOX_PORT)
        except OSError as exc:
            raise CommandError(
                f"The sandbox cannot listen on {SANDBOX_HOST}:{settings.JANITOR_SANDBOX_PORT}: "
                f"{exc} (JANITOR_SANDBOX_PORT picks another port)."
            ) from exc
        status = sandbox.status()
        self.stdout.write(
            f"Stripe sandbox on {sandbox.base_url}: {status['customers']:,} customers, "
            f"{sum(status['subscriptions'].values()):,} subscriptions, "
            f"{len(status['disputes'])} disputes; webhooks to {webhook_url} "
            f"({status['deliveries_pending']} waiting). State: {sandbox.state_file}"
        )
        stopped = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopped.set())
        stopped.wait()
        sandbox.stop()
        self.stdout.write("Stripe sandbox stopped; its state is saved.")

    # --- seed -----------------------------------------------------------------------------------

    def _seed(self, *, if_empty: bool, **options: Any) -> None:
        state_file = settings.JANITOR_SANDBOX_STATE_FILE
        customers = demo_sandbox_customers()
        if not customers:
            raise CommandError("No demo accounts to seed from: run manage.py seed_demo first.")
        sandbox = Sandbox(state_file=state_file)
        if if_empty and sandbox.load():
            if {c.id for c in customers} <= set(sandbox.customers):
                self.stdout.write(f"Sandbox state exists ({state_file}): not seeded again.")
                return
            # Left from another demo database (janitor.sqlite3 deleted, say): one story only.
            self.stdout.write(
                f"Sandbox state at {state_file} does not hold the demo accounts' customers: "
                "seeding it again."
            )
            sandbox = Sandbox(state_file=state_file)
        now = int(time.time())
        summary = sandbox_seed(
            sandbox,
            customers=customers + orphan_customers(now),
            disputes=demo_sandbox_disputes(),
        )
        sandbox.save()
        statuses = ", ".join(f"{n:,} {s}" for s, n in sorted(summary.subscriptions.items()))
        self.stdout.write(
            self.style.SUCCESS(
                f"Sandbox seeded: {summary.customers:,} customers ({summary.orphan_customers} "
                f"with no Janitor account), subscriptions: {statuses}; {summary.disputes} "
                f"disputes. State: {state_file}"
            )
        )

    # --- simulate and status (against the running sandbox) -------------------------------------

    def _simulate(
        self, *, minutes: int, drop_webhooks: float, seed: str | None, **options: Any
    ) -> None:
        if not 0 <= drop_webhooks <= 1:
            raise CommandError("--drop-webhooks is a share between 0 and 1, e.g. 0.3")
        form = {"minutes": str(minutes), "drop_webhooks": str(drop_webhooks)}
        if seed is not None:
            form["seed"] = seed
        result = self._call("POST", "/_sandbox/simulate", form)
        changes = result["changes"]
        dropped = sum(1 for c in changes if c["webhook"] == "dropped")
        self.stdout.write(
            f"{len(changes)} provider-side changes over {minutes} simulated minutes, "
            f"{dropped} with their webhooks dropped:"
        )
        for change in changes:
            events = ", ".join(change["events"])
            detail = f"  ({change['detail']})" if change["detail"] else ""
            self.stdout.write(
                f"  {change['kind']:<18} {change['customer']:<22} {change['object_id']:<28} "
                f"webhook {change['webhook']:<7} {events}{detail}"
            )
        if dropped:
            self.stdout.write(
                "Dropped webhooks reach Janitor through the catch-up (Events API, every 15 "
                "minutes) and the nightly audit; Reconciliation -> Run dry run now shows the "
                "drift now."
            )

    def _status(self, **options: Any) -> None:
        self.stdout.write(json.dumps(self._call("GET", "/_sandbox/status"), indent=2))

    def _call(self, method: str, path: str, form: dict[str, str] | None = None) -> Any:
        base = f"http://{SANDBOX_HOST}:{settings.JANITOR_SANDBOX_PORT}"
        request = urllib.request.Request(
            base + path,
            data=urllib.parse.urlencode(form).encode() if form is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise CommandError(f"The sandbox answered {exc.code}: {exc.read().decode()}") from exc
        except urllib.error.URLError as exc:
            raise CommandError(
                f"No sandbox answers on {base} ({exc.reason}): start it with `make run` "
                "or `manage.py sandbox serve`."
            ) from exc
