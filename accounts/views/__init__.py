"""Account pages and APIs, one module per feature; the routes are in accounts/urls.py."""
