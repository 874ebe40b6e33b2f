"""gunicorn settings for bench/webhooks.py: the project's gunicorn.conf.py (sync workers, its
post_worker_init hook: warm-up and the webhook enqueue batcher) without the access log.

The project's file writes an access-log line per request to stdout; on a 2-core box shared with
the load client that is measurable, and the benchmark is about the application. The bench sets
workers and bind on the command line.
"""

from pathlib import Path

_PROJECT_CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
exec(compile(_PROJECT_CONF.read_text(), str(_PROJECT_CONF), "exec"))  # noqa: S102

accesslog = None
loglevel = "warning"
