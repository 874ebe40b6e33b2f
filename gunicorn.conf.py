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
