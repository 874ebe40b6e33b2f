"""manage.py import_accounts FILE.csv: bring a product's users in, all lines or none."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Account
from accounts.services.imports import (
    IMPORT_ACTOR,
    IMPORT_COLUMNS,
    OPTIONAL_COLUMNS,
    accounts_import,
)
from reconciliation.services.subscriptions import subscriptions_link_waiting_for


class Command(BaseCommand):
    help = (
        "Import accounts from a CSV with the header "
        f"{','.join(IMPORT_COLUMNS)} (optionally {','.join(OPTIONAL_COLUMNS)}: rows sharing an "
        "account_id are the members of one account). Every line is validated first; if any "
        "line is refused, "
        "nothing is written. Re-running the same file changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file (UTF-8)")

    def handle(self, *args, file, **options):
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise CommandError(f"{file}: no such file") from None
        except UnicodeDecodeError as exc:
            raise CommandError(f"{file}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
        report = accounts_import(text=text)
        if report.refused:
            for line, reason in report.refused:
                self.stderr.write(f"line {line}: {reason}")
            raise CommandError(
                f"{len(report.refused)} line(s) refused; nothing was imported. "
                "Fix them and run again."
            )
        # Subscriptions that reached Janitor before their account (webhooks, the audit) are
        # linked now, by the audit's rules, and the account's access decided from them.
        linked = subscriptions_link_waiting_for(
            account_ids=list(
                Account.objects.filter(public_id__in=report.public_ids).values_list("pk", flat=True)
            ),
            actor=IMPORT_ACTOR,
            source="import",
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
