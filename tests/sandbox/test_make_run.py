"""scripts/run (`make run`) decides whether the sandbox stands in for Stripe: with no
STRIPE_API_KEY it wires and starts it, with a key it never does. The script runs for real;
the Python it starts is a recorder (argv and the Stripe environment, then exit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import SANDBOX_API_KEY, SANDBOX_WEBHOOK_SECRET

REPO = Path(__file__).resolve().parents[2]
# The web server's stand-in waits (up to 10 s) until the worker's, and the sandbox's when one
# is wired, have recorded themselves: it exits at once otherwise, and scripts/run then stops
# the others, which under load could be before they wrote their line.
RECORDER = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "sandbox.wiring" ]; then exec {python} "$@"; fi
echo "$* | key=$STRIPE_API_KEY base=$STRIPE_API_BASE secret=$STRIPE_WEBHOOK_SECRET \
sandbox=$JANITOR_SANDBOX" >> {log}
case "$*" in *runserver*)
  want=1; [ "$JANITOR_SANDBOX" = "true" ] && want=2
  i=0
  while [ "$(grep -c -e 'qcluster' -e 'sandbox serve' {log})" -lt "$want" ] && [ $i -lt 100 ]; do
    sleep 0.1; i=$((i + 1))
  done;;
esac
"""


def _run(tmp_path: Path, **env: str) -> tuple[list[str], str]:
    log = tmp_path / "calls.log"
    recorder = tmp_path / "python"
    recorder.write_text(RECORDER.format(python=sys.executable, log=log))
    recorder.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "JANITOR_"))}
    done = subprocess.run(
        ["bash", "scripts/run"],
        cwd=REPO,
        env={**clean, "PY": str(recorder), "PORT": "8999", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines(), done.stdout


def test_with_no_key_the_sandbox_is_seeded_served_and_wired(tmp_path):
    calls, out = _run(tmp_path)
    commands = [line.split(" | ")[0] for line in calls]
    assert commands[:4] == [
        "manage.py migrate --noinput",
        "manage.py seed_demo --if-empty",
        "manage.py sandbox seed --if-empty",
        "manage.py ensure_schedules",
    ]
    assert set(commands[4:]) == {
        "manage.py qcluster",
        "manage.py sandbox serve",
        "manage.py runserver --noreload 127.0.0.1:8999",
    }
    wiring = (
        f"key={SANDBOX_API_KEY} base=http://127.0.0.1:12111 secret={SANDBOX_WEBHOOK_SECRET} "
        "sandbox=true"
    )
    assert all(line.endswith(wiring) for line in calls), calls
    assert "Try this" in out and "finance@janitor.local" in out


@pytest.mark.parametrize("key", ["sk_test_mine", "sk_live_mine"])
def test_with_a_key_no_sandbox_runs_and_stripe_is_as_configured(tmp_path, key):
    calls, out = _run(tmp_path, STRIPE_API_KEY=key)
    commands = [line.split(" | ")[0] for line in calls]
    assert not [c for c in commands if "sandbox" in c]
    assert all(f"key={key} base= secret= sandbox=" in line for line in calls), calls
    assert "Janitor talks to Stripe (no sandbox)" in out
