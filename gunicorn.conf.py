"""gunicorn settings for Janitor's web processes: `gunicorn -c gunicorn.conf.py janitor.wsgi`.

Override any of them with GUNICORN_CMD_ARGS (gunicorn's own), e.g. "--bind=127.0.0.1:9000".
"""

import multiprocessing

bind = "0.0.0.0:8000"
# Sync workers: requests are short and CPU-bound (see docs/benchmarks.md); more than 2 per core
# only adds context switches and long tails.
workers = max(2, multiprocessing.cpu_count() * 2)
worker_class = "sync"
timeout = 30
graceful_timeout = 30
max_requests = 5000
max_requests_jitter = 500
accesslog = "-"
forwarded_allow_ips = "127.0.0.1"


def post_worker_init(worker):
    """Ready a new worker before it accepts its first request: import the URLconf (every view
    module), start its webhook enqueue batcher and open the database connection. Without the
    warm-up, the first request of each worker, at start and after every max_requests
    recycling, paid 1.1-1.4 s (docs/benchmarks/access-api.md). A database that is down only
    leaves the connection to the first request, as before."""
    from django.db import connection
    from django.urls import get_resolver

    from reconciliation.services.webhooks import webhook_enqueue_batching_start

    get_resolver().url_patterns  # noqa: B018 (the property imports the views)
    # Stored webhook events go to the queue a batch at a time from a thread of this worker
    # (JANITOR_WEBHOOK_ENQUEUE_BATCH_MS), not one task per request.
    webhook_enqueue_batching_start()
    try:
        connection.ensure_connection()
    except Exception as exc:  # the worker must start anyway; requests answer 503 as usual
        worker.log.warning("warm-up: no database connection yet (%s)", exc)
