"""The demo's Stripe: the suite's StripeFake on a fixed loopback port, with its state in a file,
every change it makes delivered to Janitor as a signed webhook, and provider-side changes on
demand (simulate). Control endpoints under /_sandbox/ take the same API key as the API."""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import random
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox import SANDBOX_API_KEY, SANDBOX_HOST, SANDBOX_WEBHOOK_SECRET
from sandbox.signing import stripe_signature_header
from sandbox.stripe_fake import (
    ENDED_STATUSES,
    Files,
    Json,
    Params,
    RawJson,
    StripeApiError,
    StripeFake,
    _Handler,
    _new_id,
    _now,
    _Server,
    invoice_object,
)

logger = logging.getLogger("janitor.sandbox")

STATE_VERSION = 1
# Stripe retries a failed delivery for three days; the sandbox backs off the same way, faster.
DELIVERY_RETRY_BASE_SECONDS = 2.0
DELIVERY_RETRY_MAX_SECONDS = 120.0
DELIVERY_GIVE_UP_SECONDS = 3 * 86_400
DELIVERY_TIMEOUT_SECONDS = 10.0
# Stripe's Events API keeps 30 days; so does the sandbox's state file (a demo left running for
# months does not grow without end).
EVENT_RETENTION_SECONDS = 30 * 86_400
GRANTING = frozenset({"active", "trialing"})


class SandboxRefused(Exception):
    """The sandbox will not start in this configuration (production mode, a live key)."""


def sandbox_start_check(*, debug: bool, api_key: str, host: str) -> None:
    """Refuse what would make the sandbox dangerous: it is for development on one machine."""
    if not debug:
        raise SandboxRefused("the sandbox runs only with DJANGO_DEBUG=true (development mode).")
    if api_key.startswith(("sk_live_", "rk_live_")):
        raise SandboxRefused("a live Stripe key is set: the sandbox never stands in for Stripe.")
    if host != SANDBOX_HOST:
        raise SandboxRefused(f"the sandbox answers only on 127.0.0.1, not {host}.")


@dataclass
class Delivery:
    """One event on its way to Janitor's webhook endpoint."""

    event_id: str
    due_at: float
    attempts: int = 0
    last_error: str = ""


@dataclass
class DeliveryOutcome:
    event_id: str
    type: str
    at: float
    status: str  # delivered, retrying, failed, dropped
    detail: str = ""


@dataclass
class Change:
    """One provider-side change simulate made, for its printout."""

    kind: str
    customer: str
    object_id: str
    events: list[str]
    webhook: str  # "sent" or "dropped"
    detail: str = ""

    def line(self) -> str:
        return (
            f"{self.kind:<18} {self.customer:<20} {self.object_id:<26} "
            f"webhook {self.webhook:<7} {', '.join(self.events)}"
            + (f"  ({self.detail})" if self.detail else "")
        )


@dataclass
class _Counters:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    dropped: int = 0
    recent: deque[DeliveryOutcome] = field(default_factory=lambda: deque(maxlen=200))


class Sandbox(StripeFake):
    """A StripeFake that persists, delivers webhooks and drifts like a real Stripe account."""

    def __init__(
        self,
        *,
        state_file: Path | None = None,
        webhook_url: str | None = None,
        webhook_secret: str = SANDBOX_WEBHOOK_SECRET,
        api_key: str | None = SANDBOX_API_KEY,
        retry_base_seconds: float = DELIVERY_RETRY_BASE_SECONDS,
        retry_max_seconds: float = DELIVERY_RETRY_MAX_SECONDS,
    ) -> None:
        self.state_file = state_file
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self._deliveries: list[Delivery] = []
        self.counters = _Counters()
        self._dirty = False
        self._wake = threading.Event()
        self._deliverer: threading.Thread | None = None
        super().__init__(api_key=api_key)
        # A long-running process must not keep every request it ever answered.
        self.record_requests = False

    # --- lifecycle ----------------------------------------------------------------------------

    def serve(self, *, port: int) -> Sandbox:
        """Start on 127.0.0.1:`port` (never another interface) and start delivering."""
        if self._server is not None:
            return self
        handler = type("BoundHandler", (_Handler,), {"fake": self})
        self._stopping.clear()
        self._server = _Server((SANDBOX_HOST, port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="sandbox",
            daemon=True,
        )
        self._thread.start()
        self._deliverer = threading.Thread(target=self._deliver_loop, name="sandbox-webhooks")
        self._deliverer.daemon = True
        self._deliverer.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        super().stop()
        if self._deliverer is not None:
            self._deliverer.join(timeout=DELIVERY_TIMEOUT_SECONDS + 1)
            self._deliverer = None
        self.save()

    # --- state file ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the sandbox holds, as JSON-ready data (file contents in base64)."""
        with self._lock:
            if self._blocks:
                raise ValueError("bulk subscriptions are not saved: the sandbox never adds them")
            ordinals = sorted(self._single_subscriptions)
            return copy.deepcopy(
                {
                    "version": STATE_VERSION,
                    "customers": self.customers,
                    "subscriptions": [self._single_subscriptions[o] for o in ordinals],
                    "charges": self.charges,
                    "payment_intents": self.payment_intents,
                    "invoices": self.invoices,
                    "invoice_payments": self.invoice_payments,
                    "disputes": self.disputes,
                    "files": self.files,
                    "file_contents": {
                        k: base64.b64encode(v).decode() for k, v in self.file_contents.items()
                    },
                    "events": self._events,
                    "deliveries": [asdict(d) for d in self._deliveries],
                }
            )

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"sandbox state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        with self._lock:
            self.reset()
            self.customers = state["customers"]
            for subscription in state["subscriptions"]:
                ordinal = self._subscription_count
                self._subscription_count += 1
                self._single_subscriptions[ordinal] = subscription
                self._single_ordinals[subscription["id"]] = ordinal
            self.charges = state["charges"]
            self.payment_intents = state["payment_intents"]
            self.invoices = state["invoices"]
            self.invoice_payments = state["invoice_payments"]
            self.disputes = state["disputes"]
            self.files = state["files"]
            self.file_contents = {k: base64.b64decode(v) for k, v in state["file_contents"].items()}
            self._deliveries = [Delivery(**d) for d in state["deliveries"]]
            waiting = {d.event_id for d in self._deliveries}
            horizon = time.time() - EVENT_RETENTION_SECONDS
            self._events = [
                e for e in state["events"] if e["created"] >= horizon or e["id"] in waiting
            ]
            self._event_order = None

    def load(self) -> bool:
        """Read the state file, if there is one; True if it was read."""
        if self.state_file is None or not self.state_file.exists():
            return False
        self.restore(json.loads(self.state_file.read_text()))
        return True

    def save(self) -> None:
        """Write the state file whole, atomically (a crash leaves the previous one)."""
        if self.state_file is None:
            return
        data = json.dumps(self.snapshot(), separators=(",", ":")).encode()
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".sandbox-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temp, self.state_file)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        with self._lock:
            self._dirty = False

    def _changed(self) -> None:
        self._dirty = True
        self._wake.set()

    # --- events and their delivery ------------------------------------------------------------

    def emit(self, type: str, obj: dict[str, Any], *, deliver: bool = True) -> dict[str, Any]:
        """Record an event about a snapshot of `obj` (listed by /v1/events) and send it to
        Janitor unless `deliver` is False (a dropped webhook: only the Events API has it)."""
        with self._lock:
            event = self.add_event(type, copy.deepcopy(obj))
            if deliver:
                self._deliveries.append(Delivery(event_id=event["id"], due_at=time.time()))
            else:
                event["pending_webhooks"] = 0
                self.counters.dropped += 1
                self.counters.recent.append(
                    DeliveryOutcome(event["id"], type, time.time(), "dropped")
                )
            self._changed()
        return event

    def pending_deliveries(self) -> int:
        with self._lock:
            return len(self._deliveries)

    def _deliver_loop(self) -> None:
        while not self._stopping.is_set():
            due = self._next_due()
            if due is None:
                if self._dirty:
                    self._save_quietly()
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            self._deliver(due)

    def _next_due(self) -> Delivery | None:
        with self._lock:
            now = time.time()
            for delivery in self._deliveries:
                if delivery.due_at <= now:
                    return delivery
        return None

    def _save_quietly(self) -> None:
        try:
            self.save()
        except OSError as exc:
            logger.error("sandbox state not saved: %s", exc)

    def _deliver(self, delivery: Delivery) -> None:
        with self._lock:
            event = self._events_by_id().get(delivery.event_id)
        if event is None or not self.webhook_url:
            with self._lock:
                self._deliveries.remove(delivery)
            return
        body = json.dumps(event).encode()
        request = urllib.request.Request(
            self.webhook_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": stripe_signature_header(body, self.webhook_secret),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks) janitor-sandbox",
            },
        )
        status: int | None = None
        try:
            with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_SECONDS) as answer:
                status = answer.status
            error = ""
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            error = f"connection failed: {getattr(exc, 'reason', exc)}"
        with self._lock:
            delivery.attempts += 1
            delivery.last_error = error
            if status is not None and 200 <= status < 300:
                self._deliveries.remove(delivery)
                event["pending_webhooks"] = 0
                self.counters.delivered += 1
                outcome = DeliveryOutcome(event["id"], event["type"], time.time(), "delivered")
            elif (status is None or status >= 500) and (
                time.time() - event["created"] < DELIVERY_GIVE_UP_SECONDS
            ):
                # Janitor is down or failing: it will catch up, so try again later.
                wait = min(
                    self.retry_base_seconds * 2 ** (delivery.attempts - 1), self.retry_max_seconds
                )
                delivery.due_at = time.time() + wait
                self.counters.retried += 1
                outcome = DeliveryOutcome(
                    event["id"], event["type"], time.time(), "retrying", f"{error}; in {wait:.0f} s"
                )
            else:
                # A 4xx (a bad signature, an unusable body) will not get better by retrying.
                self._deliveries.remove(delivery)
                self.counters.failed += 1
                outcome = DeliveryOutcome(event["id"], event["type"], time.time(), "failed", error)
            self.counters.recent.append(outcome)
            self._changed()
        logger.info("webhook %s %s %s %s", event["id"], event["type"], outcome.status, error)

    def _events_by_id(self) -> dict[str, dict[str, Any]]:
        return {event["id"]: event for event in self._events}

    # --- provider-side changes ----------------------------------------------------------------

    def subscriptions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._single_subscriptions[o] for o in sorted(self._single_subscriptions)]

    def subscription_cancel(self, id: str, *, deliver: bool = True) -> list[str]:
        with self._lock:
            subscription = self.set_subscription_status(id, "canceled")
            return [self.emit("customer.subscription.deleted", subscription, deliver=deliver)["id"]]

    def payment_fail(self, id: str, *, deliver: bool = True) -> list[str]:
        """A renewal payment fails: the invoice stays open, the subscription goes past_due."""
        with self._lock:
            subscription = self.set_subscription_status(id, "past_due")
            invoice = self._renewal_invoice(subscription, paid=False)
            return [
                self.emit("invoice.payment_failed", invoice, deliver=deliver)["id"],
                self.emit("customer.subscription.updated", subscription, deliver=deliver)["id"],
            ]

    def payment_recover(self, id: str, *, deliver: bool = True) -> list[str]:
        """A retried payment succeeds: the invoice is paid, the subscription active again."""
        with self._lock:
            subscription = self.set_subscription_status(id, "active")
            invoice = self._renewal_invoice(subscription, paid=True)
            return [
                self.emit("invoice.paid", invoice, deliver=deliver)["id"],
                self.emit("customer.subscription.updated", subscription, deliver=deliver)["id"],
            ]

    def resubscribe(self, customer: str, *, deliver: bool = True, **fields: Any) -> list[str]:
        with self._lock:
            subscription = self.add_subscription(customer=customer, status="active", **fields)
            self._changed()
            return [self.emit("customer.subscription.created", subscription, deliver=deliver)["id"]]

    def dispute_open(
        self, customer: str, *, due_in_days: float, deliver: bool = True, **dispute: Any
    ) -> tuple[dict[str, Any], list[str]]:
        """A chargeback on the customer's latest subscription charge, as Stripe opens one."""
        with self._lock:
            opened = self.add_customer_dispute(
                customer=customer, due_by=int(time.time() + due_in_days * 86_400), **dispute
            )
            return opened, [self.emit("charge.dispute.created", opened, deliver=deliver)["id"]]

    def _renewal_invoice(self, subscription: dict[str, Any], *, paid: bool) -> dict[str, Any]:
        item = subscription["items"]["data"][0]
        amount = item["price"]["unit_amount"] or 0
        now = _now()
        invoice = invoice_object(
            id=_new_id("in"),
            customer=subscription["customer"],
            subscription=subscription["id"],
            amount=amount,
            currency=subscription["currency"],
            created=now,
            period_start=now,
            period_end=now + 30 * 86_400,
        )
        if not paid:
            invoice.update(
                status="open",
                amount_paid=0,
                amount_remaining=amount,
                next_payment_attempt=now + 3 * 86_400,
            )
        self.invoices[invoice["id"]] = invoice
        return invoice

    def simulate(
        self, *, minutes: int, drop_rate: float, rng: random.Random | None = None
    ) -> list[Change]:
        """About one provider-side change per simulated minute, each on its own customer:
        cancellations, failed payments and recoveries, resubscriptions, new disputes. Each
        change's webhooks are dropped with probability `drop_rate` (the Events API keeps them)."""
        rng = rng or random.Random()
        changes: list[Change] = []
        with self._lock:
            by_customer: dict[str, list[dict[str, Any]]] = {}
            for subscription in self.subscriptions():
                by_customer.setdefault(subscription["customer"], []).append(subscription)
            touched: set[str] = set()
            plan = ["cancel", "fail", "fail", "recover", "resubscribe", "dispute"]
            for _ in range(max(1, minutes)):
                # The drawn kind of change, or the next one some customer can still take.
                first = rng.randrange(len(plan))
                for kind in plan[first:] + plan[:first]:
                    candidates = [
                        c
                        for c, subs in by_customer.items()
                        if c not in touched and self._fits(kind, subs)
                    ]
                    if candidates:
                        break
                else:
                    break  # every customer has changed once already
                customer = rng.choice(sorted(candidates))
                touched.add(customer)
                deliver = rng.random() >= drop_rate
                changes.append(self._change(kind, customer, by_customer[customer], deliver, rng))
            self._changed()
        return changes

    @staticmethod
    def _fits(kind: str, subscriptions: list[dict[str, Any]]) -> bool:
        statuses = {s["status"] for s in subscriptions}
        if kind in {"cancel", "fail", "dispute"}:
            return "active" in statuses
        if kind == "recover":
            return "past_due" in statuses
        return bool(statuses) and statuses <= ENDED_STATUSES  # resubscribe

    def _change(
        self,
        kind: str,
        customer: str,
        subscriptions: list[dict[str, Any]],
        deliver: bool,
        rng: random.Random,
    ) -> Change:
        webhook = "sent" if deliver else "dropped"
        if kind == "recover":
            target = next(s for s in subscriptions if s["status"] == "past_due")
            events = self.payment_recover(target["id"], deliver=deliver)
            return Change("payment recovered", customer, target["id"], events, webhook)
        if kind == "resubscribe":
            latest = subscriptions[-1]["items"]["data"][0]["price"]
            events = self.resubscribe(
                customer,
                deliver=deliver,
                price_id=latest["id"],
                amount=latest["unit_amount"] or 0,
            )
            new = self.subscriptions()[-1]
            subscriptions.append(new)
            return Change("resubscribed", customer, new["id"], events, webhook)
        target = next(s for s in subscriptions if s["status"] == "active")
        if kind == "cancel":
            events = self.subscription_cancel(target["id"], deliver=deliver)
            return Change("canceled", customer, target["id"], events, webhook)
        if kind == "fail":
            events = self.payment_fail(target["id"], deliver=deliver)
            return Change("payment failed", customer, target["id"], events, webhook)
        due_in = rng.uniform(3, 21)
        amount = target["items"]["data"][0]["price"]["unit_amount"] or 1500
        dispute, events = self.dispute_open(
            customer,
            due_in_days=due_in,
            deliver=deliver,
            amount=amount,
            reason=rng.choice(["fraudulent", "subscription_canceled", "unrecognized"]),
        )
        return Change(
            "dispute opened", customer, dispute["id"], events, webhook, f"due in {due_in:.0f} days"
        )

    # --- the API, and the sandbox's own endpoints ---------------------------------------------

    def _update_dispute(self, id: str, *, params: Params, files: Files) -> Json:
        dispute = super()._update_dispute(id, params=params, files=files)
        # Stripe tells the endpoint about staged and submitted evidence alike.
        self.emit("charge.dispute.updated", dispute)
        return dispute

    def _create_file(self, *, params: Params, files: Files) -> Json:
        uploaded = super()._create_file(params=params, files=files)
        self._changed()
        return uploaded

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        form: dict[str, str],
        files: dict[str, bytes],
    ) -> Json | RawJson:
        if path == "/_sandbox/status" and method == "GET":
            return self.status()
        if path == "/_sandbox/simulate" and method == "POST":
            try:
                minutes = int(form.get("minutes", "10"))
                drop_rate = float(form.get("drop_webhooks", "0"))
                seed = form.get("seed")
            except ValueError:
                raise StripeApiError(
                    400, "minutes must be an integer, drop_webhooks a number"
                ) from None
            if not (1 <= minutes <= 1440 and 0 <= drop_rate <= 1):
                raise StripeApiError(400, "minutes must be 1-1440 and drop_webhooks 0-1")
            rng = random.Random(seed) if seed is not None else None
            changes = self.simulate(minutes=minutes, drop_rate=drop_rate, rng=rng)
            return {"object": "sandbox.simulation", "changes": [asdict(c) for c in changes]}
        return super()._route(method, path, query, form, files)

    def status(self) -> dict[str, Any]:
        with self._lock:
            counts: dict[str, int] = {}
            for subscription in self._single_subscriptions.values():
                counts[subscription["status"]] = counts.get(subscription["status"], 0) + 1
            return {
                "object": "sandbox.status",
                "customers": len(self.customers),
                "subscriptions": counts,
                "disputes": {
                    d["id"]: {
                        "status": d["status"],
                        "has_evidence": d["evidence_details"]["has_evidence"],
                        "submission_count": d["evidence_details"]["submission_count"],
                        "due_by": d["evidence_details"]["due_by"],
                    }
                    for d in self.disputes.values()
                },
                "events": len(self._events),
                "webhook_url": self.webhook_url,
                "deliveries_pending": len(self._deliveries),
                "delivered": self.counters.delivered,
                "retried": self.counters.retried,
                "failed": self.counters.failed,
                "dropped": self.counters.dropped,
                "recent": [asdict(o) for o in list(self.counters.recent)[-20:]],
            }
