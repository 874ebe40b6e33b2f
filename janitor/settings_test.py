"""Test settings: janitor.settings plus what a test run needs (tasks inline, fast hashing)."""

import os

# janitor.settings defaults to production (DEBUG off: HTTPS redirect, hashed static files, a
# real secret required). The suite runs in development mode, as `make run` does; tests that
# check production behaviour start manage.py with DJANGO_DEBUG=false in a subprocess.
os.environ.setdefault("DJANGO_DEBUG", "true")

from janitor.settings import *  # noqa: E402, F403
from janitor.settings import Q_CLUSTER  # noqa: E402

# django-q2 reads Q_CLUSTER at import time, so "sync" has to be set here, not per test.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# The test runner flushes between transactional tests; on SQLite that needs the audit's
# triggers out of the way for the flush (accounts/management/commands/flush.py).
JANITOR_AUDIT_FLUSH_ALLOWED = True

# Most tests sign staff in with force_login and no device: they run with two-factor off. The
# two-factor tests (tests/accounts/test_two_factor.py, the permission matrix, the browser
# test) switch it to "admins" or "all" with pytest-django's settings fixture; the middleware
# reads it per request.
JANITOR_STAFF_2FA = "off"
