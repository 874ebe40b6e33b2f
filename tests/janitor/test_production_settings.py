"""Production settings: check --deploy clean with a real secret; a weak one refused."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args, **env):
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
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.smoke
def test_check_deploy_is_clean_in_production_mode():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        DJANGO_ALLOWED_HOSTS="janitor.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_the_development_secret():
    result = _manage("check", DJANGO_DEBUG="false")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


def test_offline_commands_run_on_a_bare_checkout():
    """makemigrations serves and signs nothing: no secret needed (a hook runs it bare)."""
    result = _manage("makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout


@pytest.mark.django_db
def test_pages_carry_security_headers(client):
    response = client.get("/login/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.smoke
def test_debug_is_off_unless_set():
    """An unset DJANGO_DEBUG in production must not serve debug pages (issue 14, finding 7)."""
    result = _manage(
        "shell",
        "-c",
        "from django.conf import settings; print('DEBUG', settings.DEBUG)",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
    )
    assert result.returncode == 0, result.stderr
    assert "DEBUG False" in result.stdout


_REDIRECT_PROBE = """
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from django.test import RequestFactory

middleware = SecurityMiddleware(lambda request: HttpResponse("served"))
factory = RequestFactory()
for path in ["/webhooks/stripe/", "/healthz", "/webhooks/", "/webhooks/7/",
             "/webhooks/replay-dead/", "/webhooks/7/replay/", "/webhooks/stripe/x", "/login/"]:
    print(path, middleware(factory.post(path)).status_code)
"""


def test_only_the_stripe_endpoint_and_the_health_check_skip_the_https_redirect():
    result = _manage(
        "shell",
        "-c",
        _REDIRECT_PROBE,
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
    )
    assert result.returncode == 0, result.stderr
    statuses = dict(line.split() for line in result.stdout.splitlines() if line.startswith("/"))
    assert statuses == {
        "/webhooks/stripe/": "200",
        "/healthz": "200",
        # The staff Webhooks pages are dashboard pages: HTTPS like the rest.
        "/webhooks/": "301",
        "/webhooks/7/": "301",
        "/webhooks/replay-dead/": "301",
        "/webhooks/7/replay/": "301",
        "/webhooks/stripe/x": "301",
        "/login/": "301",
    }
