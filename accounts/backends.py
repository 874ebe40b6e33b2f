"""Authentication that enforces access status (revocation issue fills in the refusal rules)."""

from django.contrib.auth.backends import ModelBackend


class AccessStatusBackend(ModelBackend):
    pass
