"""What the benches that serve Janitor with gunicorn share (imported as bench.serving)."""

from __future__ import annotations

import os
import signal
import subprocess
import time


def wait_time_wait(first: int, last: int | None = None, *, below: int = 2000, timeout=70) -> int:
    """Wait until few server sockets of ports first..last linger in TIME_WAIT; returns the
    seconds waited.

    gunicorn's sync workers close every connection, so a run leaves one socket per request in
    TIME_WAIT for 60 s, and the next run's connections to the same port meet them: SYNs go
    unanswered and are retried after 1 s and 3 s, "latencies" that are the bench's own."""
    last = first if last is None else last
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        out = subprocess.run(
            ["ss", "-Htan", "state", "time-wait", f"( sport >= :{first} and sport <= :{last} )"],
            capture_output=True,
            text=True,
        ).stdout
        if out.count("\n") < below:
            break
        time.sleep(2)
    return round(time.monotonic() - started)


def gunicorn_stop(process: subprocess.Popen, *, timeout: float = 40) -> None:
    """Stop a gunicorn started in a session of its own: gracefully (each worker runs its exit
    hooks: token uses written, webhook batches sent), then killed if it does not end."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
