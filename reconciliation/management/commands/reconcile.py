"""manage.py reconcile [--dry-run]: run the audit now, with a progress bar and a summary table."""

from django.core.management.base import BaseCommand, CommandError

from accounts.services.access_status import system_actor
from reconciliation.models import Outcome, RunStatus
from reconciliation.services.runs import reconciliation_run


class _ProgressBar:
    """One self-rewriting stderr line; the total is unknown while listing, so it counts."""

    def __init__(self, stream) -> None:
        self.stream = stream  # a command's OutputWrapper: write(..., ending="")
        self.interactive = stream.isatty()
        self._last_line = ""

    def __call__(self, state: dict) -> None:
        phase = state.get("phase", "")
        if phase == "applying":
            line = f"applying  {state.get('applied', 0):>10,} outcomes"
        elif phase == "deciding":
            line = f"deciding  {state.get('accounts', 0):>10,} accounts"
        else:
            pages = state.get("pages", 0)
            bar = "#" * (pages % 30) + "-" * (30 - pages % 30)
            line = f"listing   [{bar}] {pages:,} pages, {state.get('subscriptions', 0):,} subs"
        if line == self._last_line:
            return
        self._last_line = line
        if self.interactive:
            self.stream.write("\r" + line.ljust(72), ending="")
            self.stream.flush()
        elif state.get("pages", 0) % 100 == 0 or phase != "listing":
            # Logs get a line now and then, not a carriage-return storm.
            self.stream.write(line)

    def close(self) -> None:
        if self.interactive:
            self.stream.write("")


class Command(BaseCommand):
    help = "Reconcile every provider subscription with account access (the nightly audit)."
    # The system checks belong to deploys (`manage.py check --deploy`, migrate, runserver), not
    # to every audit: they import every view (about 0.5 s here) before the run starts, and the
    # nightly schedule, which runs the same service from the queue, never ran them either.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Compute outcomes, write only the run."
        )

    def handle(self, *args, dry_run: bool = False, **options):
        bar = _ProgressBar(self.stderr)
        try:
            run = reconciliation_run(
                dry_run=dry_run, triggered_by=system_actor("cli"), on_progress=bar
            )
        finally:
            bar.close()
        if run is None:
            raise CommandError("Another reconciliation run is in progress; try again later.")
        counts = run.counts or {}
        self.stdout.write(f"Run #{run.pk}: {run.get_status_display()}")
        self.stdout.write(
            f"{run.pages_read:,} pages, {run.subscriptions_read:,} subscriptions read; "
            f"change ratio {run.change_ratio or 0:.2%}"
        )
        width = max(len(o.label) for o in Outcome)
        self.stdout.write(f"{'Outcome'.ljust(width)}  {'Accounts':>10}")
        self.stdout.write(f"{'-' * width}  {'-' * 10}")
        for outcome in Outcome:
            self.stdout.write(f"{outcome.label.ljust(width)}  {counts.get(outcome.value, 0):>10,}")
        self.stdout.write(
            f"{'Customers without an account'.ljust(width)}  "
            f"{counts.get('unmatched_customers', 0):>10,}"
        )
        if run.durations:
            self.stdout.write(
                "Durations: " + ", ".join(f"{k} {v:.2f} s" for k, v in run.durations.items())
            )
        if run.halt_reason:
            self.stdout.write(self.style.WARNING(run.halt_reason))
        if run.errors:
            self.stdout.write(self.style.ERROR(run.errors))
        if run.status == RunStatus.FAILED:
            raise CommandError(f"Run #{run.pk} failed.")
