"""Start-up refuses malformed configuration with a message naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from janitor.settings import database_from_url

ROOT = Path(__file__).resolve().parents[2]


def _check(**env):
    # Nothing of the test run's own environment (databases, the browser tests' async flag, the
    # DJANGO_DEBUG=true that janitor.settings_test sets for the suite).
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "DJANGO_ALLOW_ASYNC", "DJANGO_DEBUG"))
        and k != "DJANGO_SECRET_KEY"
    }
    clean.update(env, DJANGO_SETTINGS_MODULE="janitor.settings")
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://root@localhost/janitor"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://localhost"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://u@h:notaport/db"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"JANITOR_GRACE_DAYS": "seven"}, "JANITOR_GRACE_DAYS"),
        ({"JANITOR_AUDIT_MAX_CHANGE_RATIO": "5"}, "JANITOR_AUDIT_MAX_CHANGE_RATIO"),
        ({"JANITOR_ACCESS_STATUSES": "active,bogus"}, "JANITOR_ACCESS_STATUSES"),
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG"),
        ({"JANITOR_STAFF_2FA": "sometimes"}, "JANITOR_STAFF_2FA"),
        # Shorter than the evidence window would purge the evidence.
        ({"JANITOR_ACTIVITY_RETENTION_DAYS": "10"}, "JANITOR_ACTIVITY_RETENTION_DAYS"),
        ({"JANITOR_WEBHOOK_PAYLOAD_RETENTION_DAYS": "0"}, "JANITOR_WEBHOOK_PAYLOAD_RETENTION_DAYS"),
        ({"JANITOR_ACCESS_FEED_RETENTION_DAYS": "0"}, "JANITOR_ACCESS_FEED_RETENTION_DAYS"),
        ({"JANITOR_DELIVERY_RETENTION_DAYS": "0"}, "JANITOR_DELIVERY_RETENTION_DAYS"),
        ({"JANITOR_RETENTION_CRON": "daily"}, "JANITOR_RETENTION_CRON"),
        # Five fields that are not cron: they passed, and ensure_schedules (which `make run`
        # calls) died with croniter's traceback naming nothing (found in review).
        ({"JANITOR_AUDIT_CRON": "a b c d e"}, "JANITOR_AUDIT_CRON"),
        ({"JANITOR_AUDIT_CRON": "99 99 * * *"}, "JANITOR_AUDIT_CRON"),
        ({"JANITOR_DIGEST_CRON": "0 25 * * *"}, "JANITOR_DIGEST_CRON"),
        ({"JANITOR_LOG_LEVEL": "loud"}, "JANITOR_LOG_LEVEL"),
        ({"JANITOR_STRIPE_LOG_LEVEL": "chatty"}, "JANITOR_STRIPE_LOG_LEVEL"),
    ],
)
def test_malformed_setting_stops_startup_naming_the_variable(env, message):
    result = _check(**{"DJANGO_DEBUG": "true", **env})  # development mode, unless under test
    assert result.returncode != 0
    assert message in result.stderr
    assert "ImproperlyConfigured" in result.stderr


@pytest.mark.smoke
def test_development_mode_starts_on_the_embedded_default():
    result = _check(DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.smoke
def test_nothing_set_means_production_and_asks_for_a_secret():
    """DJANGO_DEBUG is off unless set, so an unset environment refuses the dev secret."""
    result = _check()
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr and "DJANGO_DEBUG=true" in result.stderr


def test_database_url_parsing():
    db = database_from_url("postgres://jan:p%40ss@db.internal:6543/janitor?sslmode=require")
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "django.db.backends.postgresql",
        "janitor",
        "jan",
        "p@ss",
        "db.internal",
        "6543",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}
    assert database_from_url("sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"


@pytest.mark.smoke
def test_production_refuses_staff_sign_in_without_two_factor():
    """JANITOR_STAFF_2FA=off is the demo's: with DJANGO_DEBUG off it let every Admin approve
    revocations and mint tokens with a password alone, and `check --deploy` said nothing."""
    secret = "s" * 60
    result = _check(JANITOR_STAFF_2FA="off", DJANGO_SECRET_KEY=secret)
    assert result.returncode != 0
    assert "JANITOR_STAFF_2FA=off needs DJANGO_DEBUG=true" in result.stderr
    assert _check(JANITOR_STAFF_2FA="off", DJANGO_DEBUG="true").returncode == 0
    assert _check(JANITOR_STAFF_2FA="admins", DJANGO_SECRET_KEY=secret).returncode == 0
