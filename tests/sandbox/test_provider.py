"""The sandbox as a provider: its state survives a restart, its webhooks are signed and retried
while Janitor is down or failing, it answers on loopback only and refuses unsafe starts."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from sandbox import SANDBOX_API_KEY, SANDBOX_WEBHOOK_SECRET
from sandbox.provider import Sandbox, SandboxRefused, sandbox_start_check
from sandbox.wiring import sandbox_environment
from tests.sandbox.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]


class Receiver:
    """A webhook endpoint on loopback that answers the statuses it is given, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.bodies: list[tuple[bytes, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append((body, self.headers["Stripe-Signature"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/stripe/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _signature_valid(body: bytes, header: str, secret: str) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(parts["v1"], expected.hexdigest())


def _sandbox(tmp_path: Path, webhook_url: str | None = None) -> Sandbox:
    return Sandbox(
        state_file=tmp_path / "state.json",
        webhook_url=webhook_url,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
    )


def test_its_state_survives_a_restart(tmp_path):
    first = _sandbox(tmp_path)
    first.add_customer("cus_keep", email="keep@example.test")
    first.add_subscription("sub_keep", customer="cus_keep")
    first.add_customer_dispute("dp_keep", customer="cus_keep")
    first.serve(port=0)
    first.payment_fail("sub_keep", deliver=True)  # no webhook URL: the delivery is dropped
    upload = urllib.request.Request(
        f"{first.base_url}/v1/files",
        data=b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\ndispute_evidence'
        b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="e.pdf"\r\n\r\n'
        b"%PDF-1.4 evidence\r\n--b--\r\n",
        headers={
            "Authorization": f"Bearer {SANDBOX_API_KEY}",
            "Content-Type": "multipart/form-data; boundary=b",
        },
    )
    with urllib.request.urlopen(upload) as answer:
        file_id = json.loads(answer.read())["id"]
    first.stop()

    again = _sandbox(tmp_path)
    assert again.load()
    assert again.subscription("sub_keep")["status"] == "past_due"
    assert again.customers["cus_keep"]["email"] == "keep@example.test"
    assert again.disputes["dp_keep"]["charge"] in again.charges
    assert again.file_contents[file_id] == b"%PDF-1.4 evidence"
    assert [e["type"] for e in again._events] == [
        "invoice.payment_failed",
        "customer.subscription.updated",
    ]
    # It keeps numbering where it left off: a new subscription lists first.
    again.add_subscription("sub_new", customer="cus_keep")
    assert [s["id"] for s in again.subscriptions()] == ["sub_keep", "sub_new"]


def test_a_restart_forgets_events_older_than_stripe_keeps_them(tmp_path):
    first = _sandbox(tmp_path)
    first.add_customer("cus_1")
    old = first.add_event("customer.created", first.customers["cus_1"], created=1)
    recent = first.emit("customer.updated", first.customers["cus_1"], deliver=False)
    first.save()
    again = _sandbox(tmp_path)
    assert again.load()
    assert [e["id"] for e in again._events] == [recent["id"]]
    assert old["id"] not in {e["id"] for e in again._events}


def test_webhooks_are_signed_and_retried_through_5xx_and_a_janitor_that_is_down(tmp_path):
    receiver = Receiver([503, 500])
    down_url = receiver.url.replace(
        str(receiver.server.server_address[1]), str(_free_port())
    )  # nothing listens there yet
    sandbox = _sandbox(tmp_path, webhook_url=receiver.url)
    sandbox.add_customer("cus_1")
    sandbox.add_subscription("sub_1", customer="cus_1")
    sandbox.serve(port=0)
    try:
        (event_id,) = sandbox.subscription_cancel("sub_1")
        wait_for(lambda: sandbox.pending_deliveries() == 0, what="the delivery")
        assert len(receiver.bodies) == 3  # 503, 500, then 200
        for body, header in receiver.bodies:
            assert _signature_valid(body, header, SANDBOX_WEBHOOK_SECRET)
            event = json.loads(body)
            assert (event["id"], event["type"]) == (event_id, "customer.subscription.deleted")
            assert event["data"]["object"]["status"] == "canceled"
        assert (sandbox.counters.retried, sandbox.counters.delivered) == (2, 1)

        sandbox.webhook_url = down_url
        sandbox.resubscribe("cus_1")
        wait_for(lambda: sandbox.counters.retried >= 4, what="retries against a closed port")
        assert sandbox.pending_deliveries() == 1
        assert "connection failed" in sandbox.status()["recent"][-1]["detail"]
        sandbox.webhook_url = receiver.url  # Janitor is back
        wait_for(lambda: sandbox.pending_deliveries() == 0, what="the catch-up delivery")
        assert json.loads(receiver.bodies[-1][0])["type"] == "customer.subscription.created"
    finally:
        sandbox.stop()
        receiver.close()


def test_a_4xx_answer_is_not_retried(tmp_path):
    receiver = Receiver([400])
    sandbox = _sandbox(tmp_path, webhook_url=receiver.url)
    sandbox.add_customer("cus_1")
    sandbox.add_subscription("sub_1", customer="cus_1")
    sandbox.serve(port=0)
    try:
        sandbox.subscription_cancel("sub_1")
        wait_for(lambda: sandbox.pending_deliveries() == 0, what="the delivery")
        assert (len(receiver.bodies), sandbox.counters.failed) == (1, 1)
    finally:
        sandbox.stop()
        receiver.close()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_it_answers_on_loopback_only_and_its_control_endpoints_need_the_key(tmp_path):
    sandbox = _sandbox(tmp_path).serve(port=0)
    try:
        assert sandbox._server is not None
        assert sandbox._server.server_address[0] == "127.0.0.1"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{sandbox.base_url}/_sandbox/status")
        assert refused.value.code == 401
        wrong_key = urllib.request.Request(
            f"{sandbox.base_url}/_sandbox/status", headers={"Authorization": "Bearer sk_test_x"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong_key)
        assert refused.value.code == 401
    finally:
        sandbox.stop()


@pytest.mark.parametrize(
    ("debug", "key", "host", "why"),
    [
        (False, SANDBOX_API_KEY, "127.0.0.1", "DJANGO_DEBUG=true"),
        (True, "sk_live_123", "127.0.0.1", "live Stripe key"),
        (True, "rk_live_123", "127.0.0.1", "live Stripe key"),
        (True, SANDBOX_API_KEY, "0.0.0.0", "only on 127.0.0.1"),
    ],
)
def test_the_start_check_refuses_what_is_unsafe(debug, key, host, why):
    with pytest.raises(SandboxRefused, match=why):
        sandbox_start_check(debug=debug, api_key=key, host=host)


def test_the_command_refuses_a_live_key_and_production_mode(settings, tmp_path):
    settings.JANITOR_SANDBOX_STATE_FILE = tmp_path / "state.json"
    settings.DEBUG = True
    settings.STRIPE_API_KEY = "sk_live_real"
    with pytest.raises(CommandError, match="live Stripe key"):
        call_command("sandbox", "serve")
    settings.STRIPE_API_KEY = SANDBOX_API_KEY
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG=true"):
        call_command("sandbox", "seed")
    assert not settings.JANITOR_SANDBOX_STATE_FILE.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"DJANGO_DEBUG": "false"}, "needs DJANGO_DEBUG=true"),
        ({"STRIPE_API_KEY": "sk_live_real"}, "with a real STRIPE_API_KEY"),
    ],
)
def test_janitor_will_not_start_in_sandbox_mode_in_production_or_with_a_real_key(extra, message):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_"))},
        "DJANGO_DEBUG": "true",
        "DJANGO_SECRET_KEY": "s" * 20 + "e" * 20 + "c" * 20 + "r0x9-k",
        "DJANGO_SETTINGS_MODULE": "janitor.settings",
        **sandbox_environment(port=_free_port()),
        **extra,
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert message in done.stderr


@pytest.mark.django_db
def test_the_top_bar_says_sandbox_on_every_page_in_sandbox_mode(settings, client, admin_user):
    settings.JANITOR_SANDBOX = True
    assert 'class="sandbox-badge"' in client.get("/login/").content.decode()
    client.force_login(admin_user)
    for path in ("/", "/reconciliation/", "/webhooks/", "/disputes/"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert 'class="sandbox-badge"' in page.content.decode(), path
    settings.JANITOR_SANDBOX = False
    assert 'class="sandbox-badge"' not in client.get("/").content.decode()


@pytest.mark.django_db
def test_sandbox_seed_matches_the_demo_accounts(settings, tmp_path, capsys):
    from accounts.models import Account
    from reconciliation.models import Dispute, Subscription

    settings.JANITOR_SANDBOX_STATE_FILE = tmp_path / "state.json"
    settings.STRIPE_API_KEY = SANDBOX_API_KEY
    settings.DEBUG = True  # pytest-django runs tests with DEBUG off; the sandbox needs it on
    call_command("seed_demo", verbosity=0)
    call_command("sandbox", "seed", "--if-empty")
    assert "Sandbox seeded" in capsys.readouterr().out
    sandbox = _sandbox(tmp_path)
    assert sandbox.load()
    served = {s["id"]: s for s in sandbox.subscriptions()}
    mirrored = dict(Subscription.objects.values_list("provider_id", "status"))
    # Every subscription the app mirrors is served with the same status; the rest are the
    # customers no account matches.
    assert {k: served[k]["status"] for k in mirrored} == mirrored
    orphans = {s["customer"] for k, s in served.items() if k not in mirrored}
    assert orphans and not Account.objects.filter(stripe_customer_id__in=orphans).exists()
    # Manual grants have no customer at all.
    assert Account.objects.filter(stripe_customer_id="", subscriptions__isnull=True).count() == 35
    # Disputes: the app's, on charges the sandbox holds (invoice, payment intent, charge).
    dispute_ids = set(Dispute.objects.values_list("provider_id", flat=True))
    assert set(sandbox.disputes) == dispute_ids
    for dispute in sandbox.disputes.values():
        charge = sandbox.charges[dispute["charge"]]
        assert charge["payment_intent"] in sandbox.payment_intents
    due = sorted(
        d["evidence_details"]["due_by"]
        for d in sandbox.disputes.values()
        if d["status"] in {"needs_response", "warning_needs_response"}
    )
    now = time.time()
    assert due[0] < now  # one past due
    assert now + 18 * 86_400 < due[-1] < now + 22 * 86_400  # spread over three weeks
    # Their created events wait to be delivered when it serves.
    assert sandbox.pending_deliveries() == len(dispute_ids)

    call_command("sandbox", "seed", "--if-empty")
    assert "not seeded again" in capsys.readouterr().out

    # A state file left from another demo database is replaced, not served beside this one.
    stale = _sandbox(tmp_path)
    stale.add_customer("cus_from_another_demo")
    stale.save()
    call_command("sandbox", "seed", "--if-empty")
    assert "seeding it again" in capsys.readouterr().out
    reseeded = _sandbox(tmp_path)
    assert reseeded.load() and "cus_from_another_demo" not in reseeded.customers
    assert set(reseeded.disputes) == dispute_ids


def test_simulate_prints_what_it_did_in_the_running_sandbox(settings, tmp_path, capsys):
    sandbox = _sandbox(tmp_path)
    for k in range(12):
        sandbox.add_customer(f"cus_{k}")
        sandbox.add_subscription(f"sub_{k}", customer=f"cus_{k}")
    sandbox.serve(port=0)
    assert sandbox._server is not None
    settings.JANITOR_SANDBOX_PORT = sandbox._server.server_address[1]
    settings.DEBUG = True  # pytest-django runs tests with DEBUG off; the sandbox needs it on
    try:
        call_command("sandbox", "simulate", "--minutes", "8", "--drop-webhooks", "1", "--seed", "3")
    finally:
        sandbox.stop()
    out = capsys.readouterr().out
    assert "8 provider-side changes over 8 simulated minutes, 8 with their webhooks dropped" in out
    assert out.count("webhook dropped") == 8
    changed = [s for s in sandbox.subscriptions() if s["status"] != "active"]
    assert changed or len(sandbox.disputes) > 0
    # Each change's events were dropped (a failed payment has two: invoice and subscription).
    assert sandbox.counters.dropped >= 8 and sandbox.pending_deliveries() == 0


def test_every_event_the_sandbox_sends_has_stripes_shape(tmp_path):
    """The contract test (tests/fakes/test_contract.py) for what only the sandbox makes: the
    events of its provider-side changes and the objects inside them."""
    import random

    from sandbox.fixtures import stripe_fixture
    from tests.fakes.contract import contract_violations

    sandbox = _sandbox(tmp_path)
    for k in range(30):
        sandbox.add_customer(f"cus_{k}")
        sandbox.add_subscription(f"sub_{k}", customer=f"cus_{k}")
    sandbox.simulate(minutes=30, drop_rate=0, rng=random.Random(5))
    sandbox.simulate(minutes=30, drop_rate=0, rng=random.Random(6))  # recoveries, resubscribes
    types = {event["type"] for event in sandbox._events}
    assert types >= {
        "customer.subscription.deleted",
        "customer.subscription.updated",
        "customer.subscription.created",
        "invoice.payment_failed",
        "invoice.paid",
        "charge.dispute.created",
    }
    for event in sandbox._events:
        assert contract_violations(event, stripe_fixture("event")) == [], event["type"]
        inner = event["data"]["object"]
        assert contract_violations(inner, stripe_fixture(inner["object"])) == [], event["type"]
