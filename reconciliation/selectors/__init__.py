"""Reads on the provider side, one module per page or concern."""
