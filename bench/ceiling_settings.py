"""janitor.settings with bench/ceiling.py as the URLconf (the webhook bench's ceiling)."""

from janitor.settings import *  # noqa: F403 (the project's settings, unchanged but for the URLs)

ROOT_URLCONF = "bench.ceiling"
