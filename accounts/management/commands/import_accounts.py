"""manage.py import_accounts FILE.csv: bring a product's users in, all lines or none."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.services.imports import (
    IMPORT_ACTOR,
    IMPORT_COLUMNS,
    OPTIONAL_COLUMNS,
    accounts_import,
    csv_lines_decoded,
)
from reconciliation.services.subscriptions import subscriptions_link_waiting_for


class Command(BaseCommand):
    help = (
        "Import accounts from a CSV with the header "
        f"{','.join(IMPORT_COLUMNS)} (optionally {','.join(OPTIONAL_COLUMNS)}: rows sharing an "
        "account_id are the members of one account). The file is read in batches, within one "
        "transaction; every line is validated first, and if any line is refused, nothing is "
        "written. Re-running the same file changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file (UTF-8)")

    def handle(self, *args, file, **options):
        path = Path(file)
        try:
            stream = path.open("rb")
        except FileNotFoundError:
            raise CommandError(f"{file}: no such file") from None
        except OSError as exc:
            raise CommandError(f"{file}: cannot be read ({exc.strerror})") from None
        # Read a batch of lines at a time (accounts_import): memory does not grow with the file.
        with stream:
            report = accounts_import(lines=csv_lines_decoded(stream))
        if report.refused_count:
            for line, reason in report.refused:
                self.stderr.write(f"line {line}: {reason}")
            if report.refused_count > len(report.refused):
                self.stderr.write(
                    f"... and {report.refused_count - len(report.refused)} more refused line(s)."
                )
            raise CommandError(
                f"{report.refused_count} line(s) refused; nothing was imported. "
                "Fix them and run again."
            )
        # Subscriptions that reached Janitor before their account (webhooks, the audit) are
        # linked now, by the audit's rules, and the account's access decided from them.
        linked = subscriptions_link_waiting_for(
            account_ids=list(report.account_pks), actor=IMPORT_ACTOR, source="import"
        )
        if linked:
            self.stdout.write(f"Linked {linked} waiting subscription(s) to imported accounts.")
        for line, note in report.access_kept:
            self.stdout.write(self.style.WARNING(f"line {line}: {note}"))
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {path.name}: {report.created} member(s) created, {report.updated} "
                f"updated, {report.unchanged} unchanged; {report.accounts_created} new "
                "account(s)."
            )
        )
