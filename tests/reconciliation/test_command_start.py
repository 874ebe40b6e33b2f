"""What a management command loads before it starts: each import is paid by every `reconcile`,
every worker and every deploy step (the side-by-side benchmark times the whole process)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import django
django.setup()
from django.core.management import load_command_class
load_command_class("reconciliation", "reconcile")
print(",".join(sorted(m for m in ("redis",) if m in sys.modules)))
"""


def test_reconcile_does_not_load_the_redis_client_when_nothing_uses_redis():
    # The session index loads it on first use: sessions in the database (no REDIS_URL) never
    # call it, and a command that never touches a session should not pay for the import.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "JANITOR_QUEUE_BROKER"}
    }
    env.update(DJANGO_SETTINGS_MODULE="janitor.settings", DJANGO_DEBUG="true")
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ""
