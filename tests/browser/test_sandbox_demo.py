"""Each role's main path in the demo, in real Chromium, against the Stripe sandbox started the
way `make run` starts it: `manage.py sandbox seed` and `manage.py sandbox serve` as processes of
their own, with sandbox/wiring.py's environment, delivering webhooks to the live server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.core.management import call_command
from django.db import connection
from playwright.sync_api import expect

from accounts.models import AccessStatus, Account, User
from janitor.demo import DEMO_PASSWORD, STAFF_REVOKED_PAYING
from reconciliation.gateway import request_rate_reset
from reconciliation.models import (
    Dispute,
    Flag,
    FlagKind,
    ReconciliationRun,
    RunStatus,
    WebhookEvent,
    WebhookStatus,
)
from sandbox import SANDBOX_API_KEY
from sandbox.wiring import sandbox_environment

REPO = Path(__file__).resolve().parents[2]

# The sandbox runs in processes of its own that read the test database: PostgreSQL only.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _test_database_url() -> str:
    """DATABASE_URL with the test database's name, for the sandbox's own processes."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{connection.settings_dict['NAME']}"))


class SandboxProcess:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = env
        self.base = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[str] | None = None

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def serve(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "sandbox", "serve"],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.wait_until(lambda status: status["deliveries_pending"] == 0, "seeded webhooks")

    def status(self) -> dict[str, Any] | None:
        request = urllib.request.Request(
            f"{self.base}/_sandbox/status", headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return dict(json.loads(answer.read()))
        except (urllib.error.URLError, ConnectionError):
            return None

    def wait_until(self, condition: Any, what: str, seconds: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process is None or self.process.poll() is None, self.output()
            status = self.status()
            if status is not None and condition(status):
                return status
            time.sleep(0.1)
        raise AssertionError(f"the sandbox never showed {what}: {self.status()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def output(self) -> str:
        if self.process is None or self.process.stdout is None:
            return ""
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stdout.read()


@pytest.fixture
def demo_sandbox(settings: Any, live_server: Any, tmp_path: Path) -> Iterator[SandboxProcess]:
    """The demo on both sides, as `make run` prepares it, with the sandbox serving."""
    call_command("seed_demo", verbosity=0)
    port = _free_port()
    wiring = sandbox_environment(port=port)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        **wiring,
        "DJANGO_DEBUG": "true",
        "DJANGO_SETTINGS_MODULE": "janitor.settings",
        "DATABASE_URL": _test_database_url(),
        "JANITOR_SANDBOX_STATE_FILE": str(tmp_path / "sandbox-state.json"),
        "JANITOR_PUBLIC_URL": live_server.url,
    }
    # The live server is this process: it gets the same wiring through settings.
    settings.JANITOR_SANDBOX = True
    settings.STRIPE_API_BASE = wiring["STRIPE_API_BASE"]
    settings.STRIPE_API_KEY = wiring["STRIPE_API_KEY"]
    settings.STRIPE_WEBHOOK_SECRETS = [wiring["STRIPE_WEBHOOK_SECRET"]]
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 10
    settings.JANITOR_STRIPE_MAX_RPS = 1000
    request_rate_reset()
    sandbox = SandboxProcess(env, port)
    assert "Sandbox seeded" in sandbox.manage("sandbox", "seed", "--if-empty")
    sandbox.serve()
    try:
        yield sandbox
    finally:
        sandbox.stop()
        request_rate_reset()


def _sign_in(page: Any, live_server: Any, email: str) -> None:
    page.goto(f"{live_server.url}/login/")
    expect(page.locator(".sandbox-badge")).to_have_text("Sandbox")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def _count(page: Any, outcome: str) -> int:
    return int(page.locator(f"#run-counts [data-count-outcome={outcome}] td.num").inner_text())


def test_admin_dry_run_finds_the_seeded_drift_a_real_run_halts_and_is_applied(
    page, live_server, demo_sandbox
):
    _sign_in(page, live_server, "admin@janitor.local")
    page.goto(f"{live_server.url}/reconciliation/")
    expect(page.locator(".sandbox-badge")).to_have_text("Sandbox")
    # Two weeks of nightly runs before this one.
    assert ReconciliationRun.objects.filter(triggered_by="demo").count() == 14

    page.get_by_role("button", name="Run dry run now").click()
    expect(page.locator("#run-started [data-run-status]")).to_have_text("Dry run")
    dry = ReconciliationRun.objects.exclude(triggered_by="demo").get()
    page.goto(f"{live_server.url}/reconciliation/runs/{dry.pk}/")
    # The drift the sandbox was seeded with (janitor/demo.py PROFILES), found at the provider.
    assert _count(page, "payment_failed") == 40  # past_due at Stripe, active in the app
    assert _count(page, "start_grace") == 45  # canceled at Stripe, active in the app
    assert _count(page, "reactivate") == 15  # paying at Stripe, locked in the app
    assert _count(page, "flag_mismatch") == STAFF_REVOKED_PAYING  # ... locked by staff
    assert _count(page, "flag_manual_grant") == 35  # granted by hand, no customer
    assert Account.objects.filter(access_status=AccessStatus.GRACE_PERIOD).count() == 60

    # The real run finds the same and halts: about 6% of accounts would change.
    page.goto(f"{live_server.url}/reconciliation/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Run now", exact=True).click()
    expect(page.locator("#run-started [data-run-status]")).to_have_text(
        "Halted by the safety brake"
    )
    halted = ReconciliationRun.objects.get(status=RunStatus.HALTED)
    page.goto(f"{live_server.url}/reconciliation/runs/{halted.pk}/")
    expect(page.locator("[data-halt-reason]")).to_contain_text(
        "Safety brake: 100 of 1862 accounts with access would change access status (5.4%"
    )
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Apply these outcomes").click()
    expect(page.locator(f"#run-status-{halted.pk} [data-run-status]")).to_have_text("Applied")
    assert Account.objects.filter(access_status=AccessStatus.GRACE_PERIOD).count() == 60 + 85

    # A dead-lettered event replays against the sandbox and puts its account in grace.
    dead = WebhookEvent.objects.filter(status=WebhookStatus.DEAD).order_by("pk").first()
    assert dead is not None
    page.goto(f"{live_server.url}/webhooks/{dead.pk}/")
    page.click("text=Replay this event")
    page.wait_for_selector("text=was sent for processing again")
    dead.refresh_from_db()
    assert dead.status == WebhookStatus.PROCESSED


def test_support_resolves_a_flag_the_drift_produced(page, live_server, demo_sandbox, settings):
    # Last night's run found the drift at the sandbox (applied at once, as on a night under
    # the brake) and opened flags; Support works one of them.
    settings.JANITOR_AUDIT_MAX_CHANGE_RATIO = 1.0
    call_command("reconcile", verbosity=0)
    flag = (
        Flag.objects.filter(kind=FlagKind.PAYMENT_FAILED, opened_by_run__isnull=False)
        .select_related("account")
        .order_by("account__email")
        .first()
    )
    assert flag is not None and flag.account.access_status == AccessStatus.GRACE_PERIOD
    support = User.objects.get(email="support@janitor.local")

    _sign_in(page, live_server, "support@janitor.local")
    page.goto(f"{live_server.url}/queue/?q={flag.account.email}")
    row = page.locator(f"#flag-{flag.pk}")
    expect(row).to_contain_text("Payment failed")
    row.locator("a.open-actions").click()
    row.locator("summary", has_text="Add note").click()
    row.locator("textarea[name=body]").fill("Card expired; the customer is updating it.")
    row.locator("button", has_text="Save note").click()
    expect(page.locator(f"#flag-{flag.pk} .notes")).to_contain_text("Card expired")
    row = page.locator(f"#flag-{flag.pk}")
    row.locator("summary", has_text="Resolve").click()
    row.locator("input[name=resolution]").fill("Customer contacted; grace period running")
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button", has_text="Resolve").click()
    expect(page.locator(f"#flag-{flag.pk}")).to_contain_text("Customer contacted")

    flag.refresh_from_db()
    assert flag.status == "resolved" and flag.resolved_by == support.email
    assert list(flag.notes.values_list("body", flat=True))[:1] == [
        "Card expired; the customer is updating it."
    ]


def test_finance_stages_and_submits_evidence_and_the_sandbox_records_it(
    page, live_server, demo_sandbox
):
    dispute = (
        Dispute.objects.filter(status="needs_response", due_by__gt=time_now())
        .order_by("due_by")
        .first()
    )
    assert dispute is not None
    # The sandbox's own charge came back with the dispute's created webhook.
    assert dispute.charge_id.startswith("ch_") and not dispute.charge_id.startswith("ch_demo")

    _sign_in(page, live_server, "finance@janitor.local")
    page.goto(f"{live_server.url}/disputes/")
    page.get_by_role("link", name=dispute.provider_id).click()
    page.wait_for_url(f"**/disputes/{dispute.provider_id}/")
    page.click("#stage-evidence")
    page.get_by_text("Evidence staged on Stripe (not submitted)").wait_for()
    staged = demo_sandbox.wait_until(
        lambda s: s["disputes"][dispute.provider_id]["has_evidence"], "staged evidence"
    )["disputes"][dispute.provider_id]
    assert (staged["status"], staged["submission_count"]) == ("needs_response", 0)

    page.on("dialog", lambda dialog: dialog.accept())
    page.check("input[name=confirm]")
    page.click("#submit-evidence")
    page.get_by_text("Evidence submitted to Stripe.").wait_for()
    # The sandbox recorded it and shows the dispute under review; its webhook says so too.
    demo_sandbox.wait_until(
        lambda s: (
            s["disputes"][dispute.provider_id]["status"] == "under_review"
            and s["disputes"][dispute.provider_id]["submission_count"] == 1
            and s["deliveries_pending"] == 0
        ),
        "the submitted dispute under review",
    )
    dispute.refresh_from_db()
    assert (dispute.status, dispute.submission_count) == ("under_review", 1)
    page.reload()
    expect(page.locator("h1")).to_contain_text("Under review")


def time_now() -> Any:
    from django.utils import timezone

    return timezone.now()
