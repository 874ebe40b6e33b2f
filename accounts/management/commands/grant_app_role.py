"""Grant a PostgreSQL role what the app needs, and on the access audit only SELECT and INSERT.

Run as the migration role (the tables' owner) after every migrate; see docs/operations.md.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from accounts.audit_protection import app_role_grant_statements


class Command(BaseCommand):
    help = "Grant the app's PostgreSQL role its privileges (the audit: SELECT and INSERT only)."

    def add_arguments(self, parser):
        parser.add_argument("role", help="The role the app connects as, e.g. janitor_app.")
        parser.add_argument("--database", default="default")
        parser.add_argument(
            "--print",
            action="store_true",
            dest="print_only",
            help="Print the SQL instead of running it.",
        )

    def handle(self, *args, role, database, print_only: bool, **options):
        statements = app_role_grant_statements(role=role)
        if print_only:
            self.stdout.write(";\n".join(statements) + ";")
            return
        connection = connections[database]
        if connection.vendor != "postgresql":
            raise CommandError("grant_app_role is for PostgreSQL; SQLite has no roles.")
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        self.stdout.write(f"Granted {role}: the access audit is SELECT and INSERT only.")
