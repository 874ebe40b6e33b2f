"""janitor.settings with no middleware and bench/access_floor.py as the URLconf (the access
API bench's Django floor)."""

from janitor.settings import *  # noqa: F403 (the project's settings but for these two)

MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.access_floor"
