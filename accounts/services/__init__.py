"""Writes to accounts, one module per concern (access, revocation, sessions, activity)."""
