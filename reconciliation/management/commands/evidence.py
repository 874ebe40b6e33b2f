"""manage.py evidence PUBLIC_ID: the on-call answer to "did this customer use the product?"."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Account, User
from reconciliation.selectors.evidence import evidence_for_account
from reconciliation.services.evidence import evidence_csv_export, evidence_pdf_export


def _when(value) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else "—"


class Command(BaseCommand):
    help = "Print an account's usage evidence; optionally write the PDF pack and the activity CSV."

    def add_arguments(self, parser):
        parser.add_argument(
            "public_id", help="The account's public id or email, or one of its members'."
        )
        parser.add_argument("--days", type=int, default=None, help="Window in days (default 30).")
        parser.add_argument("--pdf", metavar="FILE", help="Write the PDF evidence pack here.")
        parser.add_argument("--csv", metavar="FILE", help="Write the raw activity CSV here.")
        parser.add_argument(
            "--actor",
            metavar="EMAIL",
            help="Staff email the export is audited under (required with --pdf/--csv).",
        )

    def handle(self, *args, public_id, days, pdf, csv, actor, **options):
        if days is not None and not 1 <= days <= 3660:
            raise CommandError("--days must be between 1 and 3660.")
        # An account's public id or email, or a member's: a member names their account.
        account = (
            Account.objects.filter(public_id=public_id).first()
            or Account.objects.filter(email__iexact=public_id).first()
        )
        if account is None:
            member = (
                User.objects.filter(public_id=public_id, account__isnull=False).first()
                or User.objects.filter(email__iexact=public_id, account__isnull=False).first()
            )
            account = member.account if member is not None else None
        if account is None:
            raise CommandError(f"No account with public id or email {public_id!r}.")
        actor_user = None
        if pdf or csv:
            # Every export is audited with a person's name, the command's included.
            if not actor:
                raise CommandError("--actor EMAIL is required with --pdf or --csv (audited).")
            actor_user = User.objects.filter(email__iexact=actor, is_staff=True).first()
            if actor_user is None or not actor_user.has_perm("reconciliation.export_evidence"):
                raise CommandError(f"{actor!r} is not a staff user allowed to export evidence.")

        evidence = evidence_for_account(account=account, days=days)
        summary = evidence.summary
        out = self.stdout.write
        # The seed's question, answered first, in one line.
        out(evidence.one_line())
        out("")
        out(f"Account:        {account.email} ({account.public_id}) {account.name}")
        out(
            f"Members:        {summary.members_total}, {summary.active_members} active in the "
            f"window; {summary.sessions_now} sessions active now"
        )
        out(f"Access status:  {account.access_status}")
        sub = evidence.subscription
        out(
            f"Subscription:   {sub.status} at {sub.provider} ({sub.provider_id})"
            if sub
            else "Subscription:   none linked"
        )
        out(
            f"Window:         {summary.since:%Y-%m-%d} to {summary.until:%Y-%m-%d} "
            f"({summary.days} days)"
        )
        if not summary.has_activity:
            out("Activity:       NONE recorded in this window.")
        else:
            out(f"Last activity:  {_when(summary.last_seen)}")
            out(f"First seen:     {_when(summary.first_seen)}")
            out(f"Activity:       {summary.activity_count} events on {summary.active_days} days")
            out(f"Logins:         {summary.logins}")
            out(f"Distinct IPs:   {summary.distinct_ips}")
            for ip in evidence.ips[:5]:
                out(f"  {ip.ip:<39} {ip.total:>6} events, last {_when(ip.last_seen)}")
        out(f"Timeline:       {len(evidence.timeline)} entries")
        for entry in evidence.timeline[:10]:
            out(f"  {_when(entry.at)}  {entry.text}")

        if pdf:
            assert actor_user is not None  # required above for --pdf
            content = evidence_pdf_export(account=account, actor=actor_user, days=days)
            with open(pdf, "wb") as handle:
                handle.write(content)
            out(self.style.SUCCESS(f"PDF written to {pdf} ({len(content):,} bytes)."))
        if csv:
            assert actor_user is not None  # required above for --csv
            lines = evidence_csv_export(account=account, actor=actor_user, days=days)
            with open(csv, "w", encoding="utf-8", newline="") as handle:
                handle.writelines(lines)
            out(self.style.SUCCESS(f"CSV written to {csv}."))
