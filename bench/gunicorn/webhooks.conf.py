"""gunicorn settings for bench/webhooks.py: the production shape (sync workers) without access logs.

The project's gunicorn.conf.py writes an access-log line per request to stdout; on a 2-core box
shared with the load client that is measurable, and the benchmark is about the application.
"""

workers = 4
worker_class = "sync"
timeout = 30
max_requests = 5000
max_requests_jitter = 500
accesslog = None
loglevel = "warning"
