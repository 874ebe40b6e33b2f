"""Writes on the provider side, one module per concern (flags, subscriptions, webhooks...)."""
