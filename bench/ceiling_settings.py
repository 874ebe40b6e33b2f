"""janitor.settings with bench/ceiling.py as the URLconf (the webhook bench's ceiling)."""

from janitor.settings import *  # noqa: F403 (the project's settings, unchanged but for the URLs)
from janitor.settings import JANITOR_REDIRECT_EXEMPT

ROOT_URLCONF = "bench.ceiling"
# Plain HTTP is allowed for the ceiling as for Stripe's endpoint (else it answers a redirect).
SECURE_REDIRECT_EXEMPT = [*JANITOR_REDIRECT_EXEMPT, r"^bench/ceiling/$"]
