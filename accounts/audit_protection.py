"""What keeps the audits append-only below the ORM: SQLite triggers, PostgreSQL grants.

The audits are the access audit and the staff action audit (AUDIT_TABLES). The models' guarded
queryset stops the ORM paths; this module stops everything under them.

- SQLite has no roles, so two triggers refuse UPDATE and DELETE on the audit table. SQLite drops
  a table's triggers when a migration rebuilds it, so they are (re)created after every migrate
  (AccountsConfig connects `audit_triggers_ensure` to post_migrate) and after a flush.
- PostgreSQL: migration 0002's trigger refuses UPDATE and DELETE whoever asks; TRUNCATE and
  ALTER TABLE ... DISABLE TRIGGER are stopped by privileges: the app runs as a role that owns
  nothing and holds only SELECT and INSERT on the audit table (`app_role_grant_statements`,
  run by `manage.py grant_app_role`; docs/operations.md). The system check `accounts.W001`
  warns when the role the app connects as could still rewrite the table.
"""

from django.db import DatabaseError, connections

AUDIT_TABLE = "accounts_accessaudit"
# Every append-only table: the access audit and the staff action audit (2FA resets, erasures).
AUDIT_TABLES = (AUDIT_TABLE, "accounts_staffactionaudit")

SQLITE_TRIGGERS = {
    f"{table}_no_{op.lower()}": f"""
        CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END
    """
    for table in AUDIT_TABLES
    for op in ("UPDATE", "DELETE")
}


def _tables_present(connection) -> list[str]:
    with connection.cursor() as cursor:
        names = set(connection.introspection.table_names(cursor))
    return [table for table in AUDIT_TABLES if table in names]


def sqlite_audit_triggers_present(*, using: str = "default") -> set[str]:
    """The names of the append-only triggers that exist on this SQLite database."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'",
        )
        return {name for (name,) in cursor.fetchall()} & set(SQLITE_TRIGGERS)


def audit_triggers_ensure(*, using: str = "default") -> None:
    """Create the SQLite triggers if they are missing. Idempotent; a no-op on PostgreSQL,
    whose trigger is a migration's (a PostgreSQL ALTER keeps a table's triggers)."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    present = _tables_present(connection)
    with connection.cursor() as cursor:
        for name, sql in SQLITE_TRIGGERS.items():
            if any(name.startswith(f"{table}_no_") for table in present):
                cursor.execute(sql)


def audit_triggers_drop_for_flush(*, using: str = "default") -> None:
    """Drop the SQLite triggers so a flush can empty every table. Only the flush command calls
    this, and only when settings.JANITOR_AUDIT_FLUSH_ALLOWED is set (the test settings do; the
    environment cannot), and it re-creates them straight after."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        for name in SQLITE_TRIGGERS:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")


def app_role_grant_statements(*, role: str) -> list[str]:
    """The grants that make `role` the app's PostgreSQL role, run as the owner after migrate.

    Read and write on every table and sequence in the schema, except the audit: SELECT and
    INSERT only. No ownership, so no TRUNCATE, ALTER or DISABLE TRIGGER. Idempotent.
    """
    quoted = '"' + role.replace('"', '""') + '"'
    return [
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
        *(f"REVOKE ALL ON {table} FROM {quoted}" for table in AUDIT_TABLES),
        *(f"GRANT SELECT, INSERT ON {table} TO {quoted}" for table in AUDIT_TABLES),
        # Tables that later migrations create (by the role running this) get the same grants.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE "
        f"ON TABLES TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE "
        f"ON SEQUENCES TO {quoted}",
    ]


def audit_rewrite_powers(*, using: str = "default") -> list[str]:
    """What the connected role could do to rewrite the audit: [] when it is append-only.

    PostgreSQL: the privileges and ownership of the current role. SQLite: the triggers that
    are missing. Raises DatabaseError when the database cannot be asked.
    """
    connection = connections[using]
    tables = _tables_present(connection)
    if connection.vendor == "sqlite":
        wanted = {name for name in SQLITE_TRIGGERS if name.rsplit("_no_", 1)[0] in tables}
        missing = wanted - sqlite_audit_triggers_present(using=using)
        return [f"trigger {name} is missing" for name in sorted(missing)]
    if connection.vendor != "postgresql":
        return []
    powers = []
    for table in tables:
        powers += _postgres_powers(connection, table)
    return list(dict.fromkeys(powers))


def _postgres_powers(connection, table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT current_user,
                   (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                   pg_has_role(current_user, c.relowner, 'USAGE'),
                   has_table_privilege(current_user, c.oid, 'UPDATE'),
                   has_table_privilege(current_user, c.oid, 'DELETE'),
                   has_table_privilege(current_user, c.oid, 'TRUNCATE'),
                   has_table_privilege(current_user, c.oid, 'TRIGGER')
            FROM pg_class c WHERE c.oid = %s::regclass
            """,
            [table],
        )
        user, superuser, owner, update, delete, truncate, trigger = cursor.fetchone()
    powers = []
    if superuser:
        powers.append(f"{user} is a superuser")
    if owner:
        powers.append(f"{user} owns {table} (can ALTER it and disable its trigger)")
    for name, held in (
        ("UPDATE", update),
        ("DELETE", delete),
        ("TRUNCATE", truncate),
        ("TRIGGER", trigger),
    ):
        if held:
            powers.append(f"{user} holds {name} on {table}")
    return powers


def audit_rewrite_powers_or_none(*, using: str = "default") -> list[str] | None:
    """As audit_rewrite_powers, or None when the database is unreachable or not migrated."""
    try:
        return audit_rewrite_powers(using=using)
    except DatabaseError:
        return None
