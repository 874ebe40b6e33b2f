"""Drill: the provider fails during the audit (5xx, 429, timeouts, an empty listing)."""

from __future__ import annotations

import argparse
import sys
import time

from _harness import customer_accounts_create, drill_start, finish, log

TIMEOUT_SECONDS = 1


def snapshot() -> tuple[dict, int]:
    from accounts.models import AccessAudit, Account

    states = {
        pk: (status, active, grace)
        for pk, status, active, grace in Account.objects.values_list(
            "pk", "access_status", "is_active", "grace_ends_at"
        )
    }
    return states, AccessAudit.objects.count()


def audit() -> object:
    from reconciliation.services.runs import reconciliation_run

    return reconciliation_run(dry_run=False, triggered_by="system:drill")


def clear_faults(fake) -> None:
    with fake._lock:
        fake._faults.clear()
        fake._delays.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=300)
    args = parser.parse_args()
    drill, report = drill_start(
        "the provider fails during the nightly audit",
        extra_env={"STRIPE_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS)},
    )
    fake = drill.fake
    customer_accounts_create(args.accounts)
    for i in range(args.accounts):
        fake.add_subscription(f"sub_drill{i:05d}", customer=f"cus_drill{i:05d}", status="active")

    from reconciliation.models import Flag, RunStatus

    baseline = audit()
    report.check(
        f"none: {args.accounts} active accounts, {args.accounts} active subscriptions",
        "baseline run applied, everything in sync (fills the mirror)",
        f"run {baseline.status}, counts {_changes(baseline)}",
        baseline.status == RunStatus.APPLIED and _changes(baseline) == {},
    )
    listing = "/v1/subscriptions"
    scenarios = [
        ("HTTP 500 on every listing request", lambda: fake.fail(listing, 500, times=10_000)),
        (
            "HTTP 500 from the second page on",
            lambda: fake.fail(listing, 500, times=10_000, after=1),
        ),
        ("HTTP 429 on every listing request", lambda: fake.fail(listing, 429, times=10_000)),
        (
            "HTTP 429 from the second page on",
            lambda: fake.fail(listing, 429, times=10_000, after=1),
        ),
        (
            f"every listing request answered after {TIMEOUT_SECONDS + 1} s "
            f"(timeout {TIMEOUT_SECONDS} s)",
            lambda: fake.delay(listing, TIMEOUT_SECONDS + 1.0, times=30),
        ),
        ("an empty listing (the provider returns no subscriptions)", fake.reset),
    ]
    for injected, inject in scenarios:
        before, audit_rows = snapshot()
        flags_before = Flag.objects.count()
        inject()
        started = time.monotonic()
        run = audit()
        took = time.monotonic() - started
        clear_faults(fake)
        after, audit_rows_after = snapshot()
        changed = sum(1 for pk, state in after.items() if before.get(pk) != state)
        flags = Flag.objects.count() - flags_before
        log(f"{injected}: run {run.status} in {took:.1f} s: {run.halt_reason or run.errors}"[:300])
        report.check(
            injected,
            "run halted or failed, nothing applied",
            f"run {run.status} after {run.pages_read} page(s) in {took:.0f} s; would change "
            f"{_changes(run) or 'nothing'}; reason: {_first_words(run.halt_reason or run.errors)}",
            run.status in {RunStatus.HALTED, RunStatus.FAILED},
        )
        report.check(
            injected,
            "no account changes access (no grace period started), no audit row, no review flag",
            f"{changed} accounts changed, {audit_rows_after - audit_rows} audit rows, "
            f"{flags} review flags opened",
            changed == 0 and audit_rows_after == audit_rows and flags == 0,
        )
    return finish(report)


def _first_words(text: str, limit: int = 70) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _changes(run) -> dict:
    return {k: v for k, v in (run.counts or {}).items() if v and k != "in_sync"}


if __name__ == "__main__":
    sys.exit(main())
