"""Checks on text that comes from outside (API bodies, files) before it reaches the database."""

from __future__ import annotations


def text_unstorable(value: object) -> str | None:
    """Why PostgreSQL could not store this string (it holds no NUL character and no lone
    surrogate), or None when it can: said as a field error instead of a 500."""
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def database_id(value: str) -> int | None:
    """A query parameter as a row id, or None: digits only, and few enough for a bigint
    (str.isdigit() alone accepts "²", which int() refuses, and 30-digit numbers)."""
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None
