"""The access audit cannot be rewritten: each bypass of issue 14's finding 4, on both databases.

ORM paths are refused by the guarded queryset (also the base manager); raw SQL by the database:
SQLite's triggers, PostgreSQL's trigger, and on PostgreSQL the app role's grants.
"""

import secrets

import psycopg
import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, models, transaction
from django.utils import timezone

from accounts.audit_protection import (
    AUDIT_TABLE,
    AUDIT_TABLES,
    SQLITE_TRIGGERS,
    app_role_grant_statements,
    audit_rewrite_powers,
    sqlite_audit_triggers_present,
)
from accounts.models import AccessAudit, AccessStatus
from accounts.services.access_status import access_status_change
from tests.factories import AccountFactory

on_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's triggers")


def _audit_row() -> AccessAudit:
    return access_status_change(
        account=AccountFactory(),
        to_status=AccessStatus.GRACE_PERIOD,
        actor="system:test",
        reason="original reason",
        grace_ends_at=timezone.now(),
    )


def _unchanged(row: AccessAudit, *, count: int) -> bool:
    return (
        AccessAudit.objects.count() == count
        and AccessAudit.objects.get(pk=row.pk).reason == "original reason"
    )


@pytest.mark.smoke
@pytest.mark.django_db
def test_the_base_manager_is_the_guarded_one():
    row = _audit_row()
    assert AccessAudit._base_manager.name == "objects"
    with pytest.raises(PermissionError), transaction.atomic():
        AccessAudit._base_manager.filter(pk=row.pk).update(reason="rewritten")
    with pytest.raises(PermissionError), transaction.atomic():
        AccessAudit._base_manager.all().delete()
    with pytest.raises(PermissionError), transaction.atomic():
        AccessAudit._base_manager.all()._raw_delete(using="default")
    with pytest.raises(PermissionError), transaction.atomic():
        AccessAudit._base_manager.bulk_update([row], ["reason"])
    assert _unchanged(row, count=1)


@pytest.mark.smoke
@pytest.mark.django_db
def test_model_save_of_an_existing_row_is_refused_even_past_the_override():
    row = _audit_row()
    row.reason = "rewritten"
    with pytest.raises(PermissionError), transaction.atomic():
        row.save()
    # Model.save itself, skipping AccessAudit.save: it updates through the base manager.
    with pytest.raises(PermissionError), transaction.atomic():
        models.Model.save(row)
    with pytest.raises(PermissionError), transaction.atomic():
        models.Model.save(row, update_fields=["reason"])
    assert _unchanged(row, count=1)


@pytest.mark.smoke
@pytest.mark.django_db
def test_model_delete_past_the_override_is_refused_by_the_database():
    row = _audit_row()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        models.Model.delete(row)
    assert _unchanged(row, count=1)


@pytest.mark.smoke
@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        f"UPDATE {AUDIT_TABLE} SET reason = 'rewritten' WHERE id = %s",
        f"DELETE FROM {AUDIT_TABLE} WHERE id = %s",
        # Without a WHERE clause: SQLite's truncate optimisation must not skip the trigger.
        f"DELETE FROM {AUDIT_TABLE} WHERE %s IS NOT NULL",
        f"DELETE FROM {AUDIT_TABLE}",
    ],
)
def test_raw_sql_update_and_delete_are_refused_by_the_database(sql):
    row = _audit_row()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, [row.pk] if "%s" in sql else None)
    assert _unchanged(row, count=1)


@pytest.mark.smoke
@pytest.mark.django_db
def test_inserting_is_still_allowed():
    _audit_row()
    _audit_row()
    assert AccessAudit.objects.count() == 2


# --- SQLite: the triggers survive a table rebuild and let only the test flush through ------


@on_sqlite
@pytest.mark.smoke
@pytest.mark.django_db(transaction=True)
def test_sqlite_triggers_come_back_after_a_table_rebuild():
    assert sqlite_audit_triggers_present() == set(SQLITE_TRIGGERS)
    # What a migration altering the audit does on SQLite: copy into a new table, drop the old.
    with connection.schema_editor() as editor:
        editor._remake_table(AccessAudit)
    access_audit_triggers = {name for name in SQLITE_TRIGGERS if name.startswith(AUDIT_TABLE)}
    assert len(access_audit_triggers) == 2
    assert sqlite_audit_triggers_present() == set(SQLITE_TRIGGERS) - access_audit_triggers
    assert [m.id for m in run_checks() if m.id == "accounts.W001"] == ["accounts.W001"]

    call_command("migrate", verbosity=0)  # the post_migrate step, as after a real migration

    assert sqlite_audit_triggers_present() == set(SQLITE_TRIGGERS)
    assert [m for m in run_checks() if m.id == "accounts.W001"] == []
    row = _audit_row()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {AUDIT_TABLE}")
    assert _unchanged(row, count=1)


@on_sqlite
@pytest.mark.smoke
@pytest.mark.django_db
def test_flush_cannot_empty_the_audit_unless_the_settings_allow_it(settings):
    row = _audit_row()
    settings.JANITOR_AUDIT_FLUSH_ALLOWED = False
    with pytest.raises(CommandError, match="couldn't be flushed"):
        call_command("flush", interactive=False, verbosity=0)
    assert _unchanged(row, count=1)

    settings.JANITOR_AUDIT_FLUSH_ALLOWED = True  # what janitor/settings_test.py sets
    call_command("flush", interactive=False, verbosity=0)
    assert AccessAudit.objects.count() == 0
    assert sqlite_audit_triggers_present() == set(SQLITE_TRIGGERS)


# --- PostgreSQL: the two-role set-up -------------------------------------------------------


@pytest.fixture
def app_role(transactional_db):
    """A throwaway login role granted exactly as docs/operations.md says (grant_app_role)."""
    role = f"janitor_test_app_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", [password])
    call_command("grant_app_role", role, verbosity=0)
    params = connection.settings_dict
    dsn = {
        "dbname": params["NAME"],
        "host": params["HOST"] or "127.0.0.1",
        "port": params["PORT"] or 5432,
        "user": role,
        "password": password,
    }
    yield role, dsn
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {role}")
        cursor.execute(f"DROP ROLE {role}")


APP_ROLE_REFUSALS = [
    ("UPDATE {table} SET reason = 'rewritten'", "permission denied"),
    ("DELETE FROM {table}", "permission denied"),
    ("TRUNCATE {table}", "permission denied"),
    ("ALTER TABLE {table} DISABLE TRIGGER ALL", "must be owner"),
    ("ALTER TABLE {table} DISABLE TRIGGER {table}_append_only", "must be owner"),
    ("DROP TABLE {table}", "must be owner"),
]


@pytest.mark.postgres
@pytest.mark.parametrize("table", AUDIT_TABLES)
@pytest.mark.parametrize(("sql", "refusal"), APP_ROLE_REFUSALS)
def test_the_app_role_cannot_rewrite_the_audit(app_role, table, sql, refusal):
    role, dsn = app_role
    row = _audit_row()
    with psycopg.connect(**dsn) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=refusal):
            conn.execute(sql.format(table=table))
    assert _unchanged(row, count=1)


@pytest.mark.postgres
def test_the_app_role_can_still_run_the_app(app_role):
    role, dsn = app_role
    row = _audit_row()
    with psycopg.connect(**dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {AUDIT_TABLE}").fetchone() == (1,)
        conn.execute(
            f"INSERT INTO {AUDIT_TABLE} (account_id, at, actor, from_status, to_status, reason,"
            " reference, source, details) VALUES (%s, now(), 'system:role-test', 'active',"
            " 'grace_period', 'appended by the app role', '', '', '{}')",
            [row.account_id],
        )
        conn.execute("UPDATE accounts_account SET name = 'renamed' WHERE id = %s", [row.account_id])
    assert AccessAudit.objects.count() == 2
    assert row.account.__class__.objects.get(pk=row.account_id).name == "renamed"


@pytest.mark.postgres
def test_the_check_warns_unless_the_app_role_is_append_only(app_role):
    role, _dsn = app_role
    # The test database's own role (postgres) is a superuser and owns the table.
    powers = audit_rewrite_powers()
    assert any("superuser" in power for power in powers), powers
    assert [m.id for m in run_checks() if m.id == "accounts.W001"] == ["accounts.W001"]
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {role}")
    try:
        assert audit_rewrite_powers() == []
        assert [m for m in run_checks() if m.id == "accounts.W001"] == []
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")


@pytest.mark.smoke
def test_grant_app_role_prints_the_documented_sql(capsys):
    call_command("grant_app_role", "janitor_app", "--print")
    out = capsys.readouterr().out
    assert f'GRANT SELECT, INSERT ON {AUDIT_TABLE} TO "janitor_app";' in out
    assert out.count(";") == len(app_role_grant_statements(role="janitor_app"))
