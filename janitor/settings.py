"""Janitor's settings: the one place that reads the environment (see the README's table)."""

import os
import string
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

from sandbox import SANDBOX_API_KEY, SANDBOX_DEFAULT_PORT

BASE_DIR = Path(__file__).resolve().parent.parent
# SQLite (the embedded default): a transaction takes the write lock when it begins, so a web
# request, two workers and the sandbox's webhooks wait for each other (up to the timeout)
# instead of failing at once with "database is locked" when a reader turns writer.
SQLITE_OPTIONS: dict[str, Any] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}


def _env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use true or false.")


def _env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    return value


def _env_ratio(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if not 0 < value <= 1:
        raise ImproperlyConfigured(f"{name}={raw!r} must be a fraction in (0, 1], e.g. 0.05.")
    return value


def _env_cron(name: str, default: str) -> str:
    """A 5-field cron expression croniter accepts (django-q2 schedules with it): refused at
    start-up, naming the variable, rather than by a traceback when the schedule is written."""
    from croniter import croniter  # type: ignore[import-untyped]

    raw = _env_str(name, default)
    if len(raw.split()) != 5 or not croniter.is_valid(raw):
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a valid 5-field cron expression (e.g. {default!r})."
        )
    return raw


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _env_log_level(name: str, default: str) -> str:
    raw = _env_str(name, default).upper()
    if raw not in _LOG_LEVELS:
        raise ImproperlyConfigured(f"{name}={raw!r}: use one of {', '.join(_LOG_LEVELS)}.")
    return raw


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in _env_str(name, default).split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    """Turn DATABASE_URL into a DATABASES entry; refuse anything Janitor does not run on."""
    parsed = urlparse(url)
    if parsed.scheme in {"postgres", "postgresql"}:
        if not parsed.path.strip("/"):
            raise ImproperlyConfigured(
                f"DATABASE_URL={url!r} names no database: use postgres://USER@HOST:PORT/NAME."
            )
        try:
            port = parsed.port
        except ValueError:
            raise ImproperlyConfigured(f"DATABASE_URL={url!r} has an invalid port.") from None
        options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(port or ""),
            "CONN_MAX_AGE": _env_int("DATABASE_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": _env_bool("DATABASE_CONN_HEALTH_CHECKS", True),
            "OPTIONS": options,
        }
    if parsed.scheme == "sqlite":
        # sqlite:///relative.db or sqlite:////absolute/path.db
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ImproperlyConfigured(f"DATABASE_URL={url!r}: use sqlite:///path/to/file.sqlite3.")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path, "OPTIONS": SQLITE_OPTIONS}
    raise ImproperlyConfigured(
        f"DATABASE_URL={url!r} is not supported: use postgres://USER:PASSWORD@HOST:PORT/NAME "
        "or sqlite:///PATH (or leave it unset for the embedded SQLite default)."
    )


def _redis_url_checked(url: str) -> str:
    if url and urlparse(url).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"REDIS_URL={url!r} is not a redis:// or rediss:// URL.")
    return url


_DEV_SECRET_KEY = "insecure-dev-only-key-change-me-in-production"
SECRET_KEY = _env_str("DJANGO_SECRET_KEY", _DEV_SECRET_KEY)
# Off unless asked for: a forgotten variable in production must not serve debug pages (every
# route on a 404, settings and connection URLs on a 500). `make run` sets DJANGO_DEBUG=true.
DEBUG = _env_bool("DJANGO_DEBUG", False)
# Commands that neither serve, sign nor send anything may run without the production secret
# (a developer's or a hook's `manage.py makemigrations --check` on a bare checkout).
_OFFLINE_COMMANDS = {"makemigrations", "showmigrations", "sqlmigrate", "collectstatic", "help"}
_OFFLINE = (
    len(sys.argv) > 1 and sys.argv[0].endswith("manage.py") and (sys.argv[1] in _OFFLINE_COMMANDS)
)
if not DEBUG and not _OFFLINE and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a random value of 50+ characters when DJANGO_DEBUG is "
        "false (the default). For local development, set DJANGO_DEBUG=true instead."
    )
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "janitor.apps.JanitorAdminConfig",  # django.contrib.admin, with a throttled login
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_q",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "accounts",
    "reconciliation",
    "products",
    "janitor",
]

MIDDLEWARE = [
    "janitor.metrics.RequestLatencyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "janitor.middleware.ContentSecurityPolicyMiddleware",
    # Outside the NUL guard (its 400 too), inside the security headers (they reach its answer).
    "janitor.middleware.ApiJsonErrorsMiddleware",
    "janitor.middleware.RejectNulBytesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "accounts.middleware.AccessEnforcementMiddleware",
    "accounts.middleware.TwoFactorMiddleware",
    "accounts.middleware.ActivityCaptureMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "janitor.urls"
WSGI_APPLICATION = "janitor.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "janitor.navigation.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = _env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "janitor.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, sessions, session index --------------------------------------------------
REDIS_URL = _redis_url_checked(_env_str("REDIS_URL"))
CACHE_KEY_PREFIX = _env_str("JANITOR_CACHE_PREFIX", "janitor")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
    SESSION_ENGINE = "django.contrib.sessions.backends.cache"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = _env_int("JANITOR_SESSION_AGE_SECONDS", 14 * 24 * 3600, minimum=60)

# --- Auth -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["accounts.backends.AccessStatusBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"
# Two-factor sign-in for staff (django-otp: TOTP plus single-use backup codes): "admins"
# (required for Admins and superusers, optional for Support and Finance), "all" (required for
# every staff member) or "off" (nobody is asked: for the demo only). Staff who enrolled a
# device anyway must verify it unless "off".
JANITOR_STAFF_2FA = _env_str("JANITOR_STAFF_2FA", "admins").lower()
if JANITOR_STAFF_2FA not in {"admins", "all", "off"}:
    raise ImproperlyConfigured(f"JANITOR_STAFF_2FA={JANITOR_STAFF_2FA!r}: use admins, all or off.")
if JANITOR_STAFF_2FA == "off" and not DEBUG:
    # A demo's settings copied to production would let every Admin approve revocations, mint
    # API tokens and erase accounts with a password alone, and nothing would say so.
    raise ImproperlyConfigured(
        "JANITOR_STAFF_2FA=off needs DJANGO_DEBUG=true: signing staff in without two-factor is "
        "for the demo only (use admins or all in production)."
    )
OTP_TOTP_ISSUER = "Janitor"
# Failed codes make a device wait 1, 2, 4... seconds before it checks another (django-otp).
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Queue (django-q2) ----------------------------------------------------------------------
QUEUE_BROKER = _env_str("JANITOR_QUEUE_BROKER", "orm").lower()
if QUEUE_BROKER not in {"orm", "redis"}:
    raise ImproperlyConfigured(f"JANITOR_QUEUE_BROKER={QUEUE_BROKER!r}: use orm or redis.")
if QUEUE_BROKER == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("JANITOR_QUEUE_BROKER=redis needs REDIS_URL.")
Q_CLUSTER: dict[str, Any] = {
    "name": _env_str("JANITOR_QUEUE_NAME", "janitor"),
    "workers": _env_int("JANITOR_QUEUE_WORKERS", 2, minimum=1),
    # timeout < retry, or a slow task is delivered twice while still running.
    "timeout": _env_int("JANITOR_QUEUE_TIMEOUT", 300, minimum=1),
    "retry": _env_int("JANITOR_QUEUE_RETRY", 360, minimum=2),
    "max_attempts": _env_int("JANITOR_QUEUE_MAX_ATTEMPTS", 3, minimum=1),
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "recycle": 500,
    "max_rss": 400_000,
    "poll": 0.5,
    "label": "Task queue",
}
if QUEUE_BROKER == "orm":
    Q_CLUSTER["orm"] = "default"
else:
    Q_CLUSTER["redis"] = REDIS_URL
if Q_CLUSTER["timeout"] >= Q_CLUSTER["retry"]:
    raise ImproperlyConfigured("JANITOR_QUEUE_TIMEOUT must be smaller than JANITOR_QUEUE_RETRY.")

# --- Stripe ---------------------------------------------------------------------------------
STRIPE_API_KEY = _env_str("STRIPE_API_KEY")
STRIPE_API_BASE = _env_str("STRIPE_API_BASE")
if STRIPE_API_BASE and urlparse(STRIPE_API_BASE).scheme not in {"http", "https"}:
    raise ImproperlyConfigured(f"STRIPE_API_BASE={STRIPE_API_BASE!r} is not an http(s) URL.")
STRIPE_WEBHOOK_SECRETS = _env_list("STRIPE_WEBHOOK_SECRET", "")
# Tries after the first for a call a later try can fix (429 rate/lock limits, 5xx, network),
# with exponential backoff from STRIPE_RETRY_BASE_MS (doubling, capped at 5 s, jittered) and
# at most STRIPE_RETRY_MAX_WAIT_SECONDS of waiting in all for one call.
STRIPE_MAX_NETWORK_RETRIES = _env_int("STRIPE_MAX_NETWORK_RETRIES", 4)
STRIPE_RETRY_BASE_SECONDS = _env_int("STRIPE_RETRY_BASE_MS", 500) / 1000
STRIPE_RETRY_MAX_WAIT_SECONDS = _env_int("STRIPE_RETRY_MAX_WAIT_SECONDS", 30)
STRIPE_TIMEOUT_SECONDS = _env_int("STRIPE_TIMEOUT_SECONDS", 20, minimum=1)
# Requests a second to Stripe from this process, all threads and calls together (the parallel
# listing's readers, webhook lookups, evidence): below Stripe's 25 a second per endpoint and in
# test mode, leaving room for the webhook path's own calls from other processes.
JANITOR_STRIPE_MAX_RPS = _env_int("JANITOR_STRIPE_MAX_RPS", 20, minimum=1)
WEBHOOK_MAX_BODY_BYTES = _env_int("JANITOR_WEBHOOK_MAX_BYTES", 1024 * 1024, minimum=1024)
# gunicorn's workers hand stored events to the queue from a thread, the events of this many
# milliseconds in one task (0: one task per event, sent before the 200). See intake.py.
JANITOR_WEBHOOK_ENQUEUE_BATCH_MS = _env_int("JANITOR_WEBHOOK_ENQUEUE_BATCH_MS", 50)

# --- The demo's Stripe sandbox (sandbox/; `make run` without STRIPE_API_KEY) ----------------
# On: the top bar says "Sandbox" and `manage.py sandbox` serves the fake Stripe the gateway
# talks to. Development only, and only with the sandbox's own key (never a real Stripe key).
JANITOR_SANDBOX = _env_bool("JANITOR_SANDBOX", False)
JANITOR_SANDBOX_PORT = _env_int("JANITOR_SANDBOX_PORT", SANDBOX_DEFAULT_PORT, minimum=1)
# Where the sandbox keeps its state between restarts: beside the embedded database.
JANITOR_SANDBOX_STATE_FILE = Path(
    _env_str("JANITOR_SANDBOX_STATE_FILE") or BASE_DIR / "sandbox-state.json"
)
if JANITOR_SANDBOX and not DEBUG:
    raise ImproperlyConfigured(
        "JANITOR_SANDBOX=true needs DJANGO_DEBUG=true: the Stripe sandbox is for development only."
    )
if JANITOR_SANDBOX and STRIPE_API_KEY != SANDBOX_API_KEY:
    raise ImproperlyConfigured(
        "JANITOR_SANDBOX=true with a real STRIPE_API_KEY: unset one of them (with a key set, "
        "`make run` talks to Stripe and starts no sandbox)."
    )

# --- Domain rules ---------------------------------------------------------------------------
JANITOR_GRACE_DAYS = _env_int("JANITOR_GRACE_DAYS", 7, minimum=1)
JANITOR_ACCESS_STATUSES = frozenset(_env_list("JANITOR_ACCESS_STATUSES", "active,trialing"))
_KNOWN_SUBSCRIPTION_STATUSES = {
    "incomplete", "incomplete_expired", "trialing", "active",
    "past_due", "canceled", "unpaid", "paused",
}  # fmt: skip
if not JANITOR_ACCESS_STATUSES or not JANITOR_ACCESS_STATUSES <= _KNOWN_SUBSCRIPTION_STATUSES:
    raise ImproperlyConfigured(
        "JANITOR_ACCESS_STATUSES must list Stripe subscription statuses, e.g. active,trialing; "
        f"known: {', '.join(sorted(_KNOWN_SUBSCRIPTION_STATUSES))}."
    )
# Per-seat prices: reconciliation counts an account's enabled members against the quantity of these
# items (a price whose metadata has per_seat=true counts too). A flat price never counts seats.
JANITOR_SEAT_PRICES = frozenset(_env_list("JANITOR_SEAT_PRICES", ""))
JANITOR_AUDIT_MAX_CHANGE_RATIO = _env_ratio("JANITOR_AUDIT_MAX_CHANGE_RATIO", 0.05)
# Customers no account knows yet are looked up one by one at the provider, at most this many
# a run; accounts that might belong to the rest are "not checked" until a later run.
JANITOR_AUDIT_LINK_LOOKUPS = _env_int("JANITOR_AUDIT_LINK_LOOKUPS", 500, minimum=0)
# An approved revocation whose task has not reported for this long shows as stalled.
JANITOR_REVOCATION_STALL_SECONDS = _env_int("JANITOR_REVOCATION_STALL_SECONDS", 120, minimum=10)
# Step 2 of a staged revocation asks every product endpoint that holds sessions to end them and
# waits this long for each one's confirmation; past it the request fails retryable.
JANITOR_REVOCATION_CONFIRM_SECONDS = _env_int("JANITOR_REVOCATION_CONFIRM_SECONDS", 900, minimum=10)
JANITOR_AUDIT_CRON = _env_cron("JANITOR_AUDIT_CRON", "30 2 * * *")
JANITOR_TRUSTED_PROXIES = frozenset(_env_list("JANITOR_TRUSTED_PROXIES", ""))
# One activity row per (user, path) per window, so a busy user does not write a row per request.
JANITOR_ACTIVITY_THROTTLE_SECONDS = _env_int("JANITOR_ACTIVITY_THROTTLE_SECONDS", 300)
JANITOR_ACTIVITY_MAX_BATCH = _env_int("JANITOR_ACTIVITY_MAX_BATCH", 1000, minimum=1)
# API tokens (accounts.services.tokens): each process keeps a token it looked up this long, the
# bound on how late a revocation made elsewhere takes effect (0: look up every request); uses
# are counted in memory and written every FLUSH_SECONDS or FLUSH_USES, whichever comes first.
JANITOR_API_TOKEN_CACHE_SECONDS = _env_int("JANITOR_API_TOKEN_CACHE_SECONDS", 5)
JANITOR_API_TOKEN_FLUSH_SECONDS = _env_int("JANITOR_API_TOKEN_FLUSH_SECONDS", 5)
JANITOR_API_TOKEN_FLUSH_USES = _env_int("JANITOR_API_TOKEN_FLUSH_USES", 1000, minimum=1)
JANITOR_EVIDENCE_DAYS = _env_int("JANITOR_EVIDENCE_DAYS", 30, minimum=1)
# Retention (docs/operations.md): a daily task purges what is older than these.
# Activity is chargeback evidence; card networks look back about a year, hence 400 days.
JANITOR_ACTIVITY_RETENTION_DAYS = _env_int("JANITOR_ACTIVITY_RETENTION_DAYS", 400, minimum=1)
if JANITOR_ACTIVITY_RETENTION_DAYS < JANITOR_EVIDENCE_DAYS:
    raise ImproperlyConfigured(
        "JANITOR_ACTIVITY_RETENTION_DAYS must be at least JANITOR_EVIDENCE_DAYS "
        f"({JANITOR_EVIDENCE_DAYS}): the evidence window would be purged."
    )
# IP addresses and user agents on activity rows: blanked after this many days (rows stay).
JANITOR_IP_RETENTION_DAYS = _env_int("JANITOR_IP_RETENTION_DAYS", 400, minimum=1)
# Stored webhook bodies of finished events: emptied after this many days (the row and its
# provider event id stay, so a late duplicate delivery is still recognised).
JANITOR_WEBHOOK_PAYLOAD_RETENTION_DAYS = _env_int(
    "JANITOR_WEBHOOK_PAYLOAD_RETENTION_DAYS", 90, minimum=1
)
# Copies of exported evidence kept on disputes (the staged fields): cleared this long after
# staging once the dispute is closed or the evidence submitted.
JANITOR_EXPORT_RETENTION_DAYS = _env_int("JANITOR_EXPORT_RETENTION_DAYS", 400, minimum=1)
# The access changes feed (GET /api/v1/access?changed_since=): changes older than this are
# deleted; a product whose cursor is older gets 410 and reads its accounts afresh.
JANITOR_ACCESS_FEED_RETENTION_DAYS = _env_int("JANITOR_ACCESS_FEED_RETENTION_DAYS", 30, minimum=1)
# Outbound access events: delivered, superseded and dead ones are deleted (with their attempts)
# this long after they were written; pending and failing ones stay whatever their age.
JANITOR_DELIVERY_RETENTION_DAYS = _env_int("JANITOR_DELIVERY_RETENTION_DAYS", 30, minimum=1)
JANITOR_RETENTION_CRON = _env_cron("JANITOR_RETENTION_CRON", "45 3 * * *")
JANITOR_PRODUCT_DESCRIPTION = _env_str(
    "JANITOR_PRODUCT_DESCRIPTION", "Monthly subscription to the product (software as a service)."
)

# --- Direct mode: the product's own session store (docs/integration.md) ---------------------
# Step 2 of a staged revocation deletes the product's session keys itself, for each member of
# the account, from this Redis: keys named by JANITOR_PRODUCT_SESSION_KEY_TEMPLATE (an exact key,
# or a pattern with * scanned with SCAN MATCH) and/or the keys listed in the per-user set named
# by JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE. Placeholders: {user_public_id}, {email},
# {account_public_id}.
JANITOR_PRODUCT_SESSION_REDIS_URL = _env_str("JANITOR_PRODUCT_SESSION_REDIS_URL")
JANITOR_PRODUCT_SESSION_KEY_TEMPLATE = _env_str("JANITOR_PRODUCT_SESSION_KEY_TEMPLATE")
JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE = _env_str("JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE")
_PRODUCT_SESSION_FIELDS = {"user_public_id", "email", "account_public_id"}


def _product_session_template_checked(name: str, template: str) -> str:
    if not template:
        return template
    try:
        fields = {
            field for _, field, _, _ in string.Formatter().parse(template) if field is not None
        }
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={template!r} is not a valid template: {exc}.") from None
    if not fields & {"user_public_id", "email"} or fields - _PRODUCT_SESSION_FIELDS:
        raise ImproperlyConfigured(
            f"{name}={template!r} must name the member with {{user_public_id}} or {{email}} "
            f"(allowed: {', '.join('{' + f + '}' for f in sorted(_PRODUCT_SESSION_FIELDS))})."
        )
    return template


_product_session_template_checked(
    "JANITOR_PRODUCT_SESSION_KEY_TEMPLATE", JANITOR_PRODUCT_SESSION_KEY_TEMPLATE
)
_product_session_template_checked(
    "JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE", JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE
)
if JANITOR_PRODUCT_SESSION_REDIS_URL:
    if urlparse(JANITOR_PRODUCT_SESSION_REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(
            "JANITOR_PRODUCT_SESSION_REDIS_URL is not a redis://, rediss:// or unix:// URL."
        )
    if not (JANITOR_PRODUCT_SESSION_KEY_TEMPLATE or JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE):
        raise ImproperlyConfigured(
            "JANITOR_PRODUCT_SESSION_REDIS_URL needs JANITOR_PRODUCT_SESSION_KEY_TEMPLATE (e.g. "
            "session:{user_public_id}:*) or JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE (e.g. "
            "user_sessions:{user_public_id})."
        )
elif JANITOR_PRODUCT_SESSION_KEY_TEMPLATE or JANITOR_PRODUCT_SESSION_INDEX_TEMPLATE:
    raise ImproperlyConfigured(
        "A product session key or index template is set without "
        "JANITOR_PRODUCT_SESSION_REDIS_URL: say which Redis holds the product's sessions."
    )

# --- Email ----------------------------------------------------------------------------------
EMAIL_BACKEND = _env_str("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = _env_str("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = _env_int("DJANGO_EMAIL_PORT", 25)
EMAIL_HOST_USER = _env_str("DJANGO_EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = _env_str("DJANGO_EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = _env_bool("DJANGO_EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = _env_str("DJANGO_DEFAULT_FROM_EMAIL", "billing@janitor.local")

# --- Notifications and metrics --------------------------------------------------------------
# Apprise URLs per role (comma-separated); unset: the role's staff members by email.
JANITOR_NOTIFY = {
    "support": _env_list("JANITOR_NOTIFY_SUPPORT", ""),
    "finance": _env_list("JANITOR_NOTIFY_FINANCE", ""),
    "admins": _env_list("JANITOR_NOTIFY_ADMINS", ""),
}
# Where links in notices point (the dashboard's address as staff reach it).
JANITOR_PUBLIC_URL = _env_str("JANITOR_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# Where a customer fixes their payment; with JANITOR_BILLING_PORTAL_RETURN_URL set instead, each
# grace notice carries a fresh Stripe billing portal session that returns there.
JANITOR_BILLING_URL = _env_str("JANITOR_BILLING_URL", "")
JANITOR_BILLING_PORTAL_RETURN_URL = _env_str("JANITOR_BILLING_PORTAL_RETURN_URL", "")
JANITOR_NOTIFY_MAX_ATTEMPTS = _env_int("JANITOR_NOTIFY_MAX_ATTEMPTS", 6, minimum=1)
JANITOR_DIGEST_CRON = _env_cron("JANITOR_DIGEST_CRON", "0 7 * * *")
# /metrics: a bearer token, or a client address in this list (loopback by default).
JANITOR_METRICS_TOKEN = _env_str("JANITOR_METRICS_TOKEN", "")
JANITOR_METRICS_ALLOWED_IPS = frozenset(_env_list("JANITOR_METRICS_ALLOWED_IPS", "127.0.0.1,::1"))
# prometheus-client's own variable: a directory shared by one host's gunicorn workers, so the
# request-latency histogram sums over them (wipe it when gunicorn starts).
PROMETHEUS_MULTIPROC_DIR = _env_str("PROMETHEUS_MULTIPROC_DIR", "")

# --- Outbound access events to product endpoints (products/services/delivery.py) -----------
# One POST may take this long (connect and answer together) before it counts as failed.
JANITOR_DELIVERY_TIMEOUT_SECONDS = _env_int("JANITOR_DELIVERY_TIMEOUT_SECONDS", 10, minimum=1)
# POSTs in flight at once per worker process (threads; keep-alive connections per endpoint).
JANITOR_DELIVERY_THREADS = _env_int("JANITOR_DELIVERY_THREADS", 8, minimum=1)
# Deliveries a worker claims per round trip to the database.
JANITOR_DELIVERY_BATCH = _env_int("JANITOR_DELIVERY_BATCH", 200, minimum=1)

# --- Static, i18n ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
if not DEBUG:
    # Serves collectstatic's output from the app itself; runserver serves static files in DEBUG.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed files in production (run collectstatic); plain files while debugging.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Production hardening (active with DJANGO_DEBUG=false) ------------------------------------
# No inline script anywhere (htmx attributes only); inline styles are allowed for SVG charts.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)
X_FRAME_OPTIONS = "DENY"
# Plain HTTP stays allowed for the balancer's health check and Stripe's endpoint only (matched
# against the path without its leading slash); the staff Webhooks pages under /webhooks/ are
# redirected to HTTPS like every other page.
JANITOR_REDIRECT_EXEMPT = [r"^healthz$", r"^webhooks/stripe/$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _env_bool("JANITOR_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = _env_int("JANITOR_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    if _env_bool("JANITOR_BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = JANITOR_REDIRECT_EXEMPT
# Failed sign-ins per (address, email) before a cool-down, and its length. The address is the
# client's as resolved through JANITOR_TRUSTED_PROXIES. Failures from one address across all
# emails have a limit of their own (password spraying).
JANITOR_LOGIN_MAX_FAILURES = _env_int("JANITOR_LOGIN_MAX_FAILURES", 5, minimum=1)
JANITOR_LOGIN_MAX_FAILURES_PER_ADDRESS = _env_int(
    "JANITOR_LOGIN_MAX_FAILURES_PER_ADDRESS", 20, minimum=1
)
JANITOR_LOGIN_LOCKOUT_SECONDS = _env_int("JANITOR_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": _env_log_level("JANITOR_LOG_LEVEL", "INFO")},
    "loggers": {
        # WeasyPrint logs every layout step at INFO.
        "weasyprint.progress": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
        # stripe-python logs two INFO lines per request: 20,000 a night at 1M subscriptions.
        # Its errors still reach the log (and the gateway reports every failure itself).
        "stripe": {"level": _env_log_level("JANITOR_STRIPE_LOG_LEVEL", "WARNING")},
    },
}
