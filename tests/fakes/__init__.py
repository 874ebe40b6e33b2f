"""Test doubles that speak the real protocols, so the code under test runs unmodified."""
